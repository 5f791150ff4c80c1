"""The ``engine`` command line: run, summary, bench, ops, config.

User mistakes (missing files, bad models, wrong inputs) print one clean line and exit 2;
only genuine bugs show a traceback.
"""

import argparse
import os
import sys
import time
from importlib import resources

import numpy as np

from . import __version__
from .errors import EngineError

DEFAULT_MODEL = "default.safetensors"
DEFAULT_SAMPLES = "samples.npy"


def _data_path(name):
    return str(resources.files("engine") / "data" / name)


def _load_model(path):
    from .format import load
    return load(path)


def _read_inputs(paths, model):
    """Arrays from .npy files, or images (needs Pillow) preprocessed per the model metadata."""
    spec = model.inputs[0]
    arrays = []
    for p in paths:
        if not os.path.exists(p):
            raise EngineError(f"input file {p!r} does not exist")
        if p.endswith(".npy"):
            a = np.load(p, allow_pickle=False)
        else:
            a = _read_image(p, spec.shape, model.metadata.get("preprocessing", {}))
        a = np.asarray(a, dtype=np.float32)
        if a.ndim == len(spec.shape) - 1:
            a = a[None]
        arrays.append(a)
    return np.concatenate(arrays) if arrays else None


def _read_image(path, shape, prep):
    try:
        from PIL import Image
    except ImportError:
        raise EngineError("reading images needs Pillow (pip install pillow); "
                          "or pass a .npy array") from None
    try:
        img = Image.open(path)
        channels, h, w = shape[1], shape[2], shape[3]
        img = img.convert("L" if channels == 1 else "RGB").resize((w, h), Image.BILINEAR)
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot read image {path!r}: {e}") from None
    a = np.asarray(img, dtype=np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    mean = np.asarray(prep.get("mean", [0.0] * channels), np.float32).reshape(-1, 1, 1)
    std = np.asarray(prep.get("std", [1.0] * channels), np.float32).reshape(-1, 1, 1)
    return (a - mean) / std


def _probabilities(logits, already):
    if already:
        return logits
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _time_runs(sess, x, warmup, repeat):
    for _ in range(warmup):
        sess.run(x)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(x)
        times.append(time.perf_counter() - t0)
    return np.array(times)


# -- commands -------------------------------------------------------------------------------
def cmd_run(args):
    from .runtime import Session
    model_path = args.model or _data_path(DEFAULT_MODEL)
    model = _load_model(model_path)
    if args.inputs:
        x = _read_inputs(args.inputs, model)
        names = args.inputs if len(args.inputs) == len(x) else [f"#{i}" for i in range(len(x))]
    elif args.model is None:
        x = np.load(_data_path(DEFAULT_SAMPLES), allow_pickle=False)
        names = [f"sample {i}" for i in range(len(x))]
    else:
        shape = tuple(1 if d is None else d for d in model.inputs[0].shape)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        names = ["random input"]
    sess = Session(model, threads=args.threads, backend=args.backend)
    out = sess.run(x)[0]
    desc = model.metadata.get("description")
    print(f"model: {model_path}" + (f"  ({desc})" if desc else ""))
    if out.ndim == 2:
        labels = model.metadata.get("labels")
        probs = _probabilities(out, model.metadata.get("output") == "probabilities")
        truth = model.metadata.get("sample_labels") if args.model is None and not args.inputs else None
        for i, (name, p) in enumerate(zip(names, probs)):
            top = np.argsort(-p, kind="stable")[:args.top]
            preds = ", ".join(f"{labels[k] if labels else k} ({p[k]:.3f})" for k in top)
            tail = f"   [true: {truth[i]}]" if truth else ""
            print(f"{name}: {preds}{tail}")
    else:
        print(f"output {sess.output_names[0]}: shape {out.shape}, mean {out.mean():.5g}, "
              f"min {out.min():.5g}, max {out.max():.5g}")
    t = _time_runs(sess, x, warmup=2, repeat=args.repeat)
    print(f"latency: median {np.median(t) * 1e3:.3f} ms for batch {len(x)} "
          f"({sess.threads} thread{'s' if sess.threads > 1 else ''}, backend {args.backend})")
    return 0


def cmd_summary(args):
    from .runtime import Session
    from .summary import format_summary
    model = _load_model(args.model)
    memory = Session(model, threads=1, backend="reference").memory_report(args.batch)
    print(format_summary(model, args.batch, memory))
    if args.plan:
        sess = Session(model, threads=args.threads)
        print("\nexecution plan (after optimisation):")
        for name, op, variant, shape in sess.plan(args.batch):
            print(f"  {name:<28} {op:<18} {variant:<16} {shape}")
    return 0


def cmd_bench(args):
    import resource
    from .runtime import Session
    model = _load_model(args.model)
    shape = tuple(args.batch if d is None else d for d in model.inputs[0].shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sess = Session(model, threads=args.threads, backend=args.backend)
    t0 = time.perf_counter()
    mem = sess.memory_report(args.batch)
    prep = time.perf_counter() - t0
    t = _time_runs(sess, x, warmup=args.warmup, repeat=args.repeat) * 1e3
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: {args.model}  input {shape}  threads {sess.threads}  backend {args.backend}")
    print(f"prepare: {prep * 1e3:.1f} ms   runs: {args.repeat} after {args.warmup} warm-up")
    print(f"latency ms: min {t.min():.3f}  median {np.median(t):.3f}  "
          f"p90 {np.percentile(t, 90):.3f}")
    print(f"memory: {mem}; process peak RSS {rss:.1f} MiB")
    return 0


def cmd_ops(args):
    from .backends import kernels_for
    from .ops import OPS
    cpu = kernels_for("cpu")
    print(f"{'op':<22} {'cpu kernel':<34} note")
    for name in sorted(OPS):
        specs = cpu.get(name, [])
        kinds = ", ".join(s.variant for s in specs) or "-"
        note = "; ".join(sorted({s.note for s in specs if s.note}))
        print(f"{name:<22} {kinds:<34} {note}")
    return 0


def cmd_config(args):
    from .config import show_config
    show_config()
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="engine", description="CPU inference engine for CNNs.")
    p.add_argument("--version", action="store_true", help="print version and configuration")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run a model (the bundled demo if none is given)")
    r.add_argument("model", nargs="?", help="model file (.safetensors)")
    r.add_argument("inputs", nargs="*", help="input .npy arrays or images")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--top", type=int, default=3, help="classes to show per input")
    r.add_argument("--backend", default="cpu", choices=["cpu", "reference"])
    r.add_argument("--repeat", type=int, default=20, help="timed runs for the latency")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory")
    s.add_argument("model")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--plan", action="store_true", help="also show the kernel chosen per layer")
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(fn=cmd_summary)

    b = sub.add_parser("bench", help="latency (min/median/p90) and memory")
    b.add_argument("model")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--repeat", type=int, default=50)
    b.add_argument("--backend", default="cpu", choices=["cpu", "reference"])
    b.set_defaults(fn=cmd_bench)

    o = sub.add_parser("ops", help="list ops and their CPU kernels")
    o.set_defaults(fn=cmd_ops)
    c = sub.add_parser("config", help="show build and runtime configuration")
    c.set_defaults(fn=cmd_config)
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"engine {__version__}")
        from .config import show_config
        show_config()
        return 0
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    for opt in ("threads", "batch", "repeat", "top"):
        v = getattr(args, opt, None)
        if v is not None and v < 1:
            print(f"engine: error: --{opt} must be at least 1", file=sys.stderr)
            return 2
    try:
        return args.fn(args)
    except (EngineError, FileNotFoundError) as e:
        print(f"engine: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
