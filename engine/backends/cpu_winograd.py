"""CPU backend: Winograd F(m x m, 3 x 3) convolution (include/engine/ek_winograd.h).

2-D convs with a constant 3x3 kernel, stride 1, dilation 1 and groups 1 run as
alpha^2 = (m + 2)^2 batched Cout x Cin GEMMs on transformed tiles instead of one im2col
GEMM with K = 9 Cin: 2.25x (F2), 4x (F4) or 5.06x (F6) fewer multiplies, paid for by the
input / output transforms, by the padding of the output to whole tiles and by precision
(see ek_winograd.h).

Which one runs is decided per layer at prepare time by ``choose_tile``, a cost model of the
three candidates and of the im2col GEMM on the layer's real shapes (its constants were
measured on the kernels, see the comments there).  Each tile size is its own kernel
variant (``winograd_f2`` / ``_f4`` / ``_f6``, priority above ``im2col_gemm``) whose
``supports`` accepts exactly the layers the model gives to it, so ``engine ops`` and the
plan's per-node variant say what ran.

Forcing a choice (tests, experiments): the plan option (``PrepareContext.options``) key
``"winograd"`` or the environment variable ``ENGINE_WINOGRAD``, read at prepare time:
``"auto"`` (default, the model), ``"off"`` (im2col), or ``"2"`` / ``"4"`` / ``"6"`` (that
tile size for every eligible conv).

Re-fitting the model on another machine: ``python -m engine.backends.cpu_winograd
[threads] [isa]`` times the candidates on ``CALIBRATION_SHAPES`` and prints the table entry.
"""

import os

import numpy as np

from .._kernels import conv as _conv
from .base import register_kernel
from .cpu import _c, _conv_weights, _getter, _isa, _residual_getter, _view, act_params

try:                                   # the nogil executor's prebindable kernels
    from .base import NativeKernel as _Kernel
except ImportError:                    # pragma: no cover - older runtime
    from .base import FunctionKernel as _Kernel

B = "cpu"
TILES = (2, 4, 6)
ENV = "ENGINE_WINOGRAD"

# -- cost model -----------------------------------------------------------------------------
# Modelled seconds of each candidate on the layer, linear in counts that the kernels'
# structure dictates, with coefficients fitted (non-negative least squares on relative
# error) to timings of the kernels themselves on this repository's benchmark VM (AMD EPYC
# Zen 5, 2 vCPUs; BENCHMARKS.md): ``calibrate`` on CALIBRATION_SHAPES (channels 8 to 512,
# maps 7 to 224, plus batch 2, odd sizes and C = 3), every candidate, min over 9
# interleaved rounds, per instruction set and thread count.  In sample the model picks the fastest candidate for
# 29/30 (AVX-512, 1 thread) and 28/30 (2 threads) shapes, with a mean loss of 0.3 % / 0.1 %
# against always picking the fastest (AVX2: 28/30, 0.5 %; scalar: 24/30, 1.2 %).
#
# Winograd F(m): [0] tiles * alpha^2 * Cout * C (GEMM multiply-adds), [1] tiles * alpha^2 *
# Cout (micro-kernel stores into M), [2] alpha^2 * C * Cout * blocks (the transformed
# weights streamed once per tile block: what dominates 7x7 / 14x14 maps with 512
# channels), [3] one per call, then per tile size the input / output transforms,
# tiles * C / util and tiles * Cout / util (util: lane use of the segments, at most VW
# tiles of one tile row).  im2col GEMM: [0] OH OW Cout 9C, [1] OH OW Cout, [2] OH OW 9C
# (im2col), [3] 9 C Cout (weights), [4] one per call.
_WINO_COEF = {
    # (isa level, threads >= 2): ([0..3], {m: (in, out)}), im2col [0..4]
    (2, False): ((1.744e-11, 4.130e-10, 1.542e-10, 3.592e-06),
                 {2: (0.0, 0.0), 4: (1.814e-09, 0.0), 6: (1.292e-08, 2.724e-10)},
                 (1.891e-11, 1.056e-10, 1.208e-10, 2.421e-10, 9.670e-06)),
    (2, True): ((8.198e-12, 1.801e-10, 1.362e-10, 5.728e-06),
                {2: (7.194e-10, 0.0), 4: (1.626e-09, 0.0), 6: (5.215e-09, 2.904e-09)},
                (1.057e-11, 4.611e-11, 5.631e-11, 4.912e-10, 1.857e-05)),
    (1, False): ((1.698e-11, 1.044e-09, 3.126e-10, 1.425e-05),
                 {2: (0.0, 0.0), 4: (0.0, 1.829e-09), 6: (4.703e-08, 0.0)},
                 (1.897e-11, 1.812e-10, 1.981e-10, 5.823e-10, 8.527e-06)),
    (0, False): ((3.011e-11, 0.0, 6.364e-10, 0.0),
                 {2: (2.900e-08, 1.182e-08), 4: (1.014e-07, 3.180e-09), 6: (1.813e-07, 0.0)},
                 (5.168e-11, 7.464e-10, 2.224e-10, 1.174e-09, 6.417e-06)),
}
_LANES = {2: 16, 1: 8, 0: 4}
# F6's error is about 1.6x F4's, 20x F2's (module docstring of tests/test_winograd.py):
# it is taken only when modelled this much faster than every other candidate
F6_MARGIN = 0.93
# below this many input channels the transforms cannot pay off (C = 3 stems: im2col)
MIN_CHANNELS = 4


def _ceil(a, b):
    return -(-a // b)


def _coef(isa, threads):
    isa = isa if isa in _LANES else 0
    key = (isa, threads >= 2)
    return _WINO_COEF.get(key) or _WINO_COEF[(isa, False)]


def winograd_cost(m, N, C, Cout, OH, OW, threads=1, isa=2):
    """Modelled seconds of F(m x m, 3 x 3) on this layer."""
    shared, per_m, _ = _coef(isa, threads)
    f = _features(m, N, C, Cout, OH, OW, threads, isa)
    return float(np.dot(shared, f[:4]) + per_m[m][0] * f[4] + per_m[m][1] * f[5])


def im2col_cost(N, C, Cout, OH, OW, threads=1, isa=2):
    """Modelled seconds of the im2col GEMM on this layer."""
    return float(np.dot(_coef(isa, threads)[2], _features(0, N, C, Cout, OH, OW, threads,
                                                            isa)))


def _features(m, N, C, Cout, OH, OW, threads, isa):
    """The model's counts for candidate m (0: im2col), in _WINO_COEF's order."""
    if m == 0:
        P = N * OH * OW
        return [P * Cout * 9 * C, P * Cout, P * 9 * C, 9 * C * Cout, 1.0]
    lanes = _LANES.get(isa, 4)
    bl = _conv.winograd_blocking((N, C, OH, OW), (Cout, C, 3, 3), (N, Cout, OH, OW), m,
                                 threads, isa=min(isa, _conv._isa_max_level()))
    tw = _ceil(OW, m)
    tiles = N * _ceil(OH, m) * tw
    npos = (m + 2) ** 2
    util = tw / (lanes * _ceil(tw, lanes))
    dup = min(threads, bl["channel_blocks"]) if bl["tasks"] > bl["blocks"] else 1
    return [tiles * npos * Cout * C, tiles * npos * Cout, npos * C * Cout * bl["blocks"], 1.0,
            tiles * C / util * dup, tiles * Cout / util]


def choose_tile(N, C, Cout, OH, OW, threads=1, isa=2):
    """0 (im2col GEMM) or the Winograd tile size the cost model finds fastest."""
    if C < MIN_CHANNELS:
        return 0
    costs = {0: im2col_cost(N, C, Cout, OH, OW, threads, isa)}
    for m in TILES:
        costs[m] = winograd_cost(m, N, C, Cout, OH, OW, threads, isa)
    best = min((m for m in costs if m != 6), key=costs.get)
    return 6 if costs[6] < F6_MARGIN * costs[best] else best


# -- eligibility and choice -----------------------------------------------------------------

def eligible(node, ctx):
    """A 2-D 3x3 stride-1 dilation-1 groups-1 conv with constant weights."""
    if node.op != "conv" or len(ctx.in_shapes) < 2:
        return False
    x_shape, w_shape = ctx.in_shapes[0], ctx.in_shapes[1]
    if x_shape is None or w_shape is None or len(x_shape) != 4 or len(w_shape) != 4:
        return False
    if ctx.constants[1] is None:
        return False
    a = node.attrs
    return (tuple(int(k) for k in w_shape[2:]) == (3, 3) and int(a["groups"]) == 1
            and all(int(s) == 1 for s in a["stride"])
            and all(int(d) == 1 for d in a["dilation"])
            and int(w_shape[1]) == int(x_shape[1]))


def forced(ctx):
    """The forced choice: None (auto), 0 (off) or a tile size."""
    v = (ctx.options or {}).get("winograd")
    if v is None:
        v = os.environ.get(ENV)
    if v is None:
        return None
    v = str(v).strip().lower()
    if v in ("", "auto"):
        return None
    if v in ("off", "0", "none", "im2col"):
        return 0
    v = v[1:] if v.startswith("f") else v
    if v.isdigit() and int(v) in TILES:
        return int(v)
    raise ValueError(f"{ENV} / option 'winograd' must be auto, off, 2, 4 or 6, got {v!r}")


def chosen_tile(node, ctx):
    """The tile size this conv runs with (0: not Winograd)."""
    if not eligible(node, ctx):
        return 0
    f = forced(ctx)
    if f is not None:
        return f
    N, C = int(ctx.in_shapes[0][0]), int(ctx.in_shapes[0][1])
    Cout = int(ctx.in_shapes[1][0])
    OH, OW = (int(d) for d in ctx.out_shapes[0][2:])
    return choose_tile(N, C, Cout, OH, OW, ctx.threads, _isa(ctx))


# -- kernel ---------------------------------------------------------------------------------

def winograd_factory(m):
    variant = f"winograd_f{m}"

    def factory(node, ctx):
        x_shape = tuple(int(d) for d in ctx.in_shapes[0])
        w_shape = tuple(int(d) for d in ctx.in_shapes[1])
        y_shape = tuple(int(d) for d in ctx.out_shapes[0])
        pad_begin = [int(p[0]) for p in node.attrs["padding"]]
        code, p0, p1 = act_params(node.attrs.get("activation"))
        threads = ctx.threads
        isa = _isa(ctx)
        xget = _getter(ctx, 0)
        rget = _residual_getter(ctx)
        wfn, bfn = _conv_weights(ctx, w_shape)
        w = wfn(None)                                    # constant (see eligible)
        wp = _conv.winograd_pack(w, m, isa=isa)          # transformed once, this level
        scratch = _conv.winograd_workspace(x_shape, w_shape, y_shape, m, threads, isa=isa)

        def run(inputs, outputs, work, bind=False):
            args = (_c(xget(inputs)).reshape(x_shape), wp, bfn(inputs),
                    _view(outputs[0], y_shape), pad_begin, code, p0, p1, rget(inputs), work,
                    threads)
            return _conv.conv2d_winograd(*args, bind=bind)
        return _Kernel(run, scratch, variant)
    return factory


_NOTES = {
    2: "Winograd F(2x2,3x3): 16 batched Cout x Cin GEMMs on 4x4 input tiles (2.25x fewer "
       "multiplies); small maps",
    4: "Winograd F(4x4,3x3): 36 batched GEMMs on 6x6 tiles (4x fewer multiplies)",
    6: "Winograd F(6x6,3x3): 64 batched GEMMs on 8x8 tiles (5.06x fewer multiplies); large "
       "maps",
}

# (run as a tool, ``python -m``, the package's own import of this module registers them)
for _m in TILES if __name__ != "__main__" else ():
    register_kernel(B, "conv", f"winograd_f{_m}",
                    supports=(lambda node, ctx, _m=_m: eligible(node, ctx)
                              if (ctx.options or {}).get("all_candidates")   # tune=True
                              else chosen_tile(node, ctx) == _m),
                    priority=6,
                    note=_NOTES[_m] + "; weights transformed once; input transform, GEMMs "
                         "and output transform (bias, residual, activation) per L2-sized "
                         "tile block; chosen per layer by a cost model")(winograd_factory(_m))


# -- calibration ----------------------------------------------------------------------------

CALIBRATION_SHAPES = (
    [(1, c, c, s, s) for s in (7, 14, 28, 56, 112) for c in (8, 16, 32, 64, 128, 256, 512)
     if 2e5 <= s * s * c * c * 9 <= 1.3e9]
    + [(1, 64, 64, 224, 224), (2, 64, 64, 28, 28), (1, 3, 64, 224, 224), (1, 32, 48, 17, 23)])


def _nnls(A, b, iters=100):
    """min |A x - b| over x >= 0 (Lawson-Hanson active set), columns pre-scaled."""
    scale = np.maximum(np.linalg.norm(A, axis=0), 1e-300)
    A = A / scale
    n = A.shape[1]
    x, active = np.zeros(n), np.zeros(n, bool)
    for _ in range(iters):
        w = A.T @ (b - A @ x)
        if active.all() or np.where(active, -np.inf, w).max() <= 1e-12:
            break
        active[int(np.argmax(np.where(active, -np.inf, w)))] = True
        while True:
            z = np.zeros(n)
            z[active] = np.linalg.lstsq(A[:, active], b, rcond=None)[0]
            if (z[active] > 0).all():
                x = z
                break
            neg = active & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            active &= x > 1e-15
    return x / scale


def calibrate(threads=1, isa=None, rounds=9, shapes=CALIBRATION_SHAPES, verbose=True):
    """Time the im2col GEMM and F2 / F4 / F6 (min over interleaved rounds) on ``shapes``
    ((N, C, Cout, H, W), padding 1) with the current kernels, fit the cost model (relative
    error) and return the _WINO_COEF entry for (isa, threads >= 2)."""
    import time
    isa = _conv._isa_level() if isa is None else isa
    rng = np.random.default_rng(0)
    times = []
    for N, C, Cout, H, W in shapes:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = (rng.standard_normal((Cout, C, 3, 3)) * 0.1).astype(np.float32)
        x5, w5, y5 = (N, C, 1, H, W), (Cout, C, 1, 3, 3), (N, Cout, 1, H, W)
        y = np.empty(y5, np.float32)
        one, pad = [1, 1, 1], [0, 1, 1]
        wp = _conv.conv_pack(w.reshape(w5), 1, isa=isa)
        wk = np.empty(_conv.conv_packed_workspace(x5, w5, y5, one, pad, one, 1, threads,
                                                  isa=isa), np.float32)
        fns = {0: lambda: _conv.conv3d_packed(x.reshape(x5), wp, None, y, one, pad, one,
                                              work=wk, nthreads=threads)}
        for m in TILES:
            wpm = _conv.winograd_pack(w, m, isa=isa)
            wkm = np.empty(_conv.winograd_workspace(x.shape, w.shape, y5[:2] + y5[3:], m,
                                                    threads, isa=isa), np.float32)
            fns[m] = (lambda wpm=wpm, wkm=wkm: _conv.conv2d_winograd(
                x, wpm, None, y.reshape(N, Cout, H, W), [1, 1], work=wkm, nthreads=threads))
        best = dict.fromkeys(fns, np.inf)
        for r in range(rounds):
            for i in range(len(fns)):
                m = list(fns)[(i + r) % len(fns)]
                t0 = time.perf_counter()
                fns[m]()
                best[m] = min(best[m], time.perf_counter() - t0)
        times.append(((N, C, Cout, H, W), best))
        if verbose:
            print(f"{(N, C, Cout, H, W)}: " + " ".join(
                f"{'im2col' if m == 0 else f'F{m}'} {t * 1e3:.3f} ms" for m, t in best.items()),
                flush=True)
    rows_w, rows_i = [], []
    for (N, C, Cout, H, W), best in times:
        rows_i.append(np.array(_features(0, N, C, Cout, H, W, threads, isa)) / best[0])
        if C < MIN_CHANNELS:
            continue
        for j, m in enumerate(TILES):
            f = _features(m, N, C, Cout, H, W, threads, isa)
            row = np.zeros(4 + 2 * len(TILES))
            row[:4], row[4 + 2 * j:6 + 2 * j] = f[:4], f[4:]
            rows_w.append(row / best[m])
    cw = _nnls(np.array(rows_w), np.ones(len(rows_w)))
    ci = _nnls(np.array(rows_i), np.ones(len(rows_i)))
    return (tuple(float(f"{v:.4g}") for v in cw[:4]),
            {m: (float(f"{cw[4 + 2 * j]:.4g}"), float(f"{cw[5 + 2 * j]:.4g}"))
             for j, m in enumerate(TILES)},
            tuple(float(f"{v:.4g}") for v in ci))


if __name__ == "__main__":                                 # pragma: no cover - tool
    import sys
    from .. import _kernels
    t = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    if len(sys.argv) > 2:
        _kernels.set_isa(sys.argv[2])
    lv = _conv._isa_level()
    print(f"    ({lv}, {t >= 2}): {calibrate(t, lv)!r},")
