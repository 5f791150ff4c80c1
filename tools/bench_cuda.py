"""Benchmark engine's CUDA backend against PyTorch eager on the same GPU.

    python tools/bench_cuda.py                          # ResNet-50, MobileNetV2, VGG-16; batch 1, 32
    python tools/bench_cuda.py --models resnet18 --batches 1 8 --repeat 100
    python tools/bench_cuda.py --tf32                   # allow TF32 on both sides

Both sides get the same weights (engine.zoo, deterministic random) and the same input, on the
GPU already (timing excludes host<->device copies of the input): engine runs
``Session(model, backend="cuda").run(x_gpu, device_outputs=True)`` (CUDA-graph replay after
the first run); PyTorch runs the model eagerly op by op (the engine graph interpreted with
torch.nn.functional, BatchNorm unfused, as a user's eager ``forward`` does; the interpreter
is engine.peers' PyTorch one) with ``torch.backends.cudnn.benchmark = True``.  FP32
everywhere (TF32 off on both sides) unless --tf32.

Timing: ``--warmup`` untimed runs, then ``--repeat`` runs, each bracketed by CUDA events on
the caller's current stream and synchronised; the table reports median milliseconds, the
ratio torch / engine (> 1: engine faster) and the largest difference of the two outputs
relative to the output's magnitude.  Prints a markdown table.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def torch_runner(model, torch, device):
    """PyTorch eager on ``device``: engine.peers' interpreter over CUDA tensors."""
    from engine.peers import torch_eager
    return torch_eager(model, device)


def time_gpu(fn, start_event, end_event, sync, warmup, repeat):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        start_event()
        fn()
        times.append(end_event())
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v2", "vgg16"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 (engine: cuBLAS TF32 "
                    "math via ENGINE_CUDA_TF32=1; torch: cudnn/matmul allow_tf32)")
    ap.add_argument("--no-graph", action="store_true", help="engine without CUDA graphs")
    args = ap.parse_args(argv)

    if args.tf32:
        os.environ["ENGINE_CUDA_TF32"] = "1"
    if args.no_graph:
        os.environ["ENGINE_CUDA_GRAPH"] = "0"
    try:
        import cupy
        import torch
    except ImportError as e:
        sys.exit(f"bench_cuda needs CuPy and PyTorch with CUDA: {e}")
    if not torch.cuda.is_available():
        sys.exit("bench_cuda: torch.cuda.is_available() is False (a CUDA build of PyTorch and "
                 "a GPU are needed)")
    import engine
    import engine.zoo as zoo

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    tdev = torch.device("cuda", args.device)
    torch.cuda.set_device(tdev)
    cupy.cuda.Device(args.device).use()

    ev = {"a": cupy.cuda.Event(), "b": cupy.cuda.Event()}
    tev = {"a": torch.cuda.Event(enable_timing=True), "b": torch.cuda.Event(enable_timing=True)}

    def cp_start():
        ev["a"].record()

    def cp_end():
        ev["b"].record()
        ev["b"].synchronize()
        return cupy.cuda.get_elapsed_time(ev["a"], ev["b"])

    def t_start():
        tev["a"].record()

    def t_end():
        tev["b"].record()
        tev["b"].synchronize()
        return tev["a"].elapsed_time(tev["b"])

    name = cupy.cuda.runtime.getDeviceProperties(args.device)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    print(f"GPU: {name}; CuPy {cupy.__version__}; PyTorch {torch.__version__}; "
          f"{'TF32' if args.tf32 else 'FP32'}; median of {args.repeat} runs after "
          f"{args.warmup} warm-up runs (CUDA events)\n")
    print("| model | batch | engine ms | torch eager ms | torch / engine | max rel diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for mname in args.models:
        model = zoo.get(mname)
        sess = engine.Session(model, backend="cuda", device=args.device)
        trun = torch_runner(model, torch, tdev)
        for batch in args.batches:
            shape = (batch,) + tuple(model.inputs[0].shape[1:])
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            xc = cupy.asarray(x)
            xt = torch.from_numpy(x).to(tdev)
            t0 = time.perf_counter()
            ours = sess.run(xc, device_outputs=True)[0]           # prepare + first run
            prep = time.perf_counter() - t0
            theirs = trun(xt)
            torch.cuda.synchronize()
            a = cupy.asnumpy(ours).astype(np.float64)
            b = theirs.float().cpu().numpy().astype(np.float64)
            diff = float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))
            ms_e = time_gpu(lambda: sess.run(xc, device_outputs=True), cp_start, cp_end,
                            cupy.cuda.Device().synchronize, args.warmup, args.repeat)
            ms_t = time_gpu(lambda: trun(xt), t_start, t_end, torch.cuda.synchronize,
                            args.warmup, args.repeat)
            print(f"| {mname} | {batch} | {ms_e:.3f} | {ms_t:.3f} | {ms_t / ms_e:.2f} | "
                  f"{diff:.1e} |", flush=True)
            del ours, theirs
        print(f"<!-- {mname}: first-run prepare {prep:.2f} s -->", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
