#!/usr/bin/env python
"""Benchmarks of engine's CPU kernels and models, measured side by side with the peers.

GEMM microbenchmark (ours per instruction set vs numpy's BLAS, OpenBLAS here) on the
conv-shaped GEMMs of ResNet-50:

    python tools/bench.py gemm                       # threads 1 and 2, every usable ISA
    python tools/bench.py gemm --threads 1 --isa avx512 --coretype SkylakeX --rounds 30

Model latency (ours vs PyTorch, and ONNX Runtime / OpenVINO / ncnn when installed; same
input, same thread count, batch 1):

    python tools/bench.py model resnet50 resnet18 mobilenet_v2 --threads 1,2
    python tools/bench.py model tv:convnext_tiny   # any torchvision model, converted with
                                                   # random weights (torch.manual_seed(0))
    python tools/bench.py model path/to/model.safetensors --input-shape 1,3,224,224
    python tools/bench.py model mypkg.mymod:build  # a callable returning an engine Model
                                                   # (or (Model, torch.nn.Module))

Per-layer time and GFLOP/s of our engine (the plan as `engine summary --plan` shows it):

    python tools/bench.py layers resnet50 --threads 1 --repeat 5

Per-layer overhead of the executor (a chain of tiny ops, native nogil executor vs the
Python path):

    python tools/bench.py overhead

Our latency at 1 and 2 threads while other processes keep cores busy (a busy loop each;
``--busy 0`` is the quiet reference), all thread counts interleaved in one process; every
count above one both as sessions run it (the count per run chosen by measurement,
engine/runtime/threads.py) and pinned (``adapt_threads=False``):

    python tools/bench.py contention resnet18 mobilenet_v2 --busy 1

Folder inference throughput (`engine run MODEL DIR --output preds.csv`, engine/batch.py):
N generated image files (JPEG photos of 500x375 for 3-channel models, 28x28 PNG digits for
1-channel ones; "default" is the bundled LeNet-5), timed as decoding alone, inference alone
on the decoded batches, batch-1 latency times N, and the folder run that overlaps the two:

    python tools/bench.py throughput default resnet18 --images 2000 --batch 16 --threads 1,2

Method. Every thread count runs in its own subprocess, with OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS / MKL_NUM_THREADS set before numpy (and torch) are imported, so the BLAS
really uses that many threads (threadpoolctl is not needed); our kernels get the same count
explicitly. OPENBLAS_THREAD_TIMEOUT=4 and GOMP_SPINCOUNT=10000 (unless set) make idle pool
threads (OpenBLAS's, libgomp's in torch) sleep soon after a call instead of
spinning for up to ~0.1 s on a core the next contender needs; measured alone, neither
numpy's nor our speed changes with them. No sleep between contenders: on this VM a core left
idle for 10 ms runs the next milliseconds measurably slower. Inside a process the contenders
are timed interleaved: each round times every contender once, in a rotating order, so that
load from other processes on a shared machine hits all of them alike. A timing is the mean
of enough back-to-back calls to last a few milliseconds; the table reports the median over
the rounds (and the best).  Ratios: ours / numpy for GEMM GFLOP/s (> 1: we are faster),
ours / peer for model latency (< 1: we are faster).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, M, N, K, kind): "conv": weights are the pre-packed A operand (M = Cout), the
# activations B (K x N) arrive at run time; "fc": y = x W^T as the linear layer runs it
# (batch <= 3: GEMV on the row-major W; larger batches: W pre-packed as B).
RESNET50_GEMMS = [
    ("conv2_x 3x3", 64, 3136, 576, "conv"),
    ("conv2_x 1x1 expand", 256, 3136, 64, "conv"),
    ("conv3_x 3x3", 128, 784, 1152, "conv"),
    ("conv4_x 3x3", 256, 196, 2304, "conv"),
    ("conv5_x 3x3", 512, 49, 4608, "conv"),
    ("conv4_x 1x1 reduce", 256, 196, 1024, "conv"),
    ("conv5_x 1x1 expand", 2048, 49, 512, "conv"),
    ("fc", 1, 1000, 2048, "fc"),
]


# ------------------------------------------------------------------------------ helpers --

def _env_for(threads, coretype=None):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    # OpenBLAS's idle workers spin for up to 2^28 TSC cycles (~0.1 s here) after each call,
    # taking a core from whatever runs next (interleaved: us); 2^4 makes them sleep at
    # once.  Measured: numpy alone is as fast with it as without.
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    # Likewise libgomp (torch's bundled OpenMP) spins ~300k iterations before sleeping;
    # 10k keeps back-to-back calls warm without starving the next contender of a core.
    # (Our own pool spins 200 us after a grid, then sleeps: ENGINE_POOL_SPIN_US.)
    env.setdefault("GOMP_SPINCOUNT", "10000")
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run_worker(args, threads, coretype=None, isa=None):
    cmd = [sys.executable, os.path.abspath(__file__)] + args + ["--_worker", str(threads)]
    env = _env_for(threads, coretype)
    if isa:
        env["ENGINE_ISA"] = isa
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit(f"worker for {threads} thread(s) failed")
    for line in r.stdout.splitlines():
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    raise SystemExit("worker printed no result:\n" + r.stdout + r.stderr)


def _calibrate(fn, target_s):
    """Calls per timing so that one timing lasts about target_s."""
    fn()
    t0 = time.perf_counter()
    fn()
    dt = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(target_s / dt))


def interleaved(contenders, rounds, target_s=0.004, warmup=2, settle=0.0):
    """{name: [seconds per call, one per round]}, contenders timed in rotating order.

    settle: seconds slept before each timing, so that the idle threads of the previous
    contender's pool (OpenBLAS workers spin for up to ~2^28 cycles after a call, OpenMP
    runtimes for a while too) are asleep and do not steal a core from the next one.
    """
    names = list(contenders)
    inner = {n: _calibrate(contenders[n], target_s) for n in names}
    for _ in range(warmup):
        for n in names:
            contenders[n]()
    out = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            fn, k = contenders[n], inner[n]
            if settle:
                time.sleep(settle)
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            out[n].append((time.perf_counter() - t0) / k)
    return out


def _settle(opts, threads):
    # Default 0: on this VM a core left idle even 10 ms runs the next milliseconds slower
    # (measured: -15 % at 1 thread after a 10 ms sleep), so sleeping between contenders
    # would penalise whoever follows the sleep.
    return opts.settle or 0.0


def _median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _machine():
    import platform
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model or platform.processor()} ({os.cpu_count()} logical CPUs)"


# --------------------------------------------------------------------------------- GEMM --

def gemm_worker(opts, threads):
    import numpy as np
    from engine import _kernels
    from engine._kernels import gemm as kg

    isas = [i for i in opts.isa.split(",") if i] if opts.isa else _kernels.available_isas()[::-1]
    rng = np.random.default_rng(0)
    rows = []
    # the yardstick: this machine's FMA peak at each level and this thread count, measured
    # before and after the GEMMs (the better of the two: the VM's speed drifts)
    peak = {i: kg.fma_peak(0.3, threads, isa=i) / 1e9 for i in isas}
    for name, M, N, K, kind in RESNET50_GEMMS:
        if opts.only and not any(s in name for s in opts.only.split(",")):
            continue
        c = np.empty((M, N), np.float32)
        ours = {}
        if kind == "conv":
            A = rng.standard_normal((M, K)).astype(np.float32)
            Bm = rng.standard_normal((K, N)).astype(np.float32)
            ref = A.astype(np.float64) @ Bm
            c_np = np.empty((M, N), np.float32)
            theirs = lambda: np.matmul(A, Bm, out=c_np)  # noqa: E731
            for isa in isas:
                pa = kg.pack_a(A, isa=isa)
                w = np.empty(kg.gemm_workspace(M, N, K, False, threads, a_packed=True,
                                               isa=isa), np.float32)
                ours[isa] = (lambda pa=pa, w=w: kg.sgemm(pa, Bm, c, work=w, nthreads=threads))
        else:   # fc: x (M x K) @ W^T, W (N x K)
            x = rng.standard_normal((M, K)).astype(np.float32)
            W = rng.standard_normal((N, K)).astype(np.float32)
            ref = x.astype(np.float64) @ W.T.astype(np.float64)
            c_np = np.empty((N,), np.float32) if M == 1 else np.empty((M, N), np.float32)
            if M == 1:
                xv = x.reshape(K)
                theirs = lambda: np.matmul(W, xv, out=c_np)  # noqa: E731  (sgemv)
            else:
                theirs = lambda: np.matmul(x, W.T, out=c_np)  # noqa: E731
            for isa in isas:
                if M <= 3:   # as engine.backends.cpu's linear: GEMV on the row-major W
                    w = np.empty(kg.gemm_workspace(M, N, K, True, threads, isa=isa),
                                 np.float32)
                    ours[isa] = (lambda w=w, isa=isa: kg.sgemm(
                        x, W, c, trans_b=True, work=w, nthreads=threads, isa=isa))
                    continue
                pb = kg.pack_b(W, trans_b=True, isa=isa)
                w = np.empty(kg.gemm_workspace(M, N, K, False, threads, b_packed=True,
                                               isa=isa), np.float32)
                ours[isa] = (lambda pb=pb, w=w: kg.sgemm(x, pb, c, work=w, nthreads=threads))
        # correctness of what is timed
        for isa, fn in ours.items():
            fn()
            err = float(np.abs(c - ref).max() / max(1.0, np.abs(ref).max()))
            if err > 1e-4:
                raise SystemExit(f"{name} {isa}: relative error {err:.2e}")
        contenders = {"numpy": theirs}
        contenders.update({f"ours_{i}": f for i, f in ours.items()})
        t = interleaved(contenders, opts.rounds, settle=_settle(opts, threads))
        flop = 2.0 * M * N * K
        row = {"name": name, "M": M, "N": N, "K": K, "kind": kind}
        for n, v in t.items():
            row[n] = {"median_s": _median(v), "min_s": min(v),
                      "gflops": flop / _median(v) * 1e-9}
        rows.append(row)
    for i in isas:
        peak[i] = max(peak[i], kg.fma_peak(0.3, threads, isa=i) / 1e9)
    return {"threads": threads, "rows": rows, "isas": isas, "peak": peak}


def gemm_main(opts):
    import numpy as np
    results = [_run_worker(["gemm"] + opts.passthrough, t, opts.coretype)
               for t in opts.threads]
    print(f"# GEMM GFLOP/s, median of {opts.rounds} interleaved rounds (best round in "
          f"parentheses); machine: {_machine()}; numpy {np.__version__}"
          + (f", OPENBLAS_CORETYPE={opts.coretype}" if opts.coretype else ""))
    print("# ratio = ours / numpy from the medians (from the best rounds in parentheses); "
          "% of peak = ours / the FMA peak measured in the same process at that level and "
          "thread count (engine._kernels.gemm.fma_peak)")
    for res in results:
        t, isas, peak = res["threads"], res["isas"], res["peak"]
        print(f"\n## {t} thread{'s' if t > 1 else ''}\n")
        print("measured peak, GFLOP/s: " + ", ".join(f"{i} {peak[i]:.1f}" for i in isas) + "\n")
        hdr = "| GEMM (M x N x K) | numpy | " + " | ".join(f"ours {i}" for i in isas) + \
              " | " + " | ".join(f"{i} / numpy" for i in isas) + \
              " | " + " | ".join(f"{i} % of peak" for i in isas) + " |"
        print(hdr)
        print("|" + "---|" * (2 + 3 * len(isas)))
        for row in res["rows"]:
            flop = 2.0 * row["M"] * row["N"] * row["K"] * 1e-9
            npm, npb = row["numpy"]["gflops"], flop / row["numpy"]["min_s"]
            cells, ratios = [], []
            for i in isas:
                o = row["ours_" + i]
                om, ob = o["gflops"], flop / o["min_s"]
                cells.append(f"{om:.1f} ({ob:.1f})")
                ratios.append(f"{om / npm:.2f} ({ob / npb:.2f})")
            effs = [f"{100 * row['ours_' + i]['gflops'] / peak[i]:.0f}" for i in isas]
            print(f"| {row['name']} ({row['M']}x{row['N']}x{row['K']}) | {npm:.1f} ({npb:.1f}) | "
                  + " | ".join(cells) + " | " + " | ".join(ratios) + " | " + " | ".join(effs)
                  + " |")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)


# -------------------------------------------------------------------------------- model --

def _import_torchvision():
    """torchvision, also when its compiled ops do not load against this torch (the model
    definitions are plain torch.nn; engine/convert/tv_compat.py registers the missing
    schemas)."""
    from engine.convert.tv_compat import torchvision_or_why
    tv, why = torchvision_or_why()
    if tv is None:
        raise ImportError(why)
    return tv


def _load_model(spec, opts):
    """(engine Model, torch module or None, input shape)."""
    import importlib
    if spec.startswith("tv:"):
        # a torchvision model outside our zoo (ConvNeXt, ...): random weights, converted
        import torch
        from engine.convert import from_torch
        torch.manual_seed(0)
        tmod = getattr(_import_torchvision().models, spec[3:])(weights=None).eval()
        shape = tuple(int(v) for v in opts.input_shape.split(",")) if opts.input_shape \
            else (opts.batch, 3, 224, 224)
        return from_torch(tmod, torch.zeros(shape)), tmod, shape
    if os.path.exists(spec):
        import engine
        model = engine.load(spec)
        shape = tuple(int(v) for v in opts.input_shape.split(",")) if opts.input_shape else None
        return model, None, shape
    if ":" in spec:
        mod, fn = spec.split(":", 1)
        obj = getattr(importlib.import_module(mod), fn)()
        model, tmod = obj if isinstance(obj, tuple) else (obj, None)
        shape = tuple(int(v) for v in opts.input_shape.split(",")) if opts.input_shape else None
        return model, tmod, shape
    # a zoo name: ours with the zoo's random weights (He-normal, random BN statistics:
    # activations stay O(1)), and torchvision's model with the same weights loaded (the zoo
    # uses torchvision's parameter names), so the outputs can be compared meaningfully.
    import engine.zoo
    import numpy as np
    model = engine.zoo.get(spec)
    tmod = None
    if not opts.no_torch and "torch" in opts.vs.split(","):
        try:
            import torch
            torchvision = _import_torchvision()
            tmod = getattr(torchvision.models, spec)(weights=None).eval()
            sd = tmod.state_dict()
            new = {k: torch.from_numpy(np.ascontiguousarray(model.constants[k]))
                   .reshape(sd[k].shape) for k in sd if k in model.constants}
            tmod.load_state_dict(new, strict=False)   # aux heads etc. are unused in eval
        except Exception as e:        # no torch / torchvision / no such model
            print(f"# {spec}: no PyTorch twin ({type(e).__name__}: {e})", file=sys.stderr)
            tmod = None
    arch = engine.zoo.info(spec)
    shape = (opts.batch,) + tuple(arch.input_size)
    if opts.input_shape:
        shape = tuple(int(v) for v in opts.input_shape.split(","))
    return model, tmod, shape


def model_worker(opts, threads):
    import numpy as np
    import engine
    rows = []
    torch = None
    if not opts.no_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except Exception:
            torch = None
    for spec in opts.models:
        model, tmod, shape = _load_model(spec, opts)
        if shape is None:
            v = model.inputs[0]
            shape = tuple(opts.batch if d is None else int(d) for d in v.shape)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        sess = engine.Session(model, threads=threads)
        y = sess.run(x)[0]
        contenders = {"ours": lambda: sess.run(x)}
        row = {"model": spec, "input": list(shape)}
        if tmod is not None and torch is not None:
            xt = torch.from_numpy(x)
            with torch.inference_mode():
                yt = tmod(xt)
                yt = (yt["out"] if isinstance(yt, dict) else yt).numpy()
            row["max_rel_diff"] = float(np.abs(y - yt).max() / max(1e-6, np.abs(yt).max()))

            def run_torch():
                with torch.inference_mode():
                    tmod(xt)
            contenders["torch"] = run_torch
        for peer in _peer_list(opts):
            try:
                from engine import peers
                if peer == "onnxruntime" and not opts.ort_spinning:
                    run_p = _ort_runner_no_spin(peers, model, threads)
                else:
                    run_p = peers.make_runner(peer, model, threads)
                yp = np.asarray(run_p(x))
                row[f"max_rel_diff_{peer}"] = float(np.abs(y - yp).max() /
                                                    max(1e-6, np.abs(yp).max()))
                contenders[peer] = (lambda run_p=run_p: run_p(x))
            except Exception as e:       # not installed, op not exportable, ...
                print(f"# {spec}: no {peer} run ({type(e).__name__}: {e})", file=sys.stderr)
        t = interleaved(contenders, opts.rounds, target_s=0.0, settle=_settle(opts, threads))
        for n, v in t.items():
            row[n] = {"median_ms": _median(v) * 1e3, "min_ms": min(v) * 1e3}
        rows.append(row)
    return {"threads": threads, "rows": rows}


def _ort_runner_no_spin(peers, model, threads):
    """engine.peers' ONNX Runtime session, with its intra-op threads not spinning after
    each op: spinning ORT workers keep a core busy for a long time after every inference
    and, interleaved, slow whoever runs next (ours: 1.5-2x at 2 threads, measured).  Alone,
    ORT without spinning measured as fast on ResNet-50 and ~20 % slower on MobileNetV2."""
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(peers.to_onnx(model).SerializeToString(), o,
                                providers=["CPUExecutionProvider"])
    name = model.inputs[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _peer_list(opts):
    """ONNX Runtime / OpenVINO / ncnn (through engine.peers' ONNX export) to time as well."""
    if opts.no_peers:
        return []
    want = [p for p in opts.vs.split(",") if p and p != "torch"]
    try:
        from engine import peers
        avail = set(peers.available())
    except Exception:
        return []
    return [p for p in want if p in avail]


def model_main(opts):
    results = [_run_worker(["model"] + opts.passthrough, t, isa=opts.isa)
               for t in opts.threads]
    peers_seen = []
    for res in results:
        for row in res["rows"]:
            for k in row:
                if k in ("torch", "onnxruntime", "openvino", "ncnn") and k not in peers_seen:
                    peers_seen.append(k)
    print(f"# model latency, batch {opts.batch}, ms: median of {opts.rounds} interleaved "
          f"rounds (best in parentheses); machine: {_machine()}"
          + (f"; ENGINE_ISA={opts.isa}" if opts.isa else ""))
    print("# ratio = ours / peer (< 1: we are faster), from the medians (best rounds); "
          "diff = max |ours - peer| / max |peer|")
    hdr = "| model | threads | ours (ms) | " + " | ".join(
        f"{p} (ms) | ours / {p} | diff" for p in peers_seen) + " |"
    print("\n" + hdr)
    print("|" + "---|" * (3 + 3 * len(peers_seen)))
    for res in results:
        for row in res["rows"]:
            o, ob = row["ours"]["median_ms"], row["ours"]["min_ms"]
            cells = [row["model"], str(res["threads"]), f"{o:.2f} ({ob:.2f})"]
            for p in peers_seen:
                if p in row:
                    pm, pb = row[p]["median_ms"], row[p]["min_ms"]
                    d = row.get("max_rel_diff" if p == "torch" else f"max_rel_diff_{p}")
                    cells += [f"{pm:.2f} ({pb:.2f})", f"{o / pm:.2f} ({ob / pb:.2f})",
                              f"{d:.1e}" if d is not None else "-"]
                else:
                    cells += ["-", "-", "-"]
            print("| " + " | ".join(cells) + " |")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)


# ------------------------------------------------------------------------------- layers --

def layers_main(opts):
    """Per-layer kernel, time, share and GFLOP/s of our engine, in this process."""
    import engine
    for spec in opts.models:
        model, _, shape = _load_model(spec, opts)
        for t in opts.threads:
            sess = engine.Session(model, threads=t)
            rows = sess.plan(opts.batch, timed=True, repeat=opts.repeat)
            total = sum(r.seconds for r in rows)
            macs = sum(r.macs for r in rows)
            print(f"\n# {spec}, batch {opts.batch}, {t} thread(s): {total * 1e3:.2f} ms summed "
                  f"over layers (min of {opts.repeat}), {2e-9 * macs / total:.1f} GFLOP/s "
                  f"overall; machine: {_machine()}")
            print("| layer | op | kernel | output | ms | share | GFLOP/s |")
            print("|---|---|---|---|---|---|---|")
            for r in rows:
                if opts.convs_only and not r.op.startswith("conv"):
                    continue
                gf = f"{r.gflops:.1f}" if r.gflops else "-"
                print(f"| {r.name} | {r.op} | {r.variant} | {r.shape} | {r.seconds * 1e3:.3f} "
                      f"| {r.share * 100:.1f}% | {gf} |")


# ----------------------------------------------------------------------------- overhead --

def overhead_main(opts):
    """Per-layer cost of the executor: time of a chain of L tiny ops minus that of 2 ops,
    divided by L - 2, for the nogil executor and the Python path (1 thread)."""
    import numpy as np
    import engine

    def chain(n):
        b = engine.Builder()
        x = b.input("x", (1, 8))
        t = x
        for i in range(n):
            t = b.relu(t) if i % 2 == 0 else b.add(t, x)
        b.output(t)
        return b.build()

    x = np.ones((1, 8), np.float32)
    sessions = {}
    for ex in ("native", "python"):
        for n in (2, opts.layers):
            sessions[ex, n] = engine.Session(chain(n), threads=1, executor=ex,
                                             optimize_graph=False)

    def runner(s):
        def run():
            for _ in range(100):
                s.run(x)
        return run
    t = interleaved({k: runner(s) for k, s in sessions.items()}, opts.rounds, target_s=0.0)
    print(f"# executor overhead, chain of {opts.layers} tiny ops (relu / add on 8 floats), "
          f"1 thread, median of {opts.rounds} interleaved rounds; machine: {_machine()}")
    print("| executor | per layer (us) | fixed per run (us) |")
    print("|---|---|---|")
    for ex in ("native", "python"):
        a, b = _median(t[ex, 2]) / 100, _median(t[ex, opts.layers]) / 100
        print(f"| {ex} | {(b - a) / (opts.layers - 2) * 1e6:.3f} | {a * 1e6:.1f} |")


# --------------------------------------------------------------------------- contention --

def _busy_loop():
    while True:
        pass


def contention_main(opts):
    """Our latency at each thread count, quiet and with ``opts.busy`` busy-loop processes
    (each keeps one core busy), interleaved in one process."""
    import multiprocessing
    import numpy as np
    import engine
    print(f"# latency with other processes busy, batch {opts.batch}, ms: median of "
          f"{opts.rounds} interleaved rounds (best in parentheses); machine: {_machine()}")
    first = opts.threads[0]
    kinds = [(t, True) for t in opts.threads] + [(t, False) for t in opts.threads if t > 1]
    names = {k: f"{k[0]} thread(s)" + ("" if k[1] or k[0] == 1 else " pinned")
             for k in kinds}
    hdr = ["model", "busy processes"] + [f"{names[k]} (ms)" for k in kinds]
    hdr += [f"{names[k]} / {first}" for k in kinds[1:]]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for spec in opts.models:
        model, _, shape = _load_model(spec, opts)
        if shape is None:
            shape = tuple(opts.batch if d is None else int(d) for d in model.inputs[0].shape)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        sessions = {k: engine.Session(model, threads=k[0], adapt_threads=k[1]) for k in kinds}
        for busy in sorted({0, opts.busy}):
            procs = [multiprocessing.Process(target=_busy_loop, daemon=True)
                     for _ in range(busy)]
            for pr in procs:
                pr.start()
            try:
                time.sleep(0.2 if busy else 0.0)
                t = interleaved({k: (lambda s=s: s.run(x)) for k, s in sessions.items()},
                                opts.rounds, target_s=0.0)
            finally:
                for pr in procs:
                    pr.terminate()
                    pr.join()
            med = {k: _median(v) * 1e3 for k, v in t.items()}
            cells = [spec, str(busy)] + [f"{med[k]:.2f} ({min(t[k]) * 1e3:.2f})"
                                         for k in kinds]
            cells += [f"{med[k] / med[kinds[0]]:.2f}" for k in kinds[1:]]
            print("| " + " | ".join(cells) + " |", flush=True)


def _write_images(folder, n, channels):
    """n image files: random-texture JPEG photos (500x375) or PNG digits (28x28)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    base = rng.integers(0, 256, (375 // 5, 500 // 5, 3), dtype=np.uint8)
    files = []
    for i in range(n):
        if channels == 1:
            px = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            path = os.path.join(folder, f"digit{i:05d}.png")
        else:       # smooth enough to compress as photos do, different per file
            tile = np.roll(base, (i % 7, i % 11), axis=(0, 1)) ^ np.uint8(i % 251)
            px = np.kron(tile, np.ones((5, 5, 1), np.uint8))
            path = os.path.join(folder, f"photo{i:05d}.jpg")
        Image.fromarray(px).save(path, **({"quality": 90} if channels == 3 else {}))
        files.append(path)
    return files


def throughput_main(opts):
    """Images per second of folder inference, with its parts timed alone."""
    import concurrent.futures as cf
    import tempfile
    import numpy as np
    import engine
    import engine.batch
    import engine.inputs
    import engine.zoo
    decoders = min(4, os.cpu_count() or 1)
    print(f"# folder inference, {opts.images} images, batch {opts.batch}, {decoders} decode "
          f"threads; machine: {_machine()}")
    hdr = ["model", "threads", "images", "decode alone (s)", "inference alone (s)",
           "decode + inference (s)", "folder run (s)", "images/s", "batch-1 latency x N (s)"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for spec, threads in [(m, t) for m in opts.models for t in opts.threads]:
        path = os.path.join(ROOT, "engine", "data", "default.safetensors") \
            if spec == "default" else spec
        model = engine.load(path) if os.path.exists(path) else engine.zoo.get(spec)
        shape = tuple(model.inputs[0].shape)
        sess = engine.Session(model, threads=threads)
        with tempfile.TemporaryDirectory() as tmp:
            files = _write_images(os.path.join(tmp, "images"), opts.images, shape[1])
            read = lambda f: engine.inputs.read_one(f, model)      # noqa: E731
            t0 = time.perf_counter()
            with cf.ThreadPoolExecutor(decoders) as pool:
                x = np.stack(list(pool.map(read, files)))
            decode = time.perf_counter() - t0
            sess.run(x[:opts.batch])                                # plans made
            sess.run(x[:1])
            t0 = time.perf_counter()
            for i in range(0, len(x), opts.batch):
                sess.run(x[i:i + opts.batch])
            infer = time.perf_counter() - t0
            one = []
            for i in range(min(len(x), 200)):
                t1 = time.perf_counter()
                sess.run(x[i:i + 1])
                one.append(time.perf_counter() - t1)
            s = engine.batch.run_many(sess, model, files, read, batch=opts.batch, top=3,
                                      output=os.path.join(tmp, "preds.csv"), quiet=True,
                                      decode_threads=decoders)
            assert s["done"] == len(files) and not s["skipped"]
        cells = [spec, str(threads), str(len(files)), f"{decode:.2f}", f"{infer:.2f}",
                 f"{decode + infer:.2f}", f"{s['seconds']:.2f}",
                 f"{len(files) / s['seconds']:.0f}", f"{_median(one) * len(files):.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


# --------------------------------------------------------------------------------- main --

def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    worker = None
    if "--_worker" in argv:
        i = argv.index("--_worker")
        worker = int(argv[i + 1])
        del argv[i:i + 2]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gemm", help="GEMM microbenchmark vs numpy")
    g.add_argument("--threads", default="1,2")
    g.add_argument("--isa", default="", help="comma list (default: every usable level)")
    g.add_argument("--rounds", type=int, default=21)
    g.add_argument("--only", default="", help="comma list of substrings of shape names")
    g.add_argument("--coretype", default="", help="OPENBLAS_CORETYPE for numpy's OpenBLAS")
    g.add_argument("--json", default="")
    g.add_argument("--settle", type=float, default=None,
                   help="seconds slept before each timing (default 0)")
    m = sub.add_parser("model", help="model latency vs PyTorch")
    m.add_argument("models", nargs="+", help="zoo names, model files or module:callable")
    m.add_argument("--threads", default="1,2")
    m.add_argument("--batch", type=int, default=1)
    m.add_argument("--input-shape", default="")
    m.add_argument("--rounds", type=int, default=15)
    m.add_argument("--no-torch", action="store_true")
    m.add_argument("--vs", default="torch,onnxruntime,openvino,ncnn",
                   help="peers to time (those installed); ONNX Runtime and OpenVINO run the "
                        "engine model exported to ONNX by engine.peers")
    m.add_argument("--no-peers", action="store_true", help="PyTorch only")
    m.add_argument("--ort-spinning", action="store_true",
                   help="leave ONNX Runtime's thread spinning on (its default)")
    m.add_argument("--isa", default="", help="ENGINE_ISA for our kernels (default: best)")
    m.add_argument("--json", default="")
    m.add_argument("--settle", type=float, default=None,
                   help="seconds slept before each timing (default 0)")
    lay = sub.add_parser("layers", help="per-layer time and GFLOP/s of our engine")
    lay.add_argument("models", nargs="+", help="zoo names, model files or module:callable")
    lay.add_argument("--threads", default="1")
    lay.add_argument("--batch", type=int, default=1)
    lay.add_argument("--input-shape", default="")
    lay.add_argument("--repeat", type=int, default=5)
    lay.add_argument("--convs-only", action="store_true")
    lay.add_argument("--no-torch", action="store_true", default=True)
    c = sub.add_parser("contention", help="our latency with other processes busy")
    c.add_argument("models", nargs="+", help="zoo names, model files or module:callable")
    c.add_argument("--threads", default="1,2")
    c.add_argument("--busy", type=int, default=1, help="busy-loop processes (default 1)")
    c.add_argument("--batch", type=int, default=1)
    c.add_argument("--input-shape", default="")
    c.add_argument("--rounds", type=int, default=41)
    c.add_argument("--no-torch", action="store_true", default=True)
    tp = sub.add_parser("throughput", help="folder inference: images per second")
    tp.add_argument("models", nargs="+", help="zoo names, model files, or default")
    tp.add_argument("--images", type=int, default=2000)
    tp.add_argument("--batch", type=int, default=16)
    tp.add_argument("--threads", default="1,2")
    o = sub.add_parser("overhead", help="per-layer cost of the executor")
    o.add_argument("--layers", type=int, default=302)
    o.add_argument("--rounds", type=int, default=15)
    o.add_argument("--threads", default="1")
    opts = p.parse_args(argv)
    # what the per-thread-count workers get: the same options minus threads / json
    pt, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--threads", "--json", "--coretype") or (a == "--isa" and argv[0] == "model"):
            skip = True
            continue
        if a.startswith(("--threads=", "--json=", "--coretype=")) or \
                (a.startswith("--isa=") and argv[0] == "model"):
            continue
        pt.append(a)
    opts.passthrough = pt
    opts.threads = [int(t) for t in str(opts.threads).split(",") if t]
    if opts.cmd in ("layers", "overhead", "contention", "throughput"):  # in-process
        if ROOT not in sys.path:
            sys.path.insert(0, ROOT)
        {"layers": layers_main, "overhead": overhead_main,
         "contention": contention_main, "throughput": throughput_main}[opts.cmd](opts)
        return
    if worker is not None:
        res = (gemm_worker if opts.cmd == "gemm" else model_worker)(opts, worker)
        print("@@RESULT " + json.dumps(res))
        return
    (gemm_main if opts.cmd == "gemm" else model_main)(opts)


if __name__ == "__main__":
    main()
