"""Random CNN-shaped models for tests.

``random_model`` mixes every layer family of the lectures (conv with stride/padding/dilation/
groups, depthwise, transposed conv, BatchNorm, activations, pooling, residual add,
squeeze-and-excitation, concat branches, channel shuffle, upsampling, padding, norms) so
the passes, the memory planner and the kernels are exercised together.
"""

import numpy as np

import engine
from helpers import rng_array

ACTS = ["relu", "relu6", "leaky_relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid",
        "gelu", "clip", "prelu", "elu", "selu", "softplus", "mish"]


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def random_model(rng, layers=20, batch=None):
    b = engine.Builder()
    c, h, w = int(rng.integers(2, 7)), int(rng.integers(6, 13)), int(rng.integers(6, 13))
    x = b.input("x", (None, c, h, w))
    t, same_shape = x, [x]
    pick = lambda seq: seq[int(rng.integers(len(seq)))]  # noqa: E731

    def conv(t, cout=None, k=None, stride=1, groups=None):
        cin = t.shape[1]
        k = k or pick([1, 3, 5] if min(t.shape[2:]) >= 5 else [1, 3])
        groups = groups or pick([g for g in _divisors(cin) if g <= 4])
        cout = cout or groups * int(rng.integers(1, 5))
        dil = pick([1, 2]) if min(t.shape[2:]) >= 2 * (k - 1) + 3 else 1
        pad = int(rng.integers(0, dil * (k // 2) + 1))
        if min(t.shape[2:]) + 2 * pad - dil * (k - 1) < 2:
            pad = dil * (k // 2)
        return b.conv2d(t, rng_array(rng, (cout, cin // groups, k, k), 0.5),
                        rng_array(rng, cout) if rng.random() < 0.7 else None,
                        stride=stride, padding=pad, dilation=dil, groups=groups)

    for _ in range(layers):
        C, H, W = t.shape[1:]
        kind = pick(["conv", "conv", "conv", "dw", "bn", "act", "act", "pool", "residual", "se",
                     "branch", "shuffle", "upsample", "pad", "norm", "dropout", "deconv"])
        if kind == "conv":
            t = conv(t, stride=pick([1, 2]) if min(H, W) >= 8 else 1)
        elif kind == "dw":
            mult = pick([1, 2])
            t = b.conv2d(t, rng_array(rng, (C * mult, 1, 3, 3), 0.5), rng_array(rng, C * mult),
                         padding=1, groups=C)
        elif kind == "bn":
            t = b.batch_norm(t, rng_array(rng, C), rng.uniform(0.3, 2, C).astype(np.float32),
                             rng_array(rng, C), rng_array(rng, C))
        elif kind == "act":
            a = pick(ACTS)
            if a == "prelu":
                t = b.prelu(t, rng.uniform(0, 0.5, pick([1, C])).astype(np.float32))
            elif a == "leaky_relu":
                t = b.leaky_relu(t, 0.1)
            elif a == "clip":
                t = b.clip(t, -1.0, 2.0)
            else:
                t = getattr(b, a)(t)
        elif kind == "pool" and min(H, W) >= 4:
            k = pick([2, 3])
            p = int(rng.integers(0, k // 2 + 1))
            s = pick([1, 2])
            ceil = bool(rng.random() < 0.5)
            op = pick(["max", "avg", "min"])
            if op == "avg":
                t = b.avg_pool2d(t, k, s, p, ceil_mode=ceil, count_include_pad=rng.random() < 0.5)
            else:
                t = getattr(b, f"{op}_pool2d")(t, k, s, p, ceil_mode=ceil)
        elif kind == "residual":
            y = conv(t, cout=C, k=3, groups=1)
            if y.shape == t.shape:
                t = b.add(b.relu(y), t)
        elif kind == "se":
            r = max(1, C // 2)
            s = b.flatten(b.global_avg_pool(t), 1)
            s = b.relu(b.linear(s, rng_array(rng, (r, C)), rng_array(rng, r)))
            s = b.sigmoid(b.linear(s, rng_array(rng, (C, r)), rng_array(rng, C)))
            t = b.mul(t, b.reshape(s, [-1, C, 1, 1]))
        elif kind == "branch":
            y1 = conv(t, k=1, groups=1)
            y2 = b.conv2d(t, rng_array(rng, (2, C, 3, 3), 0.5), padding=1)
            if y1.shape[2:] == y2.shape[2:]:
                t = b.cat([y1, y2], 1)
        elif kind == "shuffle" and C % 2 == 0:
            t = b.channel_shuffle(t, 2)
        elif kind == "upsample" and max(H, W) <= 8:
            mode = pick(["nearest", "bilinear"])
            t = b.interpolate(t, scale_factor=2, mode=mode,
                              align_corners=None if mode == "nearest" else bool(rng.random() < .5))
        elif kind == "pad" and min(H, W) >= 3:
            t = b.pad(t, [1, 0, 2, 1], mode=pick(["constant", "reflect", "replicate"]), value=0.5)
        elif kind == "norm":
            n = pick(["group", "instance", "lrn", "layer"])
            if n == "group":
                t = b.group_norm(t, pick(_divisors(C)), rng_array(rng, C), rng_array(rng, C))
            elif n == "instance":
                t = b.instance_norm(t, rng_array(rng, C), rng_array(rng, C))
            elif n == "lrn":
                t = b.local_response_norm(t, pick([2, 3, 5]), 1e-2, 0.75, 2.0)
            else:
                t = b.layer_norm(t, [H, W], rng_array(rng, (H, W)), rng_array(rng, (H, W)))
        elif kind == "dropout":
            t = b.dropout(t, 0.3)
        elif kind == "deconv" and max(H, W) <= 8:
            cout = int(rng.integers(2, 6))
            t = b.conv_transpose2d(t, rng_array(rng, (C, cout, 2, 2), 0.5), rng_array(rng, cout),
                                   stride=2)
        if t.shape[1:] == same_shape[-1].shape[1:]:
            same_shape.append(t)
    y = b.flatten(b.global_max_pool(t) if rng.random() < 0.3 else b.adaptive_avg_pool2d(t, 1), 1)
    y = b.linear(y, rng_array(rng, (5, t.shape[1])), rng_array(rng, 5))
    b.output(b.softmax(y, 1), "probs")
    return b.build(), (int(rng.integers(1, 4)), c, h, w)


