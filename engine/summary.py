"""Per-layer model statistics: output shape, parameters, multiply-adds, activation memory,
receptive field.

Counts are for the model as written (before optimisation), at batch size 1 unless asked.
One multiply-add (MAC) = 2 FLOPs; we report MACs, as the literature's "FLOPs" for CNNs
usually means MACs.

Receptive field (RF) and jump are along the first spatial dimension (H for images), in
input pixels: the RF is the extent of input one output position can see, the jump the
distance in input pixels between neighbouring output positions.  A KxK conv or pool with
dilation d adds (K-1)*d*jump to the RF and multiplies the jump by its stride; elementwise
and shape ops pass both through; merges (add, concat, mul) take the largest RF of their
inputs; global pooling and flattening see the whole map.
"""

import math
from dataclasses import dataclass

import numpy as np

from .ops import get_op


@dataclass
class LayerStats:
    name: str
    op: str
    output_shape: tuple
    params: int
    macs: int
    activation_bytes: int
    rf: object = None          # receptive field along the first spatial dim (None: not spatial)
    jump: object = None        # input pixels between neighbouring outputs along that dim


def layer_stats(model, batch_size=1):
    shapes = {k: v.shape for k, v in model.infer_shapes(
        {v.name: tuple(batch_size if d is None else d for d in v.shape)
         for v in model.inputs}).items()}
    fields = receptive_fields(model, shapes)
    rows = []
    for n in model.nodes:
        ins = [shapes[i] if i else None for i in n.inputs]
        outs = [shapes[o] for o in n.outputs]
        params = sum(model.constants[i].size for i in n.inputs if i in model.constants)
        act = sum(int(np.prod(s, dtype=np.int64)) * 4 for s in outs)
        rf, jump = fields.get(n.outputs[0]) or (None, None)
        rows.append(LayerStats(n.name, _op_label(n), outs[0] if len(outs) == 1 else tuple(outs),
                               int(params), get_op(n.op).count_macs(n, ins, outs), act,
                               rf, jump))
    return rows


def _exact(v):
    """Ints stay ints; fractional jumps (after upsampling) stay floats."""
    return int(v) if float(v).is_integer() else float(v)


def receptive_fields(model, shapes=None):
    """{value name: (receptive field, jump)} along the first spatial dim, for every value
    computed from an input of rank >= 3 (constants and values of other inputs excluded).
    Values without a spatial grid any more (after flatten, global mean) have jump None."""
    if shapes is None:
        shapes = {k: v.shape for k, v in model.infer_shapes().items()}
    info = {v.name: (1, 1) for v in model.inputs if len(v.shape) >= 3}
    for n in model.nodes:
        srcs = [i for i in n.inputs if i and i in info]
        if not srcs:
            continue
        rf = max(info[i][0] for i in srcs)
        jumps = [info[i][1] for i in srcs if info[i][1] is not None]
        jump = max(jumps) if jumps else None
        x = shapes[srcs[0]]
        y = shapes[n.outputs[0]]
        a = n.attrs
        if jump is None or len(x) < 3:
            pass                                    # already global: nothing more to see
        elif n.op in ("conv", "max_pool", "min_pool", "avg_pool"):
            k = shapes[n.inputs[1]][2] if n.op == "conv" else a["kernel_size"][0]
            d = a.get("dilation", [1])[0]
            rf, jump = rf + (k - 1) * d * jump, jump * a["stride"][0]
        elif n.op == "conv_transpose":
            k, s, d = shapes[n.inputs[1]][2], a["stride"][0], a["dilation"][0]
            rf, jump = rf + (math.ceil(((k - 1) * d + 1) / s) - 1) * jump, jump / s
        elif n.op in ("adaptive_avg_pool", "adaptive_max_pool"):
            size, out = x[2], a["output_size"][0]
            k = max(-(-((o + 1) * size) // out) - (o * size) // out for o in range(out))
            rf, jump = rf + (k - 1) * jump, jump * size / out
        elif n.op == "interpolate":
            rf += jump if a["mode"] != "nearest" else 0     # bilinear reads two neighbours
            jump = jump * x[2] / y[2]
        elif len(y) < 3 or (n.op == "mean" and 2 in [d % len(x) for d in a["dim"]]):
            rf, jump = rf + (x[2] - 1) * jump, None     # sees the whole map; no more grid
        for o in n.outputs:
            info[o] = (_exact(rf), None if jump is None else _exact(jump))
    return {k: v for k, v in info.items() if k not in model.input_names}


def _op_label(n):
    act = n.attrs.get("activation") if isinstance(n.attrs, dict) else None
    return f"{n.op}+{act['op']}" if act else n.op


def _human(n, unit=""):
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def _num(v):
    if v is None:
        return "-"
    return str(v) if isinstance(v, int) else f"{v:.3g}"


def format_summary(model, batch_size=1, memory=None):
    rows = layer_stats(model, batch_size)
    header = ("layer", "op", "output shape", "params", "MACs", "activation", "RF", "jump")
    table = [(r.name, r.op, str(tuple(r.output_shape)), f"{r.params:,}", _human(r.macs),
              _human(r.activation_bytes, "B"), _num(r.rf), _num(r.jump)) for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h)
              for i, h in enumerate(header)]
    line = "  ".join

    def fmt(cells):
        return line(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [fmt(header), line("-" * w for w in widths)]
    out += [fmt(t) for t in table]
    total_params = model.num_parameters()
    total_macs = sum(r.macs for r in rows)
    total_act = sum(r.activation_bytes for r in rows)
    out.append(line("-" * w for w in widths))
    ins = ", ".join(f"{v.name} {tuple('N' if d is None else d for d in v.shape)}"
                    for v in model.inputs)
    out.append(f"inputs: {ins}   outputs: {', '.join(model.outputs)}   batch: {batch_size}")
    out.append(f"layers: {len(rows)}   parameters: {total_params:,} "
               f"({_human(total_params * 4, 'B')})   multiply-adds: {_human(total_macs)} "
               f"({_human(2 * total_macs)} FLOPs)")
    stats = _batchnorm_statistics(model)
    if stats:
        out.append(f"of the parameters, {stats:,} are BatchNorm running statistics: "
                   f"{total_params - stats:,} without them (PyTorch's parameter count)")
    out.append(f"activations: {_human(total_act, 'B')} summed over layers")
    if memory is not None:
        out.append(f"memory plan: {memory}")
    out += _stored_metadata_lines(model.metadata)
    return "\n".join(out)


def _stored_metadata_lines(meta):
    """What the model file says about its inputs and outputs: labels and image
    preprocessing (what ``engine run`` applies to an image)."""
    out = []
    labels = meta.get("labels")
    if isinstance(labels, list) and labels:
        shown = ", ".join(str(x) for x in labels[:5])
        out.append(f"labels: {len(labels)} ({shown}{', ...' if len(labels) > 5 else ''})")
    prep = meta.get("preprocessing")
    if isinstance(prep, dict) and prep:
        size = prep.get("input_size")
        parts = []
        if prep.get("resize_shorter") and size:
            parts.append(f"resize the shorter side to {prep['resize_shorter']}, center crop "
                         f"{size[0]}x{size[1]}")
        elif size:
            parts.append(f"resize to {size[0]}x{size[1]} (aspect not kept)")
        for key in ("channels", "pad", "scale", "mean", "std"):
            if prep.get(key) is not None:
                v = prep[key]
                parts.append(f"{key} {v:.6g}" if isinstance(v, float) else f"{key} {v}")
        out.append("image preprocessing: " + ", ".join(parts))
    else:
        out.append("image preprocessing: none stored (images are resized to the input size, "
                   "scaled to [0, 1])")
    return out


def _batchnorm_statistics(model):
    """Number of constants that are BatchNorm running means/variances (buffers in PyTorch,
    not parameters: published parameter counts leave them out)."""
    names = {i for n in model.nodes if n.op == "batch_norm" for i in n.inputs[1:3]}
    return int(sum(model.constants[i].size for i in names if i in model.constants))
