#!/usr/bin/env python
"""MobileNetV2's pointwise-conv GEMMs (and its stem's), timed as the CPU backend runs them.

    python tools/gemm_shapes.py [--threads 1] [--isa avx512|avx2|scalar] [--cold]

Weights pre-packed (`pack_a`), activations arriving unpacked, bias per row and relu6 fused:
exactly the pointwise_gemm call.  Best of 5 timing loops of back-to-back calls; GFLOP/s from
2 M N K.  Used for the small-K / small-M GEMM changes recorded in BENCHMARKS.md.

--cold times the calls one by one as they run inside a network: before each call the caches
are flushed (a buffer twice the L3 size is rewritten) and the activations read back, so the
weights come from memory and the activations from cache.  Median of 21 calls.
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


def _l3_bytes():
    """Last-level cache size from sysfs (32 MiB when it cannot be read)."""
    size = 32 << 20
    try:
        base = "/sys/devices/system/cpu/cpu0/cache"
        for idx in os.listdir(base):
            with open(os.path.join(base, idx, "level")) as f:
                if f.read().strip() != "3":
                    continue
            with open(os.path.join(base, idx, "size")) as f:
                text = f.read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            size = int(text.rstrip("KM")) * mult
    except (OSError, ValueError):
        pass
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--isa", default=None)
    ap.add_argument("--cold", action="store_true",
                    help="weights evicted from every cache level before each call")
    args = ap.parse_args()
    import engine._kernels as kernels
    if args.isa:
        kernels.set_isa(args.isa)
    from engine._kernels import gemm
    rng = np.random.default_rng(0)
    flush = np.zeros(2 * _l3_bytes() // 4, np.float32) if args.cold else None
    print(f"| M x K x N | us | GFLOP/s |   ({gemm.blocking()['tile']}, "
          f"{args.threads} thread(s){', cold weights' if args.cold else ''})")
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
        if flush is not None:
            times = []
            for _ in range(21):
                flush += 1.0                  # evicts the packed weights (and everything)
                float(b.sum())                # the activations: just written by the last layer
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            best = float(np.median(times))
            print(f"| {m} x {k} x {n} | {best * 1e6:.1f} | {2 * m * n * k / best / 1e9:.1f} |")
            continue
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
