#!/usr/bin/env python
"""Measured error of the Winograd tiles against a float64 reference (BENCHMARKS.md).

    python tools/winograd_error.py --cases 150

1. Random layers (batch 1-3, 1-40 channels, maps 3-20, paddings 0-2, weights N(0, 0.25),
   inputs N(0, 1)): the largest |y - ref| / S over all outputs and cases, S = sum |w| of the
   output channel times max |x| -- the quantity tests/test_winograd.py bounds per tile.
2. He-initialised layers on post-ReLU inputs: max |y - ref| / max |ref|.
im2col (packed GEMM) is shown for comparison.  Current instruction set, 1 thread.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def conv_ref(x, w, pads):
    from engine.ir import Node
    from engine.ops import get_op
    attrs = dict(stride=[1, 1], padding=pads, dilation=[1, 1], groups=1, activation=None)
    node = Node("conv", "n", ["x", "w"], ["y"], attrs)
    return np.asarray(get_op("conv").run_reference(node, [x, w])[0], np.float64)


def run(x, w, pads, m):
    """Our conv: Winograd F(m) (m > 0) or the packed im2col GEMM (m == 0)."""
    from engine._kernels import conv as kc
    oh = x.shape[2] + sum(pads[0]) - 2
    ow = x.shape[3] + sum(pads[1]) - 2
    ys = (x.shape[0], w.shape[0], oh, ow)
    y = np.empty(ys, np.float32)
    if m:
        wp = kc.winograd_pack(w, m)
        work = np.empty(kc.winograd_workspace(x.shape, w.shape, ys, m, 1), np.float32)
        kc.conv2d_winograd(x, wp, None, y, [pads[0][0], pads[1][0]], 0, 0.0, 0.0, None,
                           work, 1)
        return y
    x5, w5, y5 = x[:, :, None], w[:, :, None], y[:, :, None]
    wp = kc.conv_pack(w5, 1)
    work = np.empty(max(1, kc.conv_packed_workspace(x5.shape, w5.shape, y5.shape, [1, 1, 1],
                                                    [0, pads[0][0], pads[1][0]], [1, 1, 1],
                                                    1, 1)), np.float32)
    kc.conv3d_packed(x5, wp, None, y5, [1, 1, 1], [0, pads[0][0], pads[1][0]], [1, 1, 1],
                     0, 0.0, 0.0, None, work, 1)
    return y


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=150)
    opts = p.parse_args()
    from engine import _kernels
    rng = np.random.default_rng(0)
    worst = {m: 0.0 for m in (0, 2, 4, 6)}
    for _ in range(opts.cases):
        pads = [[int(rng.integers(0, 3)), int(rng.integers(0, 3))] for _ in range(2)]
        size = [int(rng.integers(max(1, 3 - sum(pd)), 21)) for pd in pads]
        n, cin, cout = int(rng.integers(1, 4)), int(rng.integers(1, 41)), int(rng.integers(1, 41))
        x = rng.standard_normal((n, cin, *size)).astype(np.float32)
        w = (rng.standard_normal((cout, cin, 3, 3)) * 0.5).astype(np.float32)
        ref = conv_ref(x, w, pads)
        S = (np.abs(w.astype(np.float64)).sum(axis=(1, 2, 3)) * np.abs(x).max()).reshape(1, -1,
                                                                                       1, 1)
        for m in worst:
            err = np.abs(run(x, w, pads, m) - ref) / S
            worst[m] = max(worst[m], float(err.max()))
    print(f"# isa {_kernels.get_isa()}, {opts.cases} random layers")
    print("| kernel | max err / (sum abs(w) * max abs(x)) | " + " | ".join(
        f"He init, C={c}, {s}x{s}: err / max abs(y)" for c, s in ((64, 56), (256, 28), (512, 14)))
        + " |")
    print("|---|---|---|---|---|")
    he = {}
    for c, s in ((64, 56), (256, 28), (512, 14)):
        x = np.maximum(rng.standard_normal((1, c, s, s)), 0).astype(np.float32)
        w = (rng.standard_normal((c, c, 3, 3)) * np.sqrt(2.0 / (9 * c))).astype(np.float32)
        pads = [[1, 1], [1, 1]]
        ref = conv_ref(x, w, pads)
        for m in worst:
            he[m, c] = float(np.abs(run(x, w, pads, m) - ref).max() / np.abs(ref).max())
    for m in worst:
        name = "im2col GEMM" if m == 0 else f"F({m}x{m}, 3x3)"
        print(f"| {name} | {worst[m]:.2g} | " + " | ".join(
            f"{he[m, c]:.2g}" for c in (64, 256, 512)) + " |")


if __name__ == "__main__":
    main()
