"""The ``engine`` command line: run, summary, bench, convert, ops, config.

User mistakes (missing files, bad models, wrong inputs) print one clean line and exit 2;
only genuine bugs show a traceback.  MODEL arguments are model files, or names of the
model zoo (``engine summary resnet50``).  Only ``convert`` needs PyTorch.
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


def _zoo_names():
    """Names of the model zoo, or [] when it is not available."""
    try:
        from . import zoo
        return list(zoo.names())
    except Exception:            # no zoo package (or a broken one): files only
        return []


def _load_model(path):
    """A model file, or a zoo architecture (random weights) when ``path`` names one."""
    from .format import load
    if path and not os.path.exists(path) and path in _zoo_names():
        from . import zoo
        return zoo.get(path)
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
    """An image file as the model's input, preprocessed per ``metadata["preprocessing"]``:

    ``input_size`` [H, W] (the network input; default: the model's input shape),
    ``channels`` "rgb" | "bgr" | "grayscale" (default from the input's channel count),
    ``pad`` (pixels of zero padding around the resized image, included in input_size),
    ``scale`` (default 1/255), ``mean`` and ``std`` (per channel, after scaling).
    """
    try:
        from PIL import Image
    except ImportError:
        raise EngineError("reading images needs Pillow (pip install pillow); "
                          "or pass a .npy array") from None
    if len(shape) != 4:
        raise EngineError(f"image inputs need a model with an (N, C, H, W) input, this one "
                          f"takes {tuple(shape)}")
    channels = shape[1]
    size = prep.get("input_size") or list(shape[2:])
    h, w = int(size[0]), int(size[1])
    pad = int(prep.get("pad", 0) or 0)
    order = str(prep.get("channels", prep.get("channel_order",
                                              "grayscale" if channels == 1 else "rgb"))).lower()
    try:
        img = Image.open(path)
        img = img.convert("L" if channels == 1 else "RGB")
        img = img.resize((w - 2 * pad, h - 2 * pad), Image.BILINEAR)
    except (OSError, ValueError) as e:
        raise EngineError(f"cannot read image {path!r}: {e}") from None
    a = np.asarray(img, dtype=np.float32) * np.float32(prep.get("scale", 1 / 255))
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if order == "bgr" and a.shape[0] == 3:
        a = a[::-1]
    if pad:
        a = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
    mean = np.asarray(prep.get("mean", [0.0] * channels), np.float32).reshape(-1, 1, 1)
    std = np.asarray(prep.get("std", [1.0] * channels), np.float32).reshape(-1, 1, 1)
    return ((a - mean) / std).astype(np.float32)


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


def _evaluate(model, model_path, args):
    """Accuracy on the bundled held-out digits, compared with PyTorch's at training."""
    from .data import load_heldout, preprocess_digits
    from .runtime import Session
    if tuple(model.inputs[0].shape[1:]) != (1, 32, 32):
        raise EngineError(f"--eval uses the bundled held-out MNIST digits (1x32x32 inputs); "
                          f"this model takes {tuple(model.inputs[0].shape)}")
    prep = model.metadata.get("preprocessing", {})
    images, labels = load_heldout()
    x = preprocess_digits(images, mean=prep.get("mean", [0.1307])[0],
                          std=prep.get("std", [0.3081])[0], pad=int(prep.get("pad", 2)))
    sess = Session(model, threads=args.threads, backend=args.backend)
    t0 = time.perf_counter()
    pred = np.concatenate([sess.run(x[i:i + 250])[0].argmax(1) for i in range(0, len(x), 250)])
    dt = time.perf_counter() - t0
    correct = int((pred == labels).sum())
    acc = correct / len(labels)
    desc = model.metadata.get("description")
    print(f"model: {model_path}" + (f"  ({desc})" if desc else ""))
    print(f"held-out accuracy: {acc:.4f} ({correct}/{len(labels)} digits, {dt * 1e3:.0f} ms, "
          f"backend {args.backend})")
    ref = model.metadata.get("heldout_accuracy_torch")
    if ref is None:
        return 0
    same = round(acc * len(labels)) == round(float(ref) * len(labels))
    print(f"PyTorch's accuracy on the same digits (at training): {float(ref):.4f} -> "
          f"{'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


# -- commands -------------------------------------------------------------------------------
def cmd_run(args):
    from .runtime import Session
    model_path = args.model or _data_path(DEFAULT_MODEL)
    model = _load_model(model_path)
    if args.eval:
        return _evaluate(model, model_path, args)
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
        rows = sess.plan(args.batch, timed=True, repeat=args.repeat)
        total = sum(r.seconds for r in rows)
        print(f"\nexecution plan (after optimisation; {sess.threads} thread"
              f"{'s' if sess.threads > 1 else ''}, batch {args.batch}, time = min of "
              f"{args.repeat} runs, {total * 1e3:.3f} ms in all):")
        print(f"  {'layer':<28} {'op':<22} {'kernel':<16} {'layout':<6} {'output':<20} "
              f"{'time':>9} {'share':>6} {'GFLOP/s':>8}")
        for r in rows:
            gf = f"{r.gflops:8.1f}" if r.gflops else f"{'':>8}"
            mark = "" if r.executor == "native" else "  (python)"
            print(f"  {r.name[:28]:<28} {r.op[:22]:<22} {r.variant[:16]:<16} {r.layout:<6} "
                  f"{str(r.shape)[:20]:<20} {r.seconds * 1e3:7.3f}ms {r.share * 100:5.1f}% "
                  f"{gf}{mark}")
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
    if args.vs:
        _bench_vs_peers(model, sess, x, args)
    return 0


def _bench_vs_peers(model, sess, x, args):
    """Our median latency next to each peer's: same input, same threads, runs interleaved."""
    from . import peers
    wanted = [p.strip() for p in args.vs.split(",") if p.strip()]
    if wanted == ["all"]:
        wanted = peers.available()
    runners = {"engine": lambda a: sess.run(a)[0]}
    ours = runners["engine"](x)
    scale = max(1.0, float(np.abs(ours).max()))
    notes = {}
    for p in wanted:
        try:
            fn = peers.make_runner(p, model, sess.threads)
            notes[p] = f"max rel diff {np.abs(fn(x) - ours).max() / scale:.1e}"
            runners[p] = fn
        except EngineError as e:
            print(f"  {p}: skipped ({e})")
    med = peers.compare_latency(runners, x, repeat=args.repeat, warmup=args.warmup)
    print(f"\nside by side ({sess.threads} thread(s), {args.repeat} interleaved runs, median):")
    print(f"  {'runtime':<12} {'ms':>9}  {'engine / runtime':>16}  output vs engine")
    for k, t in med.items():
        ratio = med["engine"] / t
        print(f"  {k:<12} {t * 1e3:9.3f}  {ratio:16.2f}  {notes.get(k, '')}")


def _floats(text, what):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise EngineError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _ints(text, what):
    """'1,3,224,224' or '1x3x224x224' -> [1, 3, 224, 224]."""
    import re
    try:
        vals = [int(v) for v in re.split(r"[,x]", text.strip())]
    except ValueError:
        vals = []
    if not vals or any(v < 1 for v in vals):
        raise EngineError(f"{what} must be comma-separated positive ints, got {text!r}")
    return vals


def _conversion_metadata(args, model):
    """Labels and preprocessing from the command line, merged into the model's metadata."""
    meta = model.metadata
    shape = model.inputs[0].shape
    if args.labels:
        try:
            with open(args.labels, encoding="utf-8") as f:
                labels = [line.strip() for line in f if line.strip()]
        except OSError as e:
            raise EngineError(f"cannot read labels file {args.labels!r}: {e.strerror}") from None
        out = model.values.get(model.outputs[0])
        n = out.shape[-1] if out is not None and out.shape else None
        if n is not None and len(labels) != n:
            raise EngineError(f"{args.labels} has {len(labels)} labels but the model outputs "
                              f"{n} classes")
        meta["labels"] = labels
    prep = dict(meta.get("preprocessing") or {})
    if args.input_size:
        prep["input_size"] = _ints(args.input_size, "--input-size")
    elif len(shape) == 4 and "input_size" not in prep and (args.mean or args.std or
                                                            args.channel_order):
        prep["input_size"] = [int(d) for d in shape[2:]]
    if args.channel_order:
        prep["channels"] = args.channel_order
    channels = shape[1] if len(shape) > 1 else None
    for key in ("mean", "std"):
        text = getattr(args, key)
        if text:
            vals = _floats(text, f"--{key}")
            if channels is not None and len(vals) not in (1, channels):
                raise EngineError(f"--{key} has {len(vals)} values; the model input has "
                                  f"{channels} channels")
            prep[key] = vals * channels if len(vals) == 1 and channels else vals
    if prep:
        prep.setdefault("scale", 1 / 255)
        meta["preprocessing"] = prep
    if args.description:
        meta["description"] = args.description
    meta["input_shape"] = list(shape)


def cmd_convert(args):
    from .errors import ConversionError
    from .format import save
    t_start = time.perf_counter()

    def say(msg):
        if not args.quiet:
            print(msg, flush=True)
    if not os.path.exists(args.source):
        raise EngineError(f"{args.source!r} does not exist")
    try:
        from . import convert
        convert._need_torch()
    except ConversionError:
        raise
    shape = _ints(args.input_shape, "--input-shape") if args.input_shape else None
    size = _ints(args.input_size, "--input-size") if args.input_size and args.arch else None
    model, ref, note = convert._convert(args.source, arch=args.arch, module=args.module,
                                        input_shape=shape, num_classes=args.num_classes,
                                        input_size=size, progress=say)
    say(f"mapped: {len(model.nodes)} nodes, {model.num_parameters():,} parameters")
    _conversion_metadata(args, model)
    verified = None
    if ref is not None and not args.no_verify:
        vshape = tuple(1 if d is None else d for d in model.inputs[0].shape)
        if shape is not None and model.inputs[0].shape[0] is None:
            vshape = (shape[0],) + vshape[1:]
        say(f"verifying against PyTorch on a random input {vshape}")
        x = np.random.default_rng(0).standard_normal(vshape).astype(np.float32)
        abs_d, rel = convert.verify(model, ref, x, threads=args.threads)
        verified = (abs_d, rel, vshape)
        model.metadata["verification"] = {"max_abs_diff": abs_d, "max_rel_diff": rel,
                                           "input_shape": list(vshape)}
    save(model, args.output)
    mb = os.path.getsize(args.output) / 2**20
    say(f"wrote {args.output} ({mb:.1f} MiB) in {time.perf_counter() - t_start:.1f} s")
    if verified is None:
        why = "--no-verify" if args.no_verify else (note or "no PyTorch model to compare with")
        print(f"verification: skipped ({why})")
        return 0
    abs_d, rel, vshape = verified
    ok = rel <= 1e-3
    print(f"verification: max abs diff {abs_d:.3g}, max rel diff {rel:.3g} (engine cpu vs "
          f"PyTorch, random input {'x'.join(map(str, vshape))})"
          + ("" if ok else " -- FAILED: larger than 1e-3, please report"))
    return 0 if ok else 1


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
    r.add_argument("model", nargs="?", help="model file (.safetensors) or zoo name")
    r.add_argument("inputs", nargs="*", help="input .npy arrays or images")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--top", type=int, default=3, help="classes to show per input")
    r.add_argument("--backend", default="cpu", choices=["cpu", "reference", "cuda"])
    r.add_argument("--repeat", type=int, default=20, help="timed runs for the latency")
    r.add_argument("--eval", action="store_true",
                   help="accuracy on the bundled held-out digits (the bundled LeNet-5)")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory")
    s.add_argument("model", help="model file or zoo name")
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--plan", action="store_true",
                   help="also show per layer the kernel chosen, its layout and time share")
    s.add_argument("--repeat", type=int, default=3,
                   help="--plan timing: runs per layer, the minimum is shown (default 3)")
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(fn=cmd_summary)

    b = sub.add_parser("bench", help="latency (min/median/p90) and memory")
    b.add_argument("model", help="model file or zoo name")
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--threads", type=int, default=None)
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--repeat", type=int, default=50)
    b.add_argument("--backend", default="cpu", choices=["cpu", "reference", "cuda"])
    b.add_argument("--vs", default="", metavar="PEERS",
                   help="also time peers on the same input and threads: a comma list of "
                        "torch, onnxruntime, openvino, or 'all' installed")
    b.set_defaults(fn=cmd_bench)

    v = sub.add_parser(
        "convert", help="convert a PyTorch checkpoint, module or TorchScript file (needs torch)",
        description="Convert a PyTorch model. Checkpoint + zoo architecture: "
                    "engine convert weights.pth --arch resnet50 -o resnet50.safetensors; "
                    "checkpoint + your class: engine convert weights.pth --module "
                    "pkg.models:Net --input-shape 1,3,224,224 -o net.safetensors; "
                    "TorchScript: engine convert model.pt --input-shape 1,3,224,224 "
                    "-o m.safetensors")
    v.add_argument("source", help="checkpoint (.pth/.pt state dict) or TorchScript archive")
    v.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    v.add_argument("--arch", help="zoo architecture the state dict belongs to (engine.zoo)")
    v.add_argument("--module", help="'package.module:Class' built with no arguments")
    v.add_argument("--input-shape", help="example input shape N,C,H,W (--module, TorchScript)")
    v.add_argument("--num-classes", type=int, help="classifier size (--arch)")
    v.add_argument("--labels", help="text file with one class label per line")
    v.add_argument("--mean",
                   help="per-channel mean after scaling to [0, 1], e.g. 0.485,0.456,0.406")
    v.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")
    v.add_argument("--input-size", help="H,W images are resized to")
    v.add_argument("--channel-order", choices=["rgb", "bgr", "grayscale"],
                   help="channel order the model expects")
    v.add_argument("--description", help="free text stored in the metadata")
    v.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    v.add_argument("--threads", type=int, default=None)
    v.add_argument("--quiet", action="store_true", help="only the final verification line")
    v.set_defaults(fn=cmd_convert)

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
