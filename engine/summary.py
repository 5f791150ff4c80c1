"""Per-layer model statistics: output shape, parameters, multiply-adds, activation memory.

Counts are for the model as written (before optimisation), at batch size 1 unless asked.
One multiply-add (MAC) = 2 FLOPs; we report MACs, as the literature's "FLOPs" for CNNs
usually means MACs.
"""

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


def layer_stats(model, batch_size=1):
    shapes = {k: v.shape for k, v in model.infer_shapes(
        {v.name: tuple(batch_size if d is None else d for d in v.shape)
         for v in model.inputs}).items()}
    rows = []
    for n in model.nodes:
        ins = [shapes[i] if i else None for i in n.inputs]
        outs = [shapes[o] for o in n.outputs]
        params = sum(model.constants[i].size for i in n.inputs if i in model.constants)
        act = sum(int(np.prod(s, dtype=np.int64)) * 4 for s in outs)
        rows.append(LayerStats(n.name, _op_label(n), outs[0] if len(outs) == 1 else tuple(outs),
                               int(params), get_op(n.op).count_macs(n, ins, outs), act))
    return rows


def _op_label(n):
    act = n.attrs.get("activation") if isinstance(n.attrs, dict) else None
    return f"{n.op}+{act['op']}" if act else n.op


def _human(n, unit=""):
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def format_summary(model, batch_size=1, memory=None):
    rows = layer_stats(model, batch_size)
    header = ("layer", "op", "output shape", "params", "MACs", "activation")
    table = [(r.name, r.op, str(tuple(r.output_shape)), f"{r.params:,}", _human(r.macs),
              _human(r.activation_bytes, "B")) for r in rows]
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
    out.append(f"activations: {_human(total_act, 'B')} summed over layers")
    if memory is not None:
        out.append(f"memory plan: {memory}")
    return "\n".join(out)
