"""TorchScript archives (``torch.jit.save``) -> engine models.

Approach: PyTorch's own TorchScript-to-``torch.export`` converter
(``torch._export.converter.TS2EPConverter``) turns the scripted (or traced) module into an
ExportedProgram: it freezes the module, walks the TorchScript graph (``prim::If``,
``prim::Loop``, list and tuple ops, attribute access) and re-traces it into the same
ATen training IR that ``from_torch`` maps, with parameters under their ``state_dict``
names.  So one mapping table serves both frontends, and control flow that TorchScript
keeps in the graph (e.g. the rank checks inside ``F.interpolate``) is resolved by
tracing rather than by a hand-written TorchScript interpreter.

Its re-trace is made with dim 0 of the inputs dynamic (``Dim.AUTO``), so the batch stays
symbolic unless some op specialises it (TorchScript's ``__interpolate`` does); then the
archive is converted twice, with example batches 2 and 3, and the two graphs are
compared: sizes that follow the batch are the symbolic batch of the engine model (see
``trace.GraphConverter``).  If the graphs differ in structure, the model is converted
for the example's batch size only.

Limits: TorchScript does not record module paths or source lines at the ATen level, so
error messages name the op only; ``F.interpolate(scale_factor=...)`` arrives with the
output size computed, which gives identical results for integer scale factors.
"""

import os
import time

from ..errors import ConversionError
from .trace import BATCH_A, BATCH_B, GraphConverter, _aligned, _at_batch, _short, quiet


def load_torchscript(path):
    import torch
    from .checkpoint import check_checkpoint_file
    path = os.fspath(path)
    check_checkpoint_file(path)       # size guard before torch reads the archive
    try:
        m = torch.jit.load(path, map_location="cpu")
    except Exception as e:  # RuntimeError with the C++ message
        raise ConversionError(f"{path}: cannot load TorchScript archive "
                              f"({_short(e, 2)})") from None
    return m.eval()


def _ts2ep(ts, xs):
    """TS2EPConverter, re-tracing with only dim 0 of each input allowed to be dynamic
    (torch.export.Dim.AUTO: it stays symbolic unless the code specialises it)."""
    import torch
    import torch.export._trace as export_trace
    from torch._export.converter import TS2EPConverter
    orig = export_trace._export

    def batch_dynamic(mod, args, *a, dynamic_shapes=None, **kw):
        ds = tuple({0: torch.export.Dim.AUTO} if isinstance(x, torch.Tensor) and x.dim()
                   else None for x in args)
        return orig(mod, args, *a, dynamic_shapes=ds, **kw)
    export_trace._export = batch_dynamic
    try:
        with quiet():
            return TS2EPConverter(ts, tuple(xs)).convert()
    finally:
        export_trace._export = orig


def _batch_is_symbolic(ep):
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = next((s for s in ep.graph_signature.input_specs if s.arg.name == node.name),
                        None)
            if spec is not None and getattr(spec.kind, "name", "") == "USER_INPUT":
                val = node.meta.get("val")
                if val is None or val.dim() == 0:
                    return False
                expr = getattr(getattr(val.shape[0], "node", None), "expr", None)
                return bool(getattr(expr, "is_symbol", False))    # not specialised to an int
    return False


def from_torchscript(ts, example_input, *, input_names=None, output_names=None,
                     metadata=None, progress=None):
    """Convert a TorchScript module (or the path of a ``torch.jit.save`` archive).

    ``example_input``: a tensor (or tuple) with the input shape; dim 0 is the batch.
    """
    import torch
    if isinstance(ts, (str, os.PathLike)):
        ts = load_torchscript(ts)
    xs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    xs = tuple(x.detach().float() for x in xs)
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    say("tracing the TorchScript graph into ATen ops")
    errors = []
    ep = ep_alt = None
    mode, batch = "dynamic", BATCH_A
    try:
        ep = _ts2ep(ts, [_at_batch(x, BATCH_A) for x in xs])
        if not _batch_is_symbolic(ep):          # the graph fixes the batch: compare two
            mode = "aligned"
            ep_alt = _ts2ep(ts, [_at_batch(x, BATCH_B) for x in xs])
            if not _aligned(ep, ep_alt):
                ep = ep_alt = None
    except Exception as e:
        errors.append(e)
        ep = ep_alt = None
    if ep is None:
        try:
            ep = _ts2ep(ts, xs)
            mode, batch = "fixed", int(xs[0].shape[0])
            say(f"note: converted for batch {batch} only")
        except Exception as e:
            errors.append(e)
            err = errors[0]
            raise ConversionError(f"cannot convert the TorchScript module: "
                                  f"{type(err).__name__}: {_short(err)}") from None
    n_ops = sum(1 for n in ep.graph.nodes if n.op == "call_function")
    say(f"traced in {time.perf_counter() - t0:.1f} s; mapping {n_ops} ops")
    meta = {"source": {"converter": "engine.convert.from_torchscript (TS2EPConverter)",
                       "torch": torch.__version__, "batch": mode}}
    meta.update(metadata or {})
    names = input_names or (["input"] if len(xs) == 1 else [f"input_{i}" for i in range(len(xs))])
    conv = GraphConverter(ep, ep_alt, mode=mode, batch=batch, input_names=names,
                          output_names=output_names, what="the TorchScript module")
    model = conv.convert(meta)
    model.metadata.setdefault("input_shape", list(model.inputs[0].shape))
    return model
