"""The PyTorch frontend: trace a module with ``torch.export`` and map its ATen graph.

Why ``torch.export`` (rather than ``torch.fx.symbolic_trace`` or TorchScript):

- **One mapping per ATen op.**  ``nn.ReLU()``, ``F.relu``, ``torch.relu``, ``x.relu()`` and
  ``x.relu_()`` all reach the graph as ``aten.relu`` (or ``aten.relu_``); ``x + y``,
  ``torch.add`` and ``x.add(y)`` as ``aten.add.Tensor``.  fx symbolic tracing records the
  Python-level spelling (module calls, functionals, methods, operators) and would need a
  mapping per spelling; export normalises them.  The training-IR that export produces
  keeps useful high-level ops (``conv2d``, ``batch_norm``, ``layer_norm``, ``pad``,
  ``upsample_bilinear2d``...) instead of decomposing them into arithmetic.
- **Real shapes.**  Every node carries its output's (fake) tensor with a symbolic batch
  size, so ``x.view(x.size(0), -1)`` resolves to "batch, 400" exactly, and shape-only
  computations (``sym_size``, integer arithmetic) need no evaluation.
- **Provenance.**  ``nn_module_stack`` gives the module path of every op (used to name
  engine nodes, ``layer1.0.conv1``) and ``stack_trace`` the user's source line, so an
  unsupported op is reported where the user wrote it.
- It traces arbitrary Python ``forward`` code (non-strict mode), and parameters keep their
  ``state_dict`` names, which become the engine constants' names.

The batch dimension: dim 0 of every input is exported as a ``torch.export.Dim`` (with an
example batch of 2, since export specialises sizes 0 and 1), so the engine model has a
symbolic batch (``None``).  If the model's code fixes the batch (export then reports a
constraint violation), the module is exported twice with static batches 2 and 3 and the
graphs are compared: sizes that follow the batch (2 vs 3) are the symbolic batch.  Only
if even that fails is the model converted for the example's batch size.
"""

import logging
import math
import operator
import os
import re
import tempfile
import time
import warnings

import numpy as np

from ..errors import ConversionError, GraphError
from . import aten_ops
from .aten_ops import BATCH, Args, Const, Symbolic, Unsupported

BATCH_A, BATCH_B = 2, 3          # example batch sizes for tracing


class Poison:
    """The value of an op that could not be converted (or an unsupported side output)."""
    __slots__ = ("message",)

    def __init__(self, message=None):
        self.message = message


class Issue:
    def __init__(self, op, detail, module_path, module_type, source):
        self.op, self.detail = op, detail
        self.module_path, self.module_type, self.source = module_path, module_type, source

    def format(self):
        where = []
        if self.module_path is not None:
            mt = (self.module_type or "").rsplit(".", 1)[-1]
            if self.module_path:
                where.append(f"in module '{self.module_path}' ({mt})")
            else:
                where.append(f"in the top-level module ({mt})" if mt else "in the top-level module")
        if self.source:
            where.append(f"at {self.source}")
        detail = self.detail or "no engine equivalent"
        tail = f"\n       {', '.join(where)}" if where else ""
        return f"{self.op}: {detail}{tail}"


def format_issues(issues, what="the model"):
    """One message listing every issue; the same op failing the same way at the same source
    line in several modules (a repeated block) is one entry naming all the modules."""
    groups = {}
    for iss in issues:
        groups.setdefault((iss.op, iss.detail, iss.source), []).append(iss)
    n = len(issues)
    lines = [f"cannot convert {what}: {n} operation{'s' if n != 1 else ''} "
             f"{'are' if n != 1 else 'is'} not supported"]
    for i, group in enumerate(groups.values(), 1):
        first = group[0]
        if len(group) == 1:
            lines.append(f"  {i}. {first.format()}")
            continue
        paths = list(dict.fromkeys(g.module_path for g in group if g.module_path is not None))
        shown = ", ".join(f"'{p}'" for p in paths[:4]) + (f" and {len(paths) - 4} more"
                                                          if len(paths) > 4 else "")
        mt = (first.module_type or "").rsplit(".", 1)[-1]
        where = [f"{len(group)} times, in modules {shown} ({mt})" if paths
                 else f"{len(group)} times"]
        if first.source:
            where.append(f"at {first.source}")
        lines.append(f"  {i}. {first.op}: {first.detail or 'no engine equivalent'}\n"
                     f"       {', '.join(where)}")
    lines.append("(engine.convert.supported_ops() lists the ATen ops that convert)")
    return "\n".join(lines)


# -- tracing --------------------------------------------------------------------------------
def _at_batch(x, b):
    import torch
    if x.shape[0] >= b:
        return x[:b].clone()
    reps = -(-b // x.shape[0])
    return torch.cat([x] * reps)[:b].clone()


_SYMBOL = re.compile(r"\bs\d+\b")      # torch.export's symbolic sizes: s0, s77, ...


def _short(e, lines=12):
    """The first ``lines`` lines of a torch error, its symbolic sizes (``s77``) shown as
    ``?``; a longer text (torch.export dumps thousands of lines) is kept whole in a log
    file that the message names."""
    text = _SYMBOL.sub("?", str(e).strip()).splitlines()
    out = "\n".join(text[:lines])
    if len(text) <= lines:
        return out
    if lines < 12:                      # a one-line reason inside a longer message
        return out + "\n..."
    try:
        fd, path = tempfile.mkstemp(prefix="engine-convert-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"{type(e).__name__}: {e}\n")
        return out + f"\n... ({len(text) - lines} more lines in {path})"
    except OSError:
        return out + "\n..."


class quiet:
    """Silence torch's warnings and log records (failed attempts log tracebacks)."""

    def __enter__(self):
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")
        self._level = logging.root.manager.disable
        logging.disable(logging.CRITICAL)
        return self

    def __exit__(self, *exc):
        logging.disable(self._level)
        self._w.__exit__(*exc)
        return False


def _export(module, args, dynamic):
    import torch
    ds = None
    if dynamic:
        batch = torch.export.Dim("batch")
        ds = tuple({0: batch} for _ in args)
    with quiet():
        return torch.export.export(module, tuple(args), dynamic_shapes=ds, strict=False)


def trace(module, example_inputs, dynamic_batch=True, progress=None):
    """Export ``module`` -> (ExportedProgram, aligned twin or None, mode, batch).

    mode: "dynamic" (symbolic batch), "aligned" (two static exports compared), "fixed"
    (the example's batch size is baked into the model).
    """
    import torch
    xs = tuple(example_inputs)
    user_batch = int(xs[0].shape[0]) if xs and xs[0].dim() else None
    errors = []
    if dynamic_batch and user_batch is not None:
        try:
            ep = _export(module, [_at_batch(x, BATCH_A) for x in xs], True)
            return ep, None, "dynamic", BATCH_A
        except Exception as e:       # specialised batch, or untraceable code
            errors.append(e)
        try:
            ep_a = _export(module, [_at_batch(x, BATCH_A) for x in xs], False)
            ep_b = _export(module, [_at_batch(x, BATCH_B) for x in xs], False)
            if _aligned(ep_a, ep_b):
                return ep_a, ep_b, "aligned", BATCH_A
        except Exception as e:
            errors.append(e)
    try:
        ep = _export(module, xs, False)
        if progress and dynamic_batch:
            progress(f"note: the model's code fixes the batch size; converted for batch "
                     f"{user_batch}")
        return ep, None, "fixed", user_batch
    except Exception as e:
        errors.append(e)
    # the module itself may fail on this input (a wrong --input-shape): say so in eager
    # PyTorch's words, not in the export's (whose shapes hold symbols such as s77)
    try:
        with quiet(), torch.no_grad():
            module(*xs)
    except Exception as e:      # noqa: BLE001  (whatever the user's forward raises)
        shapes = ", ".join(str(tuple(x.shape)) for x in xs)
        raise ConversionError(f"{type(module).__name__} fails on an input of shape "
                              f"{shapes} (the example input, --input-shape): "
                              f"{type(e).__name__}: {_short(e)}") from None
    err = errors[0]
    raise ConversionError(f"torch.export cannot trace {type(module).__name__}: "
                          f"{type(err).__name__}: {_short(err)}") from None


def _aligned(ep_a, ep_b):
    """Same graph structure, and every size either equal or following the batch (2 vs 3)."""
    import torch
    na, nb = list(ep_a.graph.nodes), list(ep_b.graph.nodes)
    if len(na) != len(nb):
        return False

    def ok(u, v):
        if isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor):
            return ok(list(u.shape), list(v.shape))
        if isinstance(u, (list, tuple)) and isinstance(v, (list, tuple)):
            return len(u) == len(v) and all(ok(x, y) for x, y in zip(u, v))
        if isinstance(u, int) and isinstance(v, int) and not isinstance(u, bool):
            return u == v or (u, v) == (BATCH_A, BATCH_B)
        return True
    for a, b in zip(na, nb):
        if a.op != b.op or a.target != b.target:
            return False
        if not ok(a.meta.get("val"), b.meta.get("val")) or not ok(list(a.args), list(b.args)):
            return False
    return True


# -- the converter --------------------------------------------------------------------------
def _packet(target):
    """('conv2d', 'default') for aten.conv2d.default; (None, None) for non-ATen targets."""
    schema = getattr(target, "_schema", None)
    if schema is None:
        return None, None
    ns, _, name = schema.name.partition("::")
    if ns != "aten":
        return f"{ns}::{name}", schema.overload_name or "default"
    return name, schema.overload_name or "default"


def _op_label(target):
    name, overload = _packet(target)
    if name is None:
        return getattr(target, "__name__", str(target))
    if "::" in name:
        return f"{name}.{overload}"
    return f"aten.{name}.{overload}"


def _normalize(node, args, kwargs):
    """The call's arguments by schema name (defaults filled in)."""
    schema = node.target._schema
    out = {}
    for i, arg in enumerate(schema.arguments):
        if arg.kwarg_only or i >= len(args):
            if arg.name in kwargs:
                out[arg.name] = kwargs[arg.name]
            elif arg.has_default_value():
                out[arg.name] = arg.default_value
            else:
                out[arg.name] = None
        else:
            out[arg.name] = args[i]
    return out


_TORCH_DIR = None


def _source_line(node):
    """'file.py:12 in forward: code' for the innermost frame outside torch, or None."""
    global _TORCH_DIR
    st = node.meta.get("stack_trace")
    if not st:
        return None
    if _TORCH_DIR is None:
        import torch
        _TORCH_DIR = os.path.dirname(torch.__file__)
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*([^\n]*)', st)
    if not frames:
        return None
    user = [f for f in frames if not f[0].startswith(_TORCH_DIR)]
    f = (user or frames)[-1]
    return f"{f[0]}:{f[1]} in {f[2]}: {f[3].strip()}"


def _module_of(node):
    """(path, type) of the innermost module that ran this op; ('', type) at the top."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None, None
    path, mtype = list(stack.values())[-1]
    if not isinstance(path, str) or path.startswith("_empty"):
        return None, None
    path = re.sub(r"^L\['self'\]\.?", "", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path).replace("._modules['", ".").replace("']", "")
    mtype = mtype if isinstance(mtype, str) else getattr(mtype, "__qualname__", str(mtype))
    return path, mtype


_CONTAINERS = ("torch.nn.modules.container.",)


class GraphConverter:
    """Walk an exported graph and build the engine model (one Builder call per ATen op)."""

    def __init__(self, ep, ep_alt=None, *, mode="dynamic", batch=BATCH_A, input_names=None,
                 output_names=None, names=None, what="the model"):
        from ..builder import Builder
        self.ep, self.mode, self.batch, self.what = ep, mode, batch, what
        self.alt = dict(zip(ep.graph.nodes, ep_alt.graph.nodes)) if ep_alt is not None else {}
        self.input_names, self.output_names = input_names, output_names
        self.names = dict(names or {})
        self.b = Builder()
        self.env = {}
        self.issues = []
        self.used = set()
        self.reserved = set()          # state_dict names: kept for the constants
        self.const_cache = {}
        self.batch_sym = None
        self.name = None
        self._node = None

    # -- value resolution ------------------------------------------------------------------
    def _dim(self, d, alt=None):
        """A size: int, BATCH, or Symbolic (``alt``: the same size in the batch-3 twin)."""
        if isinstance(d, bool):
            return d
        expr = getattr(getattr(d, "node", None), "expr", None)
        if expr is not None:                       # a SymInt
            if self.batch_sym is not None and expr == self.batch_sym:
                return BATCH
            if not getattr(expr, "is_number", False):
                return Symbolic(expr)
            d = int(expr) if getattr(expr, "is_integer", False) else float(expr)
            if isinstance(d, float):
                return d
        alt_expr = getattr(getattr(alt, "node", None), "expr", None)
        if alt_expr is not None:
            alt = int(alt_expr) if getattr(alt_expr, "is_number", False) else None
        if isinstance(d, (int, np.integer)):
            d = int(d)
            if alt is None or alt == d:
                return d
            if (d, alt) == (BATCH_A, BATCH_B):
                return BATCH
            return Symbolic(f"{d} (batch {BATCH_A}) vs {alt} (batch {BATCH_B})")
        return d

    def _shape(self, val, alt=None):
        shape = []
        for i, d in enumerate(val.shape):
            v = self._dim(d, None if alt is None else alt.shape[i])
            shape.append(None if v is BATCH else v)
        return tuple(shape)

    def _resolve(self, v, alt=None):
        import torch.fx as fx
        if isinstance(v, fx.Node):
            return self.env.get(v, Poison())
        if isinstance(v, (list, tuple)):
            alts = alt if isinstance(alt, (list, tuple)) and len(alt) == len(v) else [None] * len(v)
            return [self._resolve(x, y) for x, y in zip(v, alts)]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, int):
                return self._dim(v, alt if not isinstance(alt, (bool, float)) else None)
            if alt is not None and isinstance(alt, float) and alt != v:
                return Symbolic(f"{v} vs {alt}")
            return v
        if hasattr(v, "node") and hasattr(v.node, "expr"):
            return self._dim(v, alt)
        return v

    def _scalar_val(self, node):
        val = node.meta.get("val")
        alt = self.alt.get(node)
        alt_val = alt.meta.get("val") if alt is not None else None
        if isinstance(val, (list, tuple)):
            return [self._resolve(x, y) for x, y in
                    zip(val, alt_val if isinstance(alt_val, (list, tuple)) else [None] * len(val))]
        return self._resolve(val, alt_val)

    # -- helpers for handlers (the `cx` they receive) --------------------------------------
    def unique(self, stem):
        name, k = stem, 0
        while name in self.used or name in self.reserved or name in self.b._shapes:
            k += 1
            name = f"{stem}_{k}"
        self.used.add(name)
        return name

    def aux(self, stem):
        return self.unique(f"{self.name}.{stem}")

    def poison(self, message):
        return Poison(message)

    def shape(self, t):
        return tuple(t.shape)

    def out_shape(self, i=None):
        val = self._node.meta.get("val")
        alt = self.alt.get(self._node)
        alt_val = alt.meta.get("val") if alt is not None else None
        if isinstance(val, (list, tuple)):
            val, alt_val = val[i or 0], (alt_val[i or 0] if alt_val is not None else None)
        shape = self._shape(val, alt_val)
        bad = [d for d in shape if isinstance(d, Symbolic)]
        if bad:
            raise Unsupported(f"the output shape depends on the batch size in a way the "
                              f"engine cannot express ({bad[0].expr})")
        return shape

    def tensor(self, v, name=None):
        from ..builder import Tensor
        if isinstance(v, Tensor):
            return v
        if isinstance(v, Const):
            key = id(v)
            if key not in self.const_cache:
                stem = name or v.name
                if stem and stem not in self.used and stem not in self.b._shapes:
                    cname = stem
                    self.used.add(cname)
                else:
                    cname = self.unique(stem or f"{self.name}.const")
                self.const_cache[key] = (self.b.constant(v.numpy(), cname), v)
            return self.const_cache[key][0]
        if isinstance(v, Poison):
            raise Unsupported("an input could not be converted")
        if v is BATCH or isinstance(v, Symbolic):
            raise Unsupported("a tensor made from the batch size")
        if isinstance(v, (bool, int, float, np.number)):
            return self.scalar(float(v))
        raise Unsupported(f"expected a tensor, got {type(v).__name__} {v!r}")

    def opt_tensor(self, v):
        return None if v is None else self.tensor(v)

    def graph(self, v):
        return self.tensor(v)

    def scalar(self, value):
        return self.b.constant(np.float32(value), self.aux("const"))

    def identity(self, x):
        return x

    def int(self, v):
        if isinstance(v, Const) and v.value.numel() == 1:
            v = v.value.item()
        if v is BATCH:
            raise Unsupported("a value that depends on the batch size")
        if isinstance(v, Symbolic):
            raise Unsupported(f"a value that depends on the batch size ({v.expr})")
        if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or \
                (isinstance(v, float) and not v.is_integer()):
            raise Unsupported(f"expected an int, got {v!r}")
        return int(v)

    def ints(self, v):
        if isinstance(v, (list, tuple)):
            return [self.int(x) for x in v]
        return [self.int(v)]

    def float(self, v):
        if isinstance(v, Const) and v.value.numel() == 1:
            v = v.value.item()
        if v is BATCH or isinstance(v, Symbolic) or isinstance(v, bool) or \
                not isinstance(v, (int, float, np.number)):
            raise Unsupported(f"expected a number, got {v!r}")
        return float(v)

    def opt_float(self, v):
        return None if v is None else self.float(v)

    # -- driving ---------------------------------------------------------------------------
    def _issue(self, node, detail=None, label=None):
        path, mtype = _module_of(node)
        self.issues.append(Issue(label or _op_label(node.target), detail, path, mtype,
                                 _source_line(node)))

    def _node_name(self, node, base=None):
        path, mtype = _module_of(node)
        base = base or re.sub(r"(_\d+)+$", "", node.name).rstrip("_") or node.name
        if path and mtype and mtype.startswith("torch.nn.") and not mtype.startswith(_CONTAINERS):
            stem = path
        elif path:
            stem = f"{path}.{base}"
        else:
            stem = base
        if self.names:
            head, sep, rest = stem.partition(".")
            for key in (stem, head):
                if key in self.names:
                    stem = self.names[key] + ("" if key == stem else sep + rest)
                    break
        return self.unique(stem)

    def convert(self, metadata=None):
        ep, b = self.ep, self.b
        sig = ep.graph_signature
        specs = {s.arg.name: s for s in sig.input_specs}
        consts = {}
        consts.update(getattr(ep, "constants", {}) or {})
        state = ep.state_dict
        user_inputs = []
        for node in ep.graph.nodes:
            if node.op != "placeholder":
                continue
            spec = specs.get(node.name)
            kind = getattr(spec.kind, "name", str(spec.kind)) if spec else "USER_INPUT"
            if kind == "USER_INPUT":
                user_inputs.append(node)
            elif kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
                tgt = spec.target
                value = state[tgt] if tgt in state else consts.get(tgt)
                if value is None:
                    raise ConversionError(f"exported program lacks the value of {tgt!r}")
                name = tgt if kind != "CONSTANT_TENSOR" else node.name
                self.env[node] = Const(value, name)
                self.reserved.add(name)
            else:
                self.env[node] = Poison(f"{kind.lower()} inputs are not supported")
        for node in user_inputs:
            val = node.meta.get("val")
            if val is not None and self.mode == "dynamic" and len(val.shape):
                expr = getattr(getattr(val.shape[0], "node", None), "expr", None)
                if expr is not None and getattr(expr, "is_symbol", False):
                    self.batch_sym = expr
        names = list(self.input_names or [])
        for i, node in enumerate(user_inputs):
            val = node.meta.get("val")
            if not hasattr(val, "shape"):
                raise ConversionError(f"input {node.name!r} is not a tensor")
            alt = self.alt.get(node)
            shape = self._shape(val, alt.meta.get("val") if alt is not None else None)
            if any(isinstance(d, Symbolic) for d in shape):
                raise ConversionError(f"input {node.name!r} has an unsupported symbolic shape")
            name = names[i] if i < len(names) else (node.name if not names else f"input_{i}")
            self.used.add(name)
            self.env[node] = b.input(name, shape)

        fused = _fuse_patterns(ep.graph, self)
        out_node = next(n for n in ep.graph.nodes if n.op == "output")
        live = _live(out_node, fused)
        for node in ep.graph.nodes:
            if node.op == "get_attr":
                self.env[node] = Const(getattr(ep.graph_module, node.target), node.target)
            elif node.op == "call_function" and node in live:
                self._convert_node(node, fused.get(node))
        outputs = self._outputs(out_node, sig)
        if self.issues:
            raise ConversionError(format_issues(self.issues, self.what))
        names = list(self.output_names or [])
        if not names:
            names = (["output"] if len(outputs) == 1
                     else [f"output_{i}" for i in range(len(outputs))])
        if len(names) != len(outputs):
            raise ConversionError(f"{len(names)} output names given for {len(outputs)} outputs")
        for t, name in zip(outputs, names):
            t = self.tensor(t)
            if name in b._shapes and name != t.name:
                raise ConversionError(f"output name {name!r} is already used by a tensor")
            b.output(t, name)
        try:
            return b.build(metadata=metadata)
        except GraphError as e:
            raise ConversionError(f"the converted graph is invalid: {e}") from None

    def _outputs(self, out_node, sig):
        flat = out_node.args[0]
        flat = list(flat) if isinstance(flat, (list, tuple)) else [flat]
        kinds = [getattr(s.kind, "name", str(s.kind)) for s in sig.output_specs]
        outs = []
        for v, kind in zip(flat, kinds):
            if kind != "USER_OUTPUT":
                continue
            val = self.env.get(v, Poison()) if hasattr(v, "op") else v
            if isinstance(val, Poison):
                if val.message:
                    self.issues.append(Issue("output", f"returns {val.message}", None, None, None))
                continue
            from ..builder import Tensor
            if not isinstance(val, (Tensor, Const)):
                self.issues.append(Issue("output", f"returns a non-tensor value {val!r}",
                                         None, None, None))
                continue
            outs.append(val)
        return outs

    def _convert_node(self, node, fused):
        self._node = node
        target = node.target
        if fused is not None:
            op, args = fused
            handler, inplace = aten_ops.ATEN_OPS[op], False
            label = f"{op} (recognised pattern)"
            resolved = {k: self._resolve(v) for k, v in args.items()}
            if any(isinstance(v, Poison) for v in _flatten(resolved.values())):
                self.env[node] = Poison()
                return
            self.name = self._node_name(node, op)
            self._call(node, handler, resolved, inplace, label, None)
            return
        if target is operator.getitem:
            src = self.env.get(node.args[0], Poison())
            if isinstance(src, Poison):
                self.env[node] = src
            elif isinstance(src, (list, tuple)):
                self.env[node] = src[node.args[1]]
            else:
                self.env[node] = Poison()
                self._issue(node, "indexing a non-tuple value", "getitem")
            return
        val = node.meta.get("val")
        if not _is_tensor_val(val):
            self.env[node] = self._scalar_val(node)      # sym_size and integer arithmetic
            return
        name, _ = _packet(target)
        if name is None:
            self.env[node] = Poison()
            self._issue(node, "not an ATen op")
            return
        alt = self.alt.get(node)
        args = _normalize(node, node.args, node.kwargs)
        alt_args = _normalize(alt, alt.args, alt.kwargs) if alt is not None else {}
        resolved = {k: self._resolve(v, alt_args.get(k)) for k, v in args.items()}
        handler, inplace = aten_ops.lookup(name)
        flat = list(_flatten(resolved.values()))
        if any(isinstance(v, Poison) for v in flat):
            for v in flat:
                if isinstance(v, Poison) and v.message:
                    self._issue(node, f"uses {v.message}")
                    v.message = None
            if handler is None:
                self._issue(node)
            self.env[node] = Poison()
            return
        from ..builder import Tensor
        if not any(isinstance(v, Tensor) for v in flat):
            self.env[node] = self._fold(node, resolved, flat)
            return
        if handler is None:
            self._issue(node)
            self.env[node] = Poison()
            return
        self.name = self._node_name(node)
        self._call(node, handler, resolved, inplace, None, args)

    def _call(self, node, handler, resolved, inplace, label, raw_args):
        try:
            out = handler(self, Args(resolved))
        except Unsupported as e:
            self._issue(node, str(e), label)
            out = Poison()
        except (GraphError, ValueError, TypeError, IndexError) as e:
            self._issue(node, str(e), label)
            out = Poison()
        self.env[node] = out
        if inplace and raw_args:
            first = next(iter(raw_args.values()))
            if hasattr(first, "op"):
                self.env[first] = out          # later readers see the mutated value

    def _fold(self, node, resolved, flat):
        """All tensor inputs are constants: compute the value with PyTorch now."""
        import torch
        import torch.fx as fx
        if any(v is BATCH or isinstance(v, Symbolic) for v in flat):
            self._issue(node, "creates a tensor whose shape depends on the batch size")
            return Poison()

        def real(v):
            if isinstance(v, fx.Node):
                r = self.env.get(v)
                if isinstance(r, Const):
                    return r.value.clone()
                if isinstance(r, (list, tuple)):
                    return [x.value.clone() if isinstance(x, Const) else x for x in r]
                return r
            if isinstance(v, (list, tuple)):
                return type(v)(real(x) for x in v)
            return v
        try:
            with torch.no_grad():
                out = node.target(*real(node.args), **{k: real(v) for k, v in node.kwargs.items()})
        except Exception as e:
            self._issue(node, f"constant folding failed: {type(e).__name__}: {_short(e, 2)}")
            return Poison()
        if isinstance(out, torch.Tensor):
            return Const(out, None)
        if isinstance(out, (list, tuple)):
            return [Const(o, None) if isinstance(o, torch.Tensor) else o for o in out]
        return out


def _is_tensor_val(val):
    import torch
    if isinstance(val, torch.Tensor):
        return True
    if isinstance(val, (list, tuple)) and val:
        return any(isinstance(v, torch.Tensor) for v in val)
    return False


def _flatten(vals):
    for v in vals:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v


def _live(out_node, fused):
    live, stack = set(), [out_node]
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        if n in fused:
            deps = [v for v in _flatten(fused[n][1].values()) if hasattr(v, "op")]
        else:
            deps = list(n.all_input_nodes)
        stack.extend(deps)
    return live


# -- pattern fusion -------------------------------------------------------------------------
def _is(node, *names):
    return (getattr(node, "op", None) == "call_function"
            and _packet(node.target)[0] in names)


def _single_user(node):
    return len(node.users) == 1


def _fuse_patterns(graph, conv):
    """Recognise decompositions PyTorch performs in Python (F.local_response_norm, the
    view-transpose-view channel shuffle) and map each to one engine op.

    Returns {last node of the pattern: (op name, {arg: fx node or value})}; the inner
    nodes then have no live users and are skipped.
    """
    fused = {}
    for node in graph.nodes:
        if _is(node, "div", "div_"):
            m = _match_lrn(node, conv)
            if m:
                fused[node] = ("local_response_norm", m)
        elif _is(node, "view", "reshape", "_unsafe_view", "flatten"):
            m = _match_shuffle(node, conv)
            if m:
                fused[node] = ("channel_shuffle", m)
    return fused


def _arg(node, i, name=None, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _number(v, conv):
    """A Python number, or a one-element constant tensor (traced TorchScript lifts alpha
    and k to tensors) as a float; None otherwise."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v
    c = conv.env.get(v) if hasattr(v, "op") else None
    if isinstance(c, Const) and c.value.numel() == 1:
        return float(c.value.reshape(()).item())
    return None


def _match_lrn(div, conv):
    """x / (k + alpha * avg_pool(pad(x*x)))**beta, as F.local_response_norm writes it."""
    x, den = div.args[0], _arg(div, 1, "other")
    if not _is(den, "pow") or not _single_user(den):
        return None
    add, beta = den.args[0], den.args[1]
    if not _is(add, "add") or not _single_user(add) or _arg(add, 2, "alpha", 1) != 1:
        return None
    mul, k = add.args[0], add.args[1]
    if not _is(mul, "mul") or not _single_user(mul):
        return None
    s, alpha = mul.args[0], mul.args[1]
    beta, k, alpha = (_number(v, conv) for v in (beta, k, alpha))
    if any(v is None for v in (beta, k, alpha)):
        return None
    if _is(s, "view", "reshape") and _single_user(s):
        s = s.args[0]
    if not _is(s, "squeeze") or not _single_user(s):
        return None
    pool = s.args[0]
    if not _is(pool, "avg_pool2d", "avg_pool3d") or not _single_user(pool):
        return None
    ksize = list(pool.args[1])
    size = ksize[0]
    stride = list(_arg(pool, 2, "stride", []) or [])
    if any(v != 1 for v in ksize[1:]) or any(v != 1 for v in stride):
        return None
    pad = pool.args[0]
    if not _is(pad, "pad", "constant_pad_nd") or not _single_user(pad):
        return None
    pads = list(pad.args[1])
    if pads[-2:] != [size // 2, (size - 1) // 2] or any(pads[:-2]):
        return None
    u = pad.args[0]
    if not (_is(u, "view", "reshape", "unsqueeze") and _single_user(u)):
        return None
    sq = u.args[0]
    if not _is(sq, "mul") or sq.args[0] is not x or sq.args[1] is not x:
        return None
    return {"input": x, "size": size, "alpha": alpha, "beta": beta, "k": k}


def _match_shuffle(last, conv):
    """view(x, [N, g, C/g, *s]) -> transpose(1, 2) -> (contiguous) -> view([N, C, *s])."""
    src = last.args[0]
    if _is(src, "contiguous", "clone") and _single_user(src):
        src = src.args[0]
    if not _is(src, "transpose") or not _single_user(src):
        return None
    if sorted(int(d) for d in src.args[1:3]) != [1, 2]:
        return None
    first = src.args[0]
    if not _is(first, "view", "reshape", "_unsafe_view") or not _single_user(first):
        return None
    x = first.args[0]
    try:
        sx = x.meta["val"].shape
        s1 = first.meta["val"].shape
        so = last.meta["val"].shape
    except (KeyError, AttributeError):
        return None
    key = lambda shape: [str(d) for d in shape]      # SymInts compare by expression
    if len(sx) < 3 or len(s1) != len(sx) + 1 or key(so) != key(sx):
        return None
    if key(s1[:1]) != key(sx[:1]) or key(s1[3:]) != key(sx[2:]):
        return None
    try:
        g, cg, c = int(s1[1]), int(s1[2]), int(sx[1])
    except TypeError:
        return None
    if g * cg != c:
        return None
    return {"self": x, "groups": g}


# -- entry points ---------------------------------------------------------------------------
def from_torch(module, example_input, *, input_names=None, output_names=None, names=None,
               metadata=None, dynamic_batch=True, progress=None):
    """Convert a PyTorch module to an engine Model by tracing it with ``torch.export``.

    ``example_input``: a tensor (or a tuple of tensors for several inputs) of the shape the
    model takes; dim 0 is the batch and becomes symbolic (``None``) in the engine model.
    The module is put in eval mode (BatchNorm uses its running statistics, dropout is
    off).  Weights and buffers become engine constants named by their ``state_dict``
    names; nodes are named by module path (``layer1.0.conv1``) or by ``names``, a dict
    renaming module paths (``{"0": "conv1"}``; a first path component renames the nodes
    under it).  ``input_names`` / ``output_names`` name the model's inputs and outputs.
    Raises ConversionError listing every unsupported op with its module path and source
    line.
    """
    import torch
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"from_torch expects a torch.nn.Module, got "
                              f"{type(module).__name__}")
    xs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    xs = tuple(torch.as_tensor(x, dtype=torch.float32) if not isinstance(x, torch.Tensor)
               else x.detach().float() for x in xs)
    say = progress or (lambda msg: None)
    module = module.eval()
    t0 = time.perf_counter()
    say(f"tracing {type(module).__name__} with torch.export")
    ep, ep_alt, mode, batch = trace(module, xs, dynamic_batch, progress)
    n_ops = sum(1 for n in ep.graph.nodes if n.op == "call_function")
    say(f"traced in {time.perf_counter() - t0:.1f} s; mapping {n_ops} ops")
    meta = {"source": {"converter": "engine.convert.from_torch (torch.export)",
                       "module": f"{type(module).__module__}.{type(module).__qualname__}",
                       "torch": torch.__version__, "batch": mode}}
    meta.update(metadata or {})
    conv = GraphConverter(ep, ep_alt, mode=mode, batch=batch, input_names=input_names,
                          output_names=output_names, names=names, what=type(module).__name__)
    try:
        model = conv.convert(meta)
    except (ConversionError, GraphError) as e:
        if mode == "fixed":
            raise
        # would the example's fixed batch size get through?  Then say so.
        try:
            with quiet():
                ep_fixed = _export(module, xs, False)
            GraphConverter(ep_fixed, None, mode="fixed", batch=int(xs[0].shape[0]),
                           input_names=input_names, output_names=output_names, names=names,
                           what=type(module).__name__).convert(dict(meta))
        except Exception:       # noqa: BLE001  (then the batch is not the cause)
            raise e from None
        raise type(e)(f"{e}\nwith the batch size fixed at the example's "
                      f"({int(xs[0].shape[0])}) it converts: from_torch(..., "
                      f"dynamic_batch=False), or engine convert --fixed-batch") from None
    model.metadata.setdefault("input_shape", list(model.inputs[0].shape))
    return model


def verify(model, reference, inputs, backend="cpu", threads=None):
    """(max abs diff, max relative diff) of ``model`` vs a torch callable on ``inputs``.

    The relative difference is max|ours - torch| / max|torch| over all outputs."""
    import torch
    from ..runtime import Session
    xs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    with torch.no_grad():
        ref = reference(*[torch.as_tensor(np.asarray(x)) for x in xs])
    refs = [r for r in torch.utils._pytree.tree_leaves(ref) if isinstance(r, torch.Tensor)]
    if len(refs) != len(model.outputs):
        raise ConversionError(f"PyTorch returns {len(refs)} tensors, the model has "
                              f"{len(model.outputs)} outputs")
    ours = Session(model, threads=threads, backend=backend).run(
        [np.ascontiguousarray(np.asarray(x, dtype=np.float32)) for x in xs])
    abs_d, scale = 0.0, 0.0
    for o, r in zip(ours, refs):
        r = r.detach().float().numpy()
        if o.shape != r.shape:
            raise ConversionError(f"output shape {o.shape} differs from PyTorch's {r.shape}")
        abs_d = max(abs_d, float(np.max(np.abs(o.astype(np.float64) - r))) if r.size else 0.0)
        scale = max(scale, float(np.max(np.abs(r))) if r.size else 0.0)
    rel = abs_d / scale if scale > 0 else abs_d
    if not math.isfinite(abs_d):
        rel = abs_d
    return abs_d, rel
