"""The ``engine`` command line: run, summary, bench, convert, ops, config.

User mistakes and hostile files (missing or unreadable files, directories, pipes, bad
models, checkpoints or images, wrong inputs, options out of range) print exactly one line,
``engine: error: ...`` saying what was expected, and exit with status 2; Ctrl-C exits
with 130.  Only genuine bugs show a traceback.  Every file is size-checked before it is
read in full: .npy headers, image dimensions (before decoding), labels files, checkpoints
(engine.convert.checkpoint), and every buffer an option asks for (--batch) is checked
against the engine's byte cap (engine.get_limits()).

MODEL arguments are model files, or names of the model zoo (``engine summary resnet50``).
Only ``convert`` needs PyTorch.
"""

import argparse
import os
import re
import sys
import time
from importlib import resources

import numpy as np

from . import __version__
from . import limits
from .errors import ArgumentError, EngineError, InputError
from .inputs import (MAX_IMAGE_SIDE, input_shape, is_number, parse_preprocessing,
                     probabilities, read_inputs, read_one, shape_text, user_file)
from .limits import MAX_DIM, MAX_RANK, check_shape

DEFAULT_MODEL = "default.safetensors"
DEFAULT_SAMPLES = "samples.npy"

MAX_THREADS = getattr(limits, "MAX_THREADS", 1024)
MAX_REPEAT = 100_000            # --repeat / --warmup: timed runs
MAX_CLASSES = 1_000_000         # --num-classes, --top, labels per file
MAX_LABEL_CHARS = 1000          # characters of one label
MAX_LABELS_BYTES = 64 * 2**20   # size of a --labels file
MAX_VALUES = 4096               # --mean / --std values
MAX_TEXT = 1_000_000            # characters of --description
MAX_MESSAGE = 4000              # characters of the error line

# option -> (smallest, largest) accepted value
RANGES = {
    "threads": (1, MAX_THREADS),
    "batch": (1, MAX_DIM),
    "repeat": (1, MAX_REPEAT),
    "warmup": (0, MAX_REPEAT),
    "top": (1, MAX_CLASSES),
    "num_classes": (1, MAX_CLASSES),
}


def _data_path(name):
    return str(resources.files("engine") / "data" / name)


def _zoo_names():
    """Names of the model zoo, or [] when it is not installed."""
    try:
        from . import zoo
    except ImportError:
        return []
    return list(zoo.names())


def _load_model(path):
    """A model file, or a zoo architecture (random weights) when ``path`` names one."""
    from .format import load
    if not os.path.lexists(path):
        if path in _zoo_names():
            from . import zoo
            return zoo.get(path)
        hint = ("" if os.sep in path or "." in path else
                "; nor is it a model zoo name (engine.zoo.names(): resnet18, lenet5, ...)")
        raise EngineError(f"cannot read model file {path!r}: no such file{hint}")
    user_file(path, "model file")
    return load(path)


def _time_runs(sess, x, warmup, repeat):
    for _ in range(warmup):
        sess.run(x)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(x)
        times.append(time.perf_counter() - t0)
    return np.array(times)


def _random_input(shape, what):
    """A standard normal float32 array, its size checked against the byte cap first."""
    check_shape(shape, what)
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def _evaluate(model, model_path, args):
    """Accuracy on the bundled held-out digits, compared with PyTorch's at training."""
    from .data import load_heldout, preprocess_digits
    shape = input_shape(model)
    if shape[1:] != (1, 32, 32):
        raise InputError(f"--eval uses the bundled held-out MNIST digits (1x32x32 inputs); "
                         f"this model takes {shape_text(shape)}")
    prep = model.metadata.get("preprocessing") or {}
    _, _, pad, _, _, mean, std, _ = parse_preprocessing(
        {"mean": [0.1307], "std": [0.3081], "pad": 2, **prep}, shape)
    images, labels = load_heldout()
    x = preprocess_digits(images, mean=float(mean.flat[0]), std=float(std.flat[0]), pad=pad)
    sess = _session(model, args)
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
    if not is_number(ref):
        return 0
    same = round(acc * len(labels)) == round(float(ref) * len(labels))
    print(f"PyTorch's accuracy on the same digits (at training): {float(ref):.4f} -> "
          f"{'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


# -- commands -------------------------------------------------------------------------------
def cmd_run(args):
    if args.ray is not None:
        if args.eval or not args.inputs:
            raise ArgumentError("--ray runs a folder, glob or list of inputs; name them first "
                                "(engine run MODEL DIR --ray [ADDRESS]), without --eval")
        if args.backend != "cpu" or args.tune:
            raise ArgumentError("--ray runs the cpu backend without --tune")
    if args.eval and args.inputs:
        raise EngineError("--eval uses the bundled held-out digits; it takes no input files")
    model_path = args.model or _data_path(DEFAULT_MODEL)
    model = _load_model(model_path)
    if args.eval:
        return _evaluate(model, model_path, args)
    from . import batch as many
    if args.inputs and (many.is_many(args.inputs) or args.output or args.raw
                        or args.ray is not None):
        return _run_many(model, model_path, args)
    if args.inputs:
        x = read_inputs(args.inputs, model, args.allow_nonfinite)
        names = args.inputs if len(args.inputs) == len(x) else [f"#{i}" for i in range(len(x))]
    elif args.model is None:
        x = np.load(_data_path(DEFAULT_SAMPLES), allow_pickle=False)
        names = [f"sample {i}" for i in range(len(x))]
    else:
        shape = tuple(1 if d is None else d for d in input_shape(model))
        x = _random_input(shape, "the model's input")
        names = ["random input"]
    sess = _session(model, args)
    out = sess.run(x)[0]
    desc = model.metadata.get("description")
    print(f"model: {model_path}" + (f"  ({desc})" if desc else ""))
    if args.model is not None and not os.path.lexists(args.model):     # a zoo name
        print(f"note: {args.model} from the model zoo has random weights, so its classes "
              f"mean nothing; for trained weights: engine convert weights.pth --arch "
              f"{args.model} -o model.safetensors")
    if out.ndim == 2:
        labels = model.metadata.get("labels")
        labels = labels if isinstance(labels, list) else []
        probs = probabilities(out, model.metadata.get("output") == "probabilities")
        truth = model.metadata.get("sample_labels") if args.model is None and not args.inputs \
            else None
        truth = truth if isinstance(truth, list) else []
        for i, (name, p) in enumerate(zip(names, probs)):
            top = np.argsort(-p, kind="stable")[:args.top]
            preds = ", ".join(f"{labels[k] if k < len(labels) else k} ({p[k]:.3f})"
                              for k in top)
            tail = f"   [true: {truth[i]}]" if i < len(truth) else ""
            print(f"{name}: {preds}{tail}")
    else:
        print(f"output {sess.output_names[0]}: shape {out.shape}, mean {out.mean():.5g}, "
              f"min {out.min():.5g}, max {out.max():.5g}")
    t = _time_runs(sess, x, warmup=2, repeat=args.repeat)
    print(f"latency: median {np.median(t) * 1e3:.3f} ms for batch {len(x)} "
          f"({sess.threads} thread{'s' if sess.threads > 1 else ''}, backend {args.backend})")
    return 0


def _run_many(model, model_path, args):
    """Folder / glob / list inference: rows to --output (or printed), --raw outputs."""
    from . import batch as many
    files = many.collect(args.inputs)
    if args.output:
        _check_output(args.output, model_path if os.path.exists(model_path) else args.output)
    if args.raw:
        if not args.raw.lower().endswith(".npy"):
            raise EngineError(f"--raw {args.raw!r}: name a .npy file")
        _check_output(args.raw, model_path if os.path.exists(model_path) else args.raw)
    want = input_shape(model)
    check_shape((args.batch,) + tuple(1 if d is None else d for d in want[1:]),
                "a --batch of inputs")

    if not os.path.lexists(model_path):     # a zoo name
        print(f"note: {model_path} from the model zoo has random weights, so its classes mean "
              f"nothing", file=sys.stderr)
    if args.ray is not None:
        from . import ray as on_ray
        s = on_ray.run_folder(model, files, address=args.ray or None, batch=args.batch,
                              model_path=model_path if os.path.isfile(model_path) else None,
                              top=args.top, output=args.output, raw=args.raw,
                              quiet=args.quiet, threads=args.threads,
                              allow_nonfinite=args.allow_nonfinite)
        how = f"on Ray: {s['actors']} actor{'s' if s['actors'] > 1 else ''} x " \
              f"{s['threads']} thread{'s' if s['threads'] > 1 else ''}"
    else:
        sess = _session(model, args)
        s = many.run_many(sess, model, files,
                          lambda path: read_one(path, model, args.allow_nonfinite),
                          batch=args.batch, top=args.top, output=args.output, raw=args.raw,
                          quiet=args.quiet)
        how = f"{sess.threads} thread{'s' if sess.threads > 1 else ''}"
    rate = s["done"] / s["seconds"] if s["seconds"] > 0 else float("inf")
    where = f" -> {args.output}" if args.output else ""
    raw = f", raw outputs -> {args.raw}" if args.raw else ""
    print(f"{s['done']} of {s['inputs']} inputs in {s['seconds']:.2f} s ({rate:.1f}/s, batch "
          f"{args.batch}, {how}){where}{raw}; {len(s['skipped'])} skipped (unreadable)",
          file=sys.stderr)
    return 0 if not s["skipped"] else 3


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


def _peers_wanted(text):
    """The --vs list, each name checked (a typo is an error, a peer not installed is
    skipped with a note)."""
    from . import peers
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    if wanted == ["all"]:
        return peers.available()
    unknown = [p for p in wanted if p not in peers.PEER_MODULES]
    if unknown or not wanted:
        raise EngineError(f"--vs takes a comma list of {', '.join(sorted(peers.PEER_MODULES))} "
                          f"or 'all', got {text!r}")
    return wanted


TUNE_HELP = ("time every candidate kernel of each layer once and keep the fastest (cpu); "
             "the choices are cached in MODEL.tune.json next to a model file")


def _session(model, args):
    """The session of run / bench: --threads, --backend and --tune (the tuning cache next
    to a model file whose folder is writable; else kept in memory)."""
    from .runtime import Session
    cache = None
    if args.tune:
        if args.backend != "cpu":
            raise ArgumentError(f"--tune applies to the cpu backend, not {args.backend!r}")
        path = getattr(args, "model", None)
        if path and os.path.isfile(path) and \
                os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            cache = path + ".tune.json"
    return Session(model, threads=args.threads, backend=args.backend, tune=args.tune,
                   tune_cache=cache, allow_nonfinite=getattr(args, "allow_nonfinite", False))


def cmd_bench(args):
    import resource
    wanted = _peers_wanted(args.vs) if args.vs else None
    model = _load_model(args.model)
    shape = tuple(args.batch if d is None else d for d in input_shape(model))
    check_shape(shape, f"the input at --batch {args.batch}")
    sess = _session(model, args)
    t0 = time.perf_counter()
    mem = sess.memory_report(args.batch)
    prep = time.perf_counter() - t0
    x = _random_input(shape, f"the input at --batch {args.batch}")
    t = _time_runs(sess, x, warmup=args.warmup, repeat=args.repeat) * 1e3
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: {args.model}  input {shape}  threads {sess.threads}  backend {args.backend}")
    print(f"prepare: {prep * 1e3:.1f} ms   runs: {args.repeat} after {args.warmup} warm-up")
    print(f"latency ms: min {t.min():.3f}  median {np.median(t):.3f}  "
          f"p90 {np.percentile(t, 90):.3f}")
    print(f"memory: {mem}; process peak RSS {rss:.1f} MiB")
    if wanted is not None:
        _bench_vs_peers(model, sess, x, wanted, args)
    return 0


def _bench_vs_peers(model, sess, x, wanted, args):
    """Our median latency next to each peer's: same input, same threads, runs interleaved."""
    from . import peers
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


# -- convert ----------------------------------------------------------------------------------
def _floats(text, what, positive=False):
    """'0.5,0.4,0.3' -> [0.5, 0.4, 0.3]: 1 to MAX_VALUES finite numbers (> 0 with
    ``positive``)."""
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = None
    largest, tiny = (float(v) for v in (np.finfo(np.float32).max, np.finfo(np.float32).tiny))
    if not vals or len(vals) > MAX_VALUES or not all(abs(v) <= largest for v in vals):
        raise EngineError(f"{what} must be 1 to {MAX_VALUES} comma-separated finite numbers "
                          f"(float32), got {text!r}")
    if positive and any(v < tiny for v in vals):
        raise EngineError(f"{what} must be positive (inputs are divided by it; at least "
                          f"{tiny:.3g}), got {text!r}")
    return vals


def _ints(text, what, counts=None, largest=MAX_DIM):
    """'1,3,224,224' or '1x3x224x224' -> [1, 3, 224, 224]: ints from 1 to ``largest``,
    as many as one of ``counts`` (default: 1 to MAX_RANK)."""
    counts = counts or range(1, MAX_RANK + 1)
    try:
        vals = [int(v) for v in re.split(r"[,x]", text.strip())]
    except ValueError:
        vals = []
    if len(vals) not in counts or any(not 1 <= v <= largest for v in vals):
        n = "/".join(map(str, counts)) if len(counts) < 4 else f"{min(counts)} to {max(counts)}"
        raise EngineError(f"{what} must be {n} comma-separated ints from 1 to {largest}, "
                          f"got {text!r}")
    return vals


def _read_labels(path):
    """Class labels, one per line, from a UTF-8 text file of bounded size."""
    size = user_file(path, "labels file")
    if size > MAX_LABELS_BYTES:
        raise EngineError(f"labels file {path!r} has {size} bytes, more than the "
                          f"{MAX_LABELS_BYTES} a labels file may have")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LABELS_BYTES + 1)
    except OSError as e:
        raise EngineError(f"cannot read labels file {path!r}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EngineError(f"labels file {path!r} is not UTF-8 text (invalid byte at offset "
                          f"{e.start}); expected one class label per line") from None
    if re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text):
        raise EngineError(f"labels file {path!r} holds control characters (a binary file?); "
                          f"expected one class label per line")
    labels = [line.strip() for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    if not labels:
        raise EngineError(f"labels file {path!r} holds no labels; expected one class label "
                          f"per line")
    if len(labels) > MAX_CLASSES:
        raise EngineError(f"labels file {path!r} has {len(labels)} labels, more than "
                          f"{MAX_CLASSES}")
    long = next((i for i, s in enumerate(labels) if len(s) > MAX_LABEL_CHARS), None)
    if long is not None:
        raise EngineError(f"labels file {path!r}: label {long + 1} has {len(labels[long])} "
                          f"characters, more than {MAX_LABEL_CHARS}")
    return labels


def _check_output(path, source):
    """-o must name a file that can be written, and not the source."""
    if os.path.isdir(path):
        raise EngineError(f"-o {path!r} is a directory; give the model file to write, e.g. "
                          f"{os.path.join(path, 'model.safetensors')!r}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise EngineError(f"-o {path!r} exists and is not a regular file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise EngineError(f"-o {path!r}: directory {parent!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise EngineError(f"-o {path!r}: directory {parent!r} is not writable")
    if os.path.exists(path) and os.path.samefile(path, source):
        raise EngineError(f"-o {path!r} is the source file; it would be overwritten")


def _convert_options(args):
    """Every option of ``convert`` parsed and checked before anything is loaded."""
    opts = {"shape": None, "size": None, "labels": None, "mean": None, "std": None,
            "shorter": None}
    if args.input_shape:
        opts["shape"] = _ints(args.input_shape, "--input-shape")
        check_shape(tuple(opts["shape"]), "--input-shape")
    if args.input_size:
        opts["size"] = _ints(args.input_size, "--input-size", counts=(1, 2, 3),
                             largest=MAX_IMAGE_SIDE)
    if args.labels:
        opts["labels"] = _read_labels(args.labels)
    if args.resize_shorter is not None:
        opts["shorter"] = _ints(args.resize_shorter, "--resize-shorter", counts=(1,),
                                largest=MAX_IMAGE_SIDE)[0]
    if args.mean:
        opts["mean"] = _floats(args.mean, "--mean")
    if args.std:
        opts["std"] = _floats(args.std, "--std", positive=True)
    if args.description and len(args.description) > MAX_TEXT:
        raise EngineError(f"--description has {len(args.description)} characters, more "
                          f"than {MAX_TEXT}")
    return opts


def _conversion_metadata(args, opts, model):
    """Labels and preprocessing from the command line, merged into the model's metadata."""
    meta = model.metadata
    shape = input_shape(model)
    labels = opts["labels"]
    if labels is not None:
        out = model.values.get(model.outputs[0])
        n = out.shape[-1] if out is not None and out.shape else None
        if n is not None and len(labels) != n:
            raise EngineError(f"{args.labels} has {len(labels)} labels but the model outputs "
                              f"{n} classes")
        meta["labels"] = labels
    prep = dict(meta.get("preprocessing") or {})
    size = opts["size"]
    if size:
        prep["input_size"] = size[-2:] if len(size) > 1 else size * 2
    elif len(shape) == 4 and "input_size" not in prep and (args.mean or args.std or
                                                            args.channel_order):
        if shape[2] is None or shape[3] is None:
            raise EngineError("the model's input has no fixed height and width; give "
                              "--input-size H,W")
        prep["input_size"] = [int(d) for d in shape[2:]]
    if opts["shorter"] is not None:
        if "input_size" not in prep:
            if len(shape) != 4 or shape[2] is None or shape[3] is None:
                raise EngineError("--resize-shorter needs the crop size: give --input-size H,W")
            prep["input_size"] = [int(d) for d in shape[2:]]
        if opts["shorter"] < max(prep["input_size"]):
            raise EngineError(f"--resize-shorter {opts['shorter']} is smaller than the "
                              f"{'x'.join(map(str, prep['input_size']))} center crop")
        prep["resize_shorter"] = opts["shorter"]
    if args.channel_order:
        prep["channels"] = args.channel_order
    channels = shape[1] if len(shape) > 1 else None
    for key in ("mean", "std"):
        vals = opts[key]
        if vals:
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
    from .format import save
    t_start = time.perf_counter()

    def say(msg):
        if not args.quiet:
            print(msg, flush=True)
    user_file(args.source, "source")
    _check_output(args.output, args.source)
    if os.path.splitext(args.output)[1].lower() != ".safetensors":
        raise EngineError(f"-o {args.output!r}: convert writes engine's model format; name "
                          f"it *.safetensors (for an ONNX file: engine convert ... -o "
                          f"model.safetensors, then engine export model.safetensors -o "
                          f"model.onnx)")
    opts = _convert_options(args)
    from . import convert
    shape = opts["shape"]
    onnx_file = convert.is_onnx_file(args.source)
    if onnx_file:
        given = [f for f, v in (("--arch", args.arch), ("--module", args.module),
                                ("--num-classes", args.num_classes)) if v]
        if given:
            raise EngineError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for "
                              f"PyTorch checkpoints; an ONNX "
                              f"file holds its own graph")
        say(f"importing ONNX model {args.source}")
        model = convert.from_onnx(args.source, input_shape=shape,
                                  dynamic_batch=not args.fixed_batch)
        ref, note, peer = args.source, convert.onnx_verification_note(), "ONNX Runtime"
        if note is not None:
            ref = None
    else:
        convert._need_torch()
        from .convert.checkpoint import check_checkpoint_file
        check_checkpoint_file(args.source)      # the size guard, TorchScript archives included
        size = opts["size"] if args.arch else None
        model, ref, note = convert._convert(args.source, arch=args.arch, module=args.module,
                                            input_shape=shape, num_classes=args.num_classes,
                                            input_size=size, progress=say,
                                            dynamic_batch=not args.fixed_batch)
        peer = "PyTorch"
    say(f"mapped: {len(model.nodes)} nodes, {model.num_parameters():,} parameters")
    _conversion_metadata(args, opts, model)
    verified = None
    if ref is not None and not args.no_verify:
        vshape = tuple(1 if d is None else d for d in model.inputs[0].shape)
        if shape is not None and model.inputs[0].shape[0] is None:
            vshape = (shape[0],) + vshape[1:]
        say(f"verifying against {peer} on a random input {vshape}")
        x = _random_input(vshape, "the verification input")
        check = convert.verify_onnx if onnx_file else convert.verify
        abs_d, rel = check(model, ref, x, threads=args.threads)
        verified = (abs_d, rel, vshape)
        model.metadata["verification"] = {"max_abs_diff": abs_d, "max_rel_diff": rel,
                                           "input_shape": list(vshape)}
    save(model, args.output)
    mb = os.path.getsize(args.output) / 2**20
    say(f"wrote {args.output} ({mb:.1f} MiB) in {time.perf_counter() - t_start:.1f} s")
    if verified is None:
        why = "--no-verify" if args.no_verify else (note or f"no {peer} model to compare with")
        print(f"verification: skipped ({why})")
        return 0
    abs_d, rel, vshape = verified
    ok = rel <= 1e-3
    print(f"verification: max abs diff {abs_d:.3g}, max rel diff {rel:.3g} (engine cpu vs "
          f"{peer}, random input {'x'.join(map(str, vshape))})"
          + ("" if ok else " -- FAILED: larger than 1e-3, please report"))
    return 0 if ok else 1


def cmd_export(args):
    """Write a model (file or zoo name) as ONNX, checked by ONNX Runtime when installed."""
    model = _load_model(args.model)
    _check_output(args.output, args.model if os.path.exists(args.model) else args.output)
    if not args.output.lower().endswith(".onnx"):
        raise EngineError(f"-o {args.output!r}: an ONNX file is written; name it *.onnx")
    from .convert import to_onnx
    data = to_onnx(model).SerializeToString()
    with open(args.output, "wb") as f:
        f.write(data)
    print(f"wrote {args.output} ({len(data) / 2**20:.1f} MiB, ONNX opset "
          f"{_onnx_opset()})")
    if args.no_verify:
        return 0
    from .convert import onnx_verification_note, verify_onnx
    note = onnx_verification_note()
    if note is not None:
        print(f"verification: skipped ({note})")
        return 0
    vshape = tuple(1 if d is None else d for d in input_shape(model))
    x = _random_input(vshape, "the verification input")
    abs_d, rel = verify_onnx(model, args.output, x, threads=args.threads)
    ok = rel <= 1e-4
    print(f"verification: max abs diff {abs_d:.3g}, max rel diff {rel:.3g} (ONNX Runtime on "
          f"the file vs engine cpu, random input {'x'.join(map(str, vshape))})"
          + ("" if ok else " -- FAILED, please report"))
    return 0 if ok else 1


def _onnx_opset():
    from .peers import OPSET
    return OPSET


def cmd_ops(args):
    """Every op, then each of its CPU kernels (in the registry's order of preference) with
    its note, wrapped to 100 columns."""
    import textwrap
    from .backends import kernels_for
    from .ops import OPS
    cpu = kernels_for("cpu")
    print("op / its cpu kernels (preferred first) and what they do")
    for name in sorted(OPS):
        specs = cpu.get(name, [])
        print(name + ("" if specs else "   (no cpu kernel: the reference runs it)"))
        for s in specs:
            lines = textwrap.wrap(s.note or "-", width=100 - 26) or ["-"]
            print(f"  {s.variant:<22}  {lines[0]}")
            for more in lines[1:]:
                print(f"  {'':<22}  {more}")
    return 0


def cmd_config(args):
    from .config import show_config
    show_config(peak=args.peak)
    return 0


THREADS_HELP = f"threads (1 to {MAX_THREADS}; default: the physical cores)"
BATCH_HELP = "batch size (its buffers must fit engine's byte cap, engine.get_limits())"


def build_parser():
    p = argparse.ArgumentParser(prog="engine", description="CPU inference engine for CNNs.")
    p.add_argument("--version", action="store_true", help="print version and configuration")
    sub = p.add_subparsers(dest="command")

    r = sub.add_parser("run", help="run a model (the bundled demo if none is given)")
    r.add_argument("model", nargs="?", help="model file (.safetensors) or zoo name")
    r.add_argument("inputs", nargs="*",
                   help="input .npy arrays (a batch, or one sample without the batch "
                        "dimension; float32, other number types converted with a note) or "
                        "images; or directories, glob patterns and .txt lists of them (one "
                        "row per input, see --output)")
    r.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    r.add_argument("--top", type=int, default=3, help="classes to show per input")
    r.add_argument("--backend", default="cpu", choices=["cpu", "reference", "cuda"])
    r.add_argument("--repeat", type=int, default=20,
                   help=f"timed runs for the latency (1 to {MAX_REPEAT})")
    r.add_argument("--eval", action="store_true",
                   help="accuracy on the bundled held-out digits (the bundled LeNet-5)")
    r.add_argument("--tune", action="store_true", help=TUNE_HELP)
    r.add_argument("--batch", type=int, default=16,
                   help="inputs per run when running a folder, glob or .txt list (default 16)")
    r.add_argument("--output", help="write one row per input to a .csv or .jsonl file "
                                    "(path, top-K labels and probabilities)")
    r.add_argument("--raw", help="also save every input's raw output to this .npy file")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--allow-nonfinite", action="store_true",
                   help="run .npy inputs holding NaN or Inf (with a warning) instead of "
                        "refusing them")
    r.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the folder, glob or list on a Ray cluster (needs engine[ray]): "
                        "at ADDRESS (ray://host:10001, or auto), or a local one without it; "
                        "--threads per actor (default 2), one actor per that many CPUs. "
                        "Put it after the inputs, or write --ray=ADDRESS")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("summary", help="per-layer table: shapes, params, MACs, memory")
    s.add_argument("model", help="model file or zoo name")
    s.add_argument("--batch", type=int, default=1, help=BATCH_HELP)
    s.add_argument("--plan", action="store_true",
                   help="also show per layer the kernel chosen, its layout and time share")
    s.add_argument("--repeat", type=int, default=3,
                   help="--plan timing: runs per layer, the minimum is shown (default 3)")
    s.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    s.set_defaults(fn=cmd_summary)

    b = sub.add_parser("bench", help="latency (min/median/p90) and memory")
    b.add_argument("model", help="model file or zoo name")
    b.add_argument("--batch", type=int, default=1, help=BATCH_HELP)
    b.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    b.add_argument("--warmup", type=int, default=5, help=f"untimed runs first (0 to {MAX_REPEAT})")
    b.add_argument("--repeat", type=int, default=50, help=f"timed runs (1 to {MAX_REPEAT})")
    b.add_argument("--backend", default="cpu", choices=["cpu", "reference", "cuda"])
    b.add_argument("--vs", default="", metavar="PEERS",
                   help="also time peers on the same input and threads: a comma list of "
                        "torch, onnxruntime, openvino, ncnn, or 'all' installed")
    b.add_argument("--tune", action="store_true", help=TUNE_HELP)
    b.set_defaults(fn=cmd_bench)

    v = sub.add_parser(
        "convert", help="convert an ONNX model (needs onnx) or a PyTorch checkpoint, module or "
                        "TorchScript file (needs torch)",
        description="Convert a model. ONNX: engine convert model.onnx -o model.safetensors "
                    "(--input-shape where the file leaves dims open). "
                    "Checkpoint + zoo architecture: "
                    "engine convert weights.pth --arch resnet50 -o resnet50.safetensors; "
                    "checkpoint + your class: engine convert weights.pth --module "
                    "pkg.models:Net --input-shape 1,3,224,224 -o net.safetensors; "
                    "TorchScript: engine convert model.pt --input-shape 1,3,224,224 "
                    "-o m.safetensors")
    v.add_argument("source", help="ONNX model (.onnx), checkpoint (.pth/.pt state dict) or "
                                  "TorchScript archive")
    v.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    v.add_argument("--arch", help="zoo architecture the state dict belongs to (engine.zoo)")
    v.add_argument("--module", help="'package.module:Class' built with no arguments")
    v.add_argument("--input-shape", help="example input shape N,C,H,W (--module, TorchScript; "
                                         "ONNX inputs with open dims)")
    v.add_argument("--num-classes", type=int,
                   help=f"classifier size (--arch; 1 to {MAX_CLASSES})")
    v.add_argument("--labels", help="UTF-8 text file with one class label per line")
    v.add_argument("--mean",
                   help="per-channel mean after scaling to [0, 1], e.g. 0.485,0.456,0.406")
    v.add_argument("--std", help="per-channel std (positive), e.g. 0.229,0.224,0.225")
    v.add_argument("--input-size", help="H,W images are resized to (--arch: also C,H,W)")
    v.add_argument("--resize-shorter", metavar="S",
                   help="resize an image's shorter side to S, then center-crop the input "
                        "size (torchvision's Resize(S) + CenterCrop); --arch ImageNet models "
                        "store torchvision's (256 for 224x224) unless given")
    v.add_argument("--channel-order", choices=["rgb", "bgr", "grayscale"],
                   help="channel order the model expects")
    v.add_argument("--description", help="free text stored in the metadata")
    v.add_argument("--fixed-batch", action="store_true",
                   help="convert for the example's batch size only (--input-shape's first "
                        "dim; ONNX: the file's), for code that will not take a symbolic "
                        "batch; the error says when this helps")
    v.add_argument("--no-verify", action="store_true",
                   help="skip the comparison with PyTorch (ONNX: with ONNX Runtime)")
    v.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    v.add_argument("--quiet", action="store_true", help="only the final verification line")
    v.set_defaults(fn=cmd_convert)

    e = sub.add_parser("export", help="write a model as an ONNX file (needs onnx)")
    e.add_argument("model", help="model file (.safetensors) or zoo name")
    e.add_argument("-o", "--output", required=True, help="ONNX file to write (.onnx)")
    e.add_argument("--no-verify", action="store_true",
                   help="skip running the file with ONNX Runtime against engine")
    e.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    e.set_defaults(fn=cmd_export)

    o = sub.add_parser("ops", help="list ops and their CPU kernels")
    o.set_defaults(fn=cmd_ops)
    c = sub.add_parser("config", help="show build and runtime configuration")
    c.add_argument("--peak", action="store_true",
                   help="also measure this machine's floating-point peak (GFLOP/s, 1 thread "
                        "and all cores; about a second)")
    c.set_defaults(fn=cmd_config)
    return p


def _check_ranges(args):
    for opt, (lo, hi) in RANGES.items():
        v = getattr(args, opt, None)
        if v is not None and not lo <= v <= hi:
            raise EngineError(f"--{opt.replace('_', '-')} must be an int from {lo} to {hi}, "
                              f"got {v}")


def _one_line(message):
    """A message on one line: continuation lines joined with '; ', at most MAX_MESSAGE
    characters."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = lines[0] if lines else "failed"
    for line in lines[1:]:
        text += (" " if text.endswith(":") else "; ") + line
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def _fail(message):
    print(f"engine: error: {_one_line(message)}", file=sys.stderr)
    return 2


def _tolerant_output():
    """Labels, descriptions and file names print even where stdout cannot encode them."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):       # already written to, or detached
                pass


def main(argv=None):
    _tolerant_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.version:
            print(f"engine {__version__}")
            from .config import show_config
            show_config()
            return 0
        if not getattr(args, "fn", None):
            parser.print_help()
            return 2
        _check_ranges(args)
        return args.fn(args)
    except EngineError as e:
        return _fail(str(e) or type(e).__name__)
    except BrokenPipeError:             # engine ... | head: the reader is gone, stay quiet
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except OSError as e:                # a user's file or directory, the disk
        where = f" ({e.filename!r})" if e.filename else ""
        return _fail(f"{e.strerror or e}{where}")
    except MemoryError:
        return _fail("out of memory; try a smaller --batch or model, or fewer --threads")
    except KeyboardInterrupt:
        print("engine: interrupted", file=sys.stderr)
        return 130
