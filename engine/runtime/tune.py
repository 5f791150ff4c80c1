"""Kernel auto-tuning: time every candidate kernel of a layer once, keep the fastest.

``Session(model, tune=True)`` prepares each layer with every kernel variant that supports
it (``candidates``: the registry asked with ``options["all_candidates"]``, so predicates
that normally pick one variant by a cost model, like Winograd's tile size, admit every
eligible one), times each on random data of the layer's real shapes with the session's
thread count, and uses the fastest.  Choices are cached per (layer, shapes, threads,
instruction set) in a JSON file: next to the model file (``<model>.tune.json``) when the
session was given a path, or at ``tune_cache=``; a later session reads the file and skips
the timing.  A cache entry naming a variant that no longer exists or no longer supports
the layer is ignored.
"""

import json
import os
import time
from dataclasses import replace

import numpy as np

from ..backends.base import KERNELS, select_kernel

CACHE_VERSION = 1


def candidates(node, ctx):
    """Every kernel spec of ctx.backend that supports this node, best priority first."""
    wide = replace(ctx, options={**ctx.options, "all_candidates": True})
    return [s for s in KERNELS.get((ctx.backend, node.op), [])
            if s.supports is None or s.supports(node, wide)]


def _time_kernel(kernel, ctx, node, repeat):
    rng = np.random.default_rng(0)
    ins = []
    for shape, const in zip(ctx.in_shapes, ctx.constants):
        if shape is None:
            ins.append(None)
        elif const is not None:
            ins.append(const)
        else:
            ins.append(rng.standard_normal(shape).astype(np.float32))
    outs = [np.empty(s, np.float32) for s in ctx.out_shapes]
    scratch = np.empty(max(int(getattr(kernel, "scratch", 0)), 0), np.float32)
    kernel.run(ins, outs, scratch)                      # warm-up (page faults, caches)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        kernel.run(ins, outs, scratch)
        best = min(best, time.perf_counter() - t0)
    return best


class Tuner:
    """Chooses and remembers kernel variants; ``path`` None keeps the cache in memory."""

    def __init__(self, path=None, repeat=5, isa=""):
        self.path = path
        self.repeat = repeat
        self.isa = isa
        self.choices = {}
        self.timed = 0                 # layers timed by this tuner (not served by the cache)
        self.report = {}               # key -> {variant: seconds} of the layers timed here
        if path and os.path.exists(path):
            try:
                with open(path) as f:
                    data = json.load(f)
                if data.get("version") == CACHE_VERSION:
                    self.choices = dict(data.get("choices", {}))
            except (OSError, ValueError):
                self.choices = {}      # unreadable cache: tune again, rewrite it

    def key(self, node, ctx):
        shapes = ",".join("x".join(map(str, s)) if s is not None else "-"
                          for s in ctx.in_shapes)
        return f"{node.name}|{node.op}|{shapes}|t{ctx.threads}|{self.isa}"

    def choose(self, node, ctx):
        """(KernelSpec, prepared kernel or None) to use for this node."""
        specs = candidates(node, ctx)
        if len(specs) <= 1:
            return (specs[0] if specs else select_kernel(node, ctx)), None
        key = self.key(node, ctx)
        cached = self.choices.get(key)
        for s in specs:
            if s.variant == cached:
                return s, None
        wide = replace(ctx, options={**ctx.options, "all_candidates": True})
        times, kernels = {}, {}
        for s in specs:
            kernels[s.variant] = s.factory(node, wide)
            times[s.variant] = _time_kernel(kernels[s.variant], ctx, node, self.repeat)
        best = min(specs, key=lambda s: times[s.variant])
        self.choices[key] = best.variant
        self.report[key] = times
        self.timed += 1
        return best, kernels[best.variant]

    def save(self):
        if not self.path or not self.timed:
            return
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"version": CACHE_VERSION, "choices": self.choices}, f, indent=1,
                      sort_keys=True)
        os.replace(tmp, self.path)
