"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018, torchvision names).

v1 (no torchvision model; names of ``tests/torch_twins.py``): ``features.0`` is
conv 3x3 s2 + BN + ReLU (``features.0.0/1/2``); ``features.1``..``features.13`` are depthwise
separable blocks: depthwise 3x3 (``.0``), BN (``.1``), ReLU (``.2``), pointwise 1x1
(``.3``), BN (``.4``), ReLU (``.5``); then global average pool and ``fc``.
"""

from ._core import register

_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
       (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


@register("mobilenet_v1", input_size=(3, 224, 224), head="fc.weight", embedding="flatten",
          options={"width_mult": 1.0},
          description="MobileNet v1: depthwise separable convolutions, width multiplier "
                      "alpha = width_mult (inputs >= 32x32)")
def mobilenet_v1(net, width_mult=1.0):
    def ch(c):
        return max(8, int(c * width_mult))
    x = net.input(3)
    x = net.conv(x, "features.0.0", ch(32), 3, 2, 1, bias=False)
    x = net.relu(net.bn(x, "features.0.1"), "features.0.2")
    for i, (c, s) in enumerate(_V1, start=1):
        p = f"features.{i}"
        x = net.conv(x, f"{p}.0", x.shape[1], 3, s, 1, groups=x.shape[1], bias=False)
        x = net.relu(net.bn(x, f"{p}.1"), f"{p}.2")
        x = net.conv(x, f"{p}.3", ch(c), 1, bias=False)
        x = net.relu(net.bn(x, f"{p}.4"), f"{p}.5")
    x = net.flatten(net.adaptive_avg_pool(x, "avgpool", 1))
    return net.linear(x, "fc", net.num_classes)


def _make_divisible(v, divisor=8, min_value=None):
    """torchvision's channel rounding: nearest multiple of 8, never more than 10% below."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
       (6, 160, 3, 2), (6, 320, 1, 1)]       # expansion t, channels c, repeats n, stride s


def _conv_bn_relu6(net, x, path, out, k, stride=1, groups=1):
    x = net.conv(x, f"{path}.0", out, k, stride, (k - 1) // 2, groups=groups, bias=False)
    return net.relu6(net.bn(x, f"{path}.1"), f"{path}.2")


@register("mobilenet_v2", input_size=(3, 224, 224), head="classifier.1.weight",
          embedding="flatten", options={"width_mult": 1.0},
          description="MobileNet v2: inverted residuals with linear bottlenecks, ReLU6 "
                      "(torchvision names; inputs >= 32x32)")
def mobilenet_v2(net, width_mult=1.0):
    x = net.input(3)
    x = _conv_bn_relu6(net, x, "features.0", _make_divisible(32 * width_mult), 3, 2)
    i = 1
    for t, c, n, s in _V2:
        out = _make_divisible(c * width_mult)
        for j in range(n):
            stride = s if j == 0 else 1
            p = f"features.{i}.conv"
            inp = x.shape[1]
            hidden = int(round(inp * t))
            y, k = x, 0
            if t != 1:
                y = _conv_bn_relu6(net, y, f"{p}.0", hidden, 1)
                k = 1
            y = _conv_bn_relu6(net, y, f"{p}.{k}", hidden, 3, stride, groups=hidden)
            y = net.conv(y, f"{p}.{k + 1}", out, 1, bias=False, gain=0.7)
            residual = stride == 1 and inp == out
            y = net.bn(y, f"{p}.{k + 2}", gain=0.2 if residual else 1.0)
            x = net.add(x, y, f"features.{i}.add") if residual else y
            i += 1
    last = _make_divisible(1280 * max(1.0, width_mult))
    x = _conv_bn_relu6(net, x, f"features.{i}", last, 1)
    x = net.flatten(net.adaptive_avg_pool(x, "adaptive_avg_pool2d", 1))
    x = net.dropout(x, "classifier.0", 0.2)
    return net.linear(x, "classifier.1", net.num_classes)
