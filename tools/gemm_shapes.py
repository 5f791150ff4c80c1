#!/usr/bin/env python
"""MobileNetV2's pointwise-conv GEMMs (and its stem's), timed as the CPU backend runs them.

    python tools/gemm_shapes.py [--threads 1] [--isa avx512|avx2|scalar]

Weights pre-packed (`pack_a`), activations arriving unpacked, bias per row and relu6 fused:
exactly the pointwise_gemm call.  Best of 5 timing loops of back-to-back calls; GFLOP/s from
2 M N K.  Used for the small-K / small-M GEMM changes recorded in BENCHMARKS.md.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (M, K, N): output channels, input channels, output positions
SHAPES = [(96, 16, 12544), (16, 32, 12544), (24, 96, 3136), (24, 144, 3136),
          (144, 24, 3136), (32, 144, 784), (192, 32, 784), (576, 96, 196), (96, 576, 196),
          (1280, 320, 49), (320, 960, 49), (960, 160, 49), (32, 27, 12544)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--isa", default=None)
    args = ap.parse_args()
    import engine._kernels as kernels
    if args.isa:
        kernels.set_isa(args.isa)
    from engine._kernels import gemm
    rng = np.random.default_rng(0)
    print(f"| M x K x N | us | GFLOP/s |   ({gemm.blocking()['tile']}, "
          f"{args.threads} thread(s))")
    print("|---|---|---|")
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        c = np.empty((m, n), np.float32)
        bias = rng.standard_normal(m).astype(np.float32)
        pa = gemm.pack_a(a)
        work = np.empty(max(1, gemm.gemm_workspace(m, n, k, nthreads=args.threads,
                                                   a_packed=True)), np.float32)

        def call():
            gemm.sgemm(pa, b, c, bias, 1, act=2, work=work, nthreads=args.threads)
        call()
        reps = max(10, int(2e8 / (m * n * k)))
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                call()
            best = min(best, (time.perf_counter() - t0) / reps)
        print(f"| {m} x {k} x {n} | {best * 1e6:.1f} | {2 * m * n * k / best / 1e9:.1f} |")


if __name__ == "__main__":
    main()
