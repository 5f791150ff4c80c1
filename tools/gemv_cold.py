#!/usr/bin/env python
"""Batch-1 FC (GEMV) with its weight evicted from the caches, as inside a network.

    python tools/gemv_cold.py

Before every timed call a 64 MiB buffer is written, so the weight comes from DRAM; median
of 15 calls, our sgemm as the linear layer runs it (trans_b, GEMV path).
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    from engine._kernels import gemm
    flush = np.ones(64 * 2**20 // 4, np.float32)
    print("| weight (N x K) | threads | ms | GB/s |")
    print("|---|---|---|---|")
    for n, k in [(1000, 1280), (1000, 2048), (4096, 4096)]:
        w = np.random.rand(n, k).astype(np.float32)
        x = np.random.rand(1, k).astype(np.float32)
        y = np.empty((1, n), np.float32)
        for t in (1, 2):
            work = np.empty(max(gemm.gemm_workspace(1, n, k, True, t), 1), np.float32)
            ts = []
            for _ in range(15):
                flush += 1.0                       # evict W from the caches
                t0 = time.perf_counter()
                gemm.sgemm(x, w, y, None, 0, False, True, False, 0, 0, 0, work, t)
                ts.append(time.perf_counter() - t0)
            med = float(np.median(ts))
            print(f"| {n} x {k} | {t} | {med * 1e3:.3f} | {w.nbytes / med / 1e9:.1f} |")


if __name__ == "__main__":
    main()
