"""Run an engine model on peer runtimes, for side-by-side benchmarks and cross-checks.

* ``torch``: PyTorch eager, interpreting the graph op by op with ``torch.nn.functional``
  (what a user's ``forward`` does; BatchNorm stays unfused, as in eager PyTorch).
* ``onnxruntime`` / ``openvino``: the graph exported to ONNX (opset 17) by ``to_onnx``;
  both runtimes apply their own graph optimisations.
* ``ncnn``: that ONNX file converted by pnnx (pip packages ``ncnn`` and ``pnnx``; float32
  weights) and run in float32: ``use_fp16_packed``, ``use_fp16_storage``,
  ``use_fp16_arithmetic`` and ``use_bf16_storage`` off.  ncnn runs one sample at a time.

Every peer gets the model as written (unoptimised): each applies its own optimisations.
Thread counts are set per peer (``torch.set_num_threads``, ORT intra-op threads, OpenVINO
``INFERENCE_NUM_THREADS``).  Peers are optional: ``available()`` lists what is installed.
"""

import importlib.util
import math
import time

import numpy as np

from .errors import UnsupportedError

PEER_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
                "ncnn": "ncnn"}
# what else a peer needs installed (its converter)
PEER_EXTRAS = {"ncnn": ("pnnx",)}


def _installed(peer):
    return all(importlib.util.find_spec(mod) is not None
               for mod in (PEER_MODULES[peer],) + PEER_EXTRAS.get(peer, ()))


def available():
    return [p for p in PEER_MODULES if _installed(p)]


def make_runner(peer, model, threads):
    """A function x -> first output (numpy) running ``model`` on ``peer``."""
    if peer not in PEER_MODULES:
        raise UnsupportedError(f"unknown peer {peer!r}; known: {sorted(PEER_MODULES)}")
    if not _installed(peer):
        pkgs = " ".join((peer,) + PEER_EXTRAS.get(peer, ()))
        raise UnsupportedError(f"peer {peer!r} is not installed (pip install {pkgs})")
    make = {"torch": _torch_runner, "onnxruntime": _ort_runner,
            "openvino": _openvino_runner, "ncnn": _ncnn_runner}[peer]
    try:
        return make(model, threads)
    except UnsupportedError:
        raise
    except Exception as e:      # the peer refused the graph (e.g. ORT: LRN with even size)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise UnsupportedError(f"{peer} cannot run this model: {first}") from None


def compare_latency(runners, x, repeat=30, warmup=3):
    """Median latency (seconds) per runner, runs interleaved so drift hits all alike."""
    for fn in runners.values():
        for _ in range(warmup):
            fn(x)
    times = {k: [] for k in runners}
    for _ in range(repeat):
        for k, fn in runners.items():
            t0 = time.perf_counter()
            fn(x)
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


# -- PyTorch eager ----------------------------------------------------------------------------
def torch_eager(model, device="cpu"):
    """A function running ``model`` in PyTorch eager on ``device``: torch tensor in, torch
    tensor out (the graph interpreted with torch.nn.functional, weights moved once)."""
    import torch
    import torch.nn.functional as F
    consts = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device)
              for k, v in model.constants.items()}
    nodes = list(model.nodes)
    name_in, name_out = model.inputs[0].name, model.outputs[0]

    def run(x):
        env = dict(consts)
        env[name_in] = x
        with torch.inference_mode():
            for n in nodes:
                ins = [env[i] if i else None for i in n.inputs]
                res = _TORCH_OPS[n.op](F, torch, ins, n.attrs)
                if isinstance(res, (list, tuple)):
                    env.update(zip(n.outputs, res))
                else:
                    env[n.outputs[0]] = res
        return env[name_out]
    return run


def _torch_runner(model, threads):
    import torch
    torch.set_num_threads(threads)
    run = torch_eager(model)
    return lambda x: run(torch.from_numpy(x)).numpy()


def _t_act(F, torch, y, act):
    if act is None:
        return y
    return _TORCH_OPS[act["op"]](F, torch, [y], {k: v for k, v in act.items() if k != "op"})


def _t_conv(F, torch, ins, a):
    x, w, b = (ins + [None])[:3]
    r = w.dim() - 2
    pads = a["padding"]
    if all(p[0] == p[1] for p in pads):
        padding = [p[0] for p in pads]
    else:
        flat = [v for p in reversed(pads) for v in p]
        x, padding = F.pad(x, flat), 0
    conv = (F.conv1d, F.conv2d, F.conv3d)[r - 1]
    y = conv(x, w, b, a["stride"], padding, a["dilation"], a["groups"])
    return _t_act(F, torch, y, a.get("activation"))


def _t_conv_t(F, torch, ins, a):
    x, w, b = (ins + [None])[:3]
    conv = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[w.dim() - 3]
    y = conv(x, w, b, a["stride"], a["padding"], a["output_padding"], a["groups"], a["dilation"])
    return _t_act(F, torch, y, a.get("activation"))


def _t_pool(kind):
    def f(F, torch, ins, a):
        x = ins[0]
        r = x.dim() - 2
        if kind == "avg":
            fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[r - 1]
            return fn(x, a["kernel_size"], a["stride"], a["padding"], a["ceil_mode"],
                      a["count_include_pad"])
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[r - 1]
        sign = -1 if kind == "min" else 1
        return sign * fn(sign * x, a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                         a["ceil_mode"])
    return f


def _t_adaptive(kind):
    def f(F, torch, ins, a):
        x = ins[0]
        r = x.dim() - 2
        fns = ((F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)
               if kind == "avg" else
               (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d))
        return fns[r - 1](x, a["output_size"])
    return f


def _t_interp(F, torch, ins, a):
    mode = a["mode"]
    kw = {} if mode == "nearest" else {"align_corners": bool(a["align_corners"])}
    if a.get("scale_factor"):
        return F.interpolate(ins[0], scale_factor=a["scale_factor"], mode=mode, **kw)
    return F.interpolate(ins[0], size=a["size"], mode=mode, **kw)


def _t_norm(kind):
    def f(F, torch, ins, a):
        x, w, b = (ins + [None, None])[:3]
        if kind == "layer":
            return F.layer_norm(x, a["normalized_shape"], w, b, a["eps"])
        if kind == "instance":
            return F.instance_norm(x, weight=w, bias=b, eps=a["eps"])
        return F.group_norm(x, a["num_groups"], w, b, a["eps"])
    return f


def _t_split(F, torch, ins, a):
    return list(torch.split(ins[0], a["split_size_or_sections"], a["dim"]))


def _t_shuffle(F, torch, ins, a):
    x = ins[0]
    n, c = x.shape[:2]
    g = a["groups"]
    return x.reshape(n, g, c // g, *x.shape[2:]).transpose(1, 2).reshape(x.shape)


def _t_mean(F, torch, ins, a):
    return ins[0].mean(dim=a["dim"] or None, keepdim=a["keepdim"]) if a["dim"] else \
        ins[0].mean()


_TORCH_OPS = {
    "conv": _t_conv,
    "conv_transpose": _t_conv_t,
    "max_pool": _t_pool("max"), "min_pool": _t_pool("min"), "avg_pool": _t_pool("avg"),
    "adaptive_avg_pool": _t_adaptive("avg"), "adaptive_max_pool": _t_adaptive("max"),
    "linear": lambda F, t, i, a: _t_act(F, t, F.linear(*(i + [None])[:3]), a.get("activation")),
    "matmul": lambda F, t, i, a: t.matmul(i[0], i[1]),
    "add": lambda F, t, i, a: i[0] + i[1], "sub": lambda F, t, i, a: i[0] - i[1],
    "mul": lambda F, t, i, a: i[0] * i[1], "div": lambda F, t, i, a: i[0] / i[1],
    "maximum": lambda F, t, i, a: t.maximum(i[0], i[1]),
    "minimum": lambda F, t, i, a: t.minimum(i[0], i[1]),
    "relu": lambda F, t, i, a: F.relu(i[0]), "relu6": lambda F, t, i, a: F.relu6(i[0]),
    "leaky_relu": lambda F, t, i, a: F.leaky_relu(i[0], a["negative_slope"]),
    "prelu": lambda F, t, i, a: F.prelu(i[0], i[1]),
    "sigmoid": lambda F, t, i, a: t.sigmoid(i[0]), "tanh": lambda F, t, i, a: t.tanh(i[0]),
    "silu": lambda F, t, i, a: F.silu(i[0]), "hardswish": lambda F, t, i, a: F.hardswish(i[0]),
    "hardsigmoid": lambda F, t, i, a: F.hardsigmoid(i[0]),
    "gelu": lambda F, t, i, a: F.gelu(i[0], approximate=a.get("approximate", "none")),
    "elu": lambda F, t, i, a: F.elu(i[0], a["alpha"]), "selu": lambda F, t, i, a: F.selu(i[0]),
    "softplus": lambda F, t, i, a: F.softplus(i[0], a["beta"], a["threshold"]),
    "mish": lambda F, t, i, a: F.mish(i[0]),
    "clip": lambda F, t, i, a: t.clamp(i[0], a["min"], a["max"]),
    "softmax": lambda F, t, i, a: F.softmax(i[0], a["dim"]),
    "log_softmax": lambda F, t, i, a: F.log_softmax(i[0], a["dim"]),
    "batch_norm": lambda F, t, i, a: _t_act(F, t, F.batch_norm(
        i[0], i[1], i[2], *(i[3:] + [None, None])[:2], False, 0.0, a["eps"]),
        a.get("activation")),
    "layer_norm": _t_norm("layer"), "instance_norm": _t_norm("instance"),
    "group_norm": _t_norm("group"),
    "local_response_norm": lambda F, t, i, a: F.local_response_norm(i[0], a["size"], a["alpha"],
                                                                    a["beta"], a["k"]),
    "dropout": lambda F, t, i, a: i[0], "identity": lambda F, t, i, a: i[0],
    "flatten": lambda F, t, i, a: t.flatten(i[0], a["start_dim"], a["end_dim"]),
    "reshape": lambda F, t, i, a: i[0].reshape(a["shape"]),
    "permute": lambda F, t, i, a: i[0].permute(a["dims"]).contiguous(),
    "concat": lambda F, t, i, a: t.cat(i, a["dim"]),
    "split": _t_split,
    "channel_shuffle": _t_shuffle,
    "pad": lambda F, t, i, a: F.pad(i[0], a["pad"], a["mode"],
                                    a["value"] if a["mode"] == "constant" else None),
    "interpolate": _t_interp,
    "mean": _t_mean,
}


# -- ONNX export --------------------------------------------------------------------------------
OPSET = 17


def to_onnx(model):
    """An onnx.ModelProto computing ``model`` (raises UnsupportedError listing every op
    the exporter cannot express)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    bad = sorted({n.op for n in model.nodes if n.op not in _ONNX_OPS})
    if bad:
        raise UnsupportedError(f"ONNX export does not cover: {', '.join(bad)}")
    ex = _OnnxBuilder(helper, numpy_helper)
    for name, arr in model.constants.items():
        ex.initializers.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
    shapes = {k: v.shape for k, v in model.values.items()}
    for n in model.nodes:
        _ONNX_OPS[n.op](ex, n, shapes)
    dims = lambda s: ["N" if d is None else d for d in s]  # noqa: E731
    graph = helper.make_graph(
        ex.nodes, "engine",
        [helper.make_tensor_value_info(v.name, TensorProto.FLOAT, dims(v.shape))
         for v in model.inputs],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, dims(shapes[o]))
         for o in model.outputs],
        initializer=ex.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    if model.metadata:          # labels, preprocessing ...: engine.from_onnx reads them back
        import json
        helper.set_model_props(proto, {"engine.metadata": json.dumps(model.metadata)})
    onnx.checker.check_model(proto)
    return proto


class _OnnxBuilder:
    def __init__(self, helper, numpy_helper):
        self.h, self.nh = helper, numpy_helper
        self.nodes, self.initializers = [], []
        self._k = 0

    def tmp(self, stem):
        self._k += 1
        return f"__{stem}_{self._k}"

    def const(self, arr, dtype=np.float32):
        name = self.tmp("c")
        self.initializers.append(self.nh.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    def node(self, op, ins, outs, **attrs):
        self.nodes.append(self.h.make_node(op, ins, outs, **attrs))
        return outs[0]

    def act(self, x, act, out):
        """Apply a fused activation dict from value x into value out."""
        if act is None:
            return self.node("Identity", [x], [out])
        _ONNX_UNARY[act["op"]](self, x, out, act)
        return out


def _o_conv(ex, n, shapes):
    out = ex.tmp("conv") if n.attrs.get("activation") else n.outputs[0]
    pads = [p[0] for p in n.attrs["padding"]] + [p[1] for p in n.attrs["padding"]]
    ex.node("Conv", [i for i in n.inputs if i], [out], strides=n.attrs["stride"], pads=pads,
            dilations=n.attrs["dilation"], group=n.attrs["groups"])
    if n.attrs.get("activation"):
        ex.act(out, n.attrs["activation"], n.outputs[0])


def _o_conv_t(ex, n, shapes):
    out = ex.tmp("deconv") if n.attrs.get("activation") else n.outputs[0]
    p = n.attrs["padding"]
    ex.node("ConvTranspose", [i for i in n.inputs if i], [out], strides=n.attrs["stride"],
            pads=p + p, output_padding=n.attrs["output_padding"], dilations=n.attrs["dilation"],
            group=n.attrs["groups"])
    if n.attrs.get("activation"):
        ex.act(out, n.attrs["activation"], n.outputs[0])


def _o_pool(kind):
    def f(ex, n, shapes):
        a = n.attrs
        kw = dict(kernel_shape=a["kernel_size"], strides=a["stride"],
                  pads=a["padding"] + a["padding"], ceil_mode=int(a["ceil_mode"]))
        if kind == "avg":
            ex.node("AveragePool", [n.inputs[0]], n.outputs,
                    count_include_pad=int(a["count_include_pad"]), **kw)
        elif kind == "max":
            ex.node("MaxPool", [n.inputs[0]], n.outputs, dilations=a["dilation"], **kw)
        else:
            neg = ex.node("Neg", [n.inputs[0]], [ex.tmp("neg")])
            pooled = ex.node("MaxPool", [neg], [ex.tmp("pool")], dilations=a["dilation"], **kw)
            ex.node("Neg", [pooled], n.outputs)
    return f


def _o_adaptive(kind):
    def f(ex, n, shapes):
        x = shapes[n.inputs[0]]
        out = n.attrs["output_size"]
        if all(o == 1 for o in out):
            return ex.node("GlobalAveragePool" if kind == "avg" else "GlobalMaxPool",
                           [n.inputs[0]], n.outputs)
        sizes = [s if o is None else o for s, o in zip(x[2:], out)]
        if any(s % o for s, o in zip(x[2:], sizes)):
            raise UnsupportedError(f"ONNX export: adaptive pooling {tuple(x[2:])} -> "
                                   f"{tuple(sizes)} is not a plain pooling")
        k = [s // o for s, o in zip(x[2:], sizes)]
        ex.node("AveragePool" if kind == "avg" else "MaxPool", [n.inputs[0]], n.outputs,
                kernel_shape=k, strides=k)
    return f


def _o_linear(ex, n, shapes):
    a = n.attrs
    out = ex.tmp("fc") if a.get("activation") else n.outputs[0]
    if len(shapes[n.inputs[0]]) == 2:
        ex.node("Gemm", [i for i in n.inputs if i], [out], transB=1)
    else:
        wt = ex.node("Transpose", [n.inputs[1]], [ex.tmp("wt")], perm=[1, 0])
        if len(n.inputs) > 2 and n.inputs[2]:
            mm = ex.node("MatMul", [n.inputs[0], wt], [ex.tmp("mm")])
            ex.node("Add", [mm, n.inputs[2]], [out])
        else:
            ex.node("MatMul", [n.inputs[0], wt], [out])
    if a.get("activation"):
        ex.act(out, a["activation"], n.outputs[0])


def _reshape(ex, x, shape, out):
    target = [0 if i == 0 and d is None else (-1 if d is None else d) for i, d in enumerate(shape)]
    return ex.node("Reshape", [x, ex.const(target, np.int64)], [out])


def _o_shuffle(ex, n, shapes):
    s = shapes[n.inputs[0]]
    g = n.attrs["groups"]
    a = _reshape(ex, n.inputs[0], (s[0], g, s[1] // g) + tuple(s[2:]), ex.tmp("r"))
    t = ex.node("Transpose", [a], [ex.tmp("t")], perm=[0, 2, 1] + list(range(3, len(s) + 1)))
    _reshape(ex, t, s, n.outputs[0])


def _o_split(ex, n, shapes):
    s = shapes[n.inputs[0]]
    d = n.attrs["dim"] % len(s)
    sizes = [shapes[o][d] for o in n.outputs]
    ex.node("Split", [n.inputs[0], ex.const(sizes, np.int64)], n.outputs, axis=d)


def _o_pad(ex, n, shapes):
    r = len(shapes[n.inputs[0]])
    p = n.attrs["pad"]
    begins, ends = [0] * r, [0] * r
    for i in range(len(p) // 2):
        begins[r - 1 - i], ends[r - 1 - i] = p[2 * i], p[2 * i + 1]
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[n.attrs["mode"]]
    ins = [n.inputs[0], ex.const(begins + ends, np.int64)]
    if mode == "constant":
        ins.append(ex.const(n.attrs["value"] or 0.0))
    ex.node("Pad", ins, n.outputs, mode=mode)


def _o_interp(ex, n, shapes):
    a = n.attrs
    x = shapes[n.inputs[0]]
    if a["mode"] == "nearest":
        kw = dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                  nearest_mode="floor")
    else:
        kw = dict(mode="linear", coordinate_transformation_mode=(
            "align_corners" if a["align_corners"] else "pytorch_half_pixel"))
    if a.get("scale_factor"):
        scales = ex.const([1.0, 1.0] + list(a["scale_factor"]))
        ex.node("Resize", [n.inputs[0], "", scales], n.outputs, **kw)
    else:
        sizes = ex.const([1, x[1]] + list(a["size"]), np.int64)
        # batch must be known for "sizes": take it from the input's shape at run time
        shape = ex.node("Shape", [n.inputs[0]], [ex.tmp("shape")])
        nc = ex.node("Slice", [shape, ex.const([0], np.int64), ex.const([2], np.int64)],
                     [ex.tmp("nc")])
        hw = ex.node("Slice", [sizes, ex.const([2], np.int64), ex.const([len(x)], np.int64)],
                     [ex.tmp("hw")])
        full = ex.node("Concat", [nc, hw], [ex.tmp("sizes")], axis=0)
        ex.node("Resize", [n.inputs[0], "", "", full], n.outputs, **kw)


def _o_bn(ex, n, shapes):
    c = shapes[n.inputs[0]][1]
    ins = list(n.inputs) + [""] * (5 - len(n.inputs))
    w = ins[3] or ex.const(np.ones(c))
    b = ins[4] or ex.const(np.zeros(c))
    out = ex.tmp("bn") if n.attrs.get("activation") else n.outputs[0]
    ex.node("BatchNormalization", [ins[0], w, b, ins[1], ins[2]], [out],
            epsilon=n.attrs["eps"])
    if n.attrs.get("activation"):
        ex.act(out, n.attrs["activation"], n.outputs[0])


def _o_unary(op, **fixed):
    def f(ex, x, out, a):
        ex.node(op, [x], [out], **fixed)
    return f


def _o_clip(ex, x, out, a):
    lo = ex.const(-math.inf if a.get("min") is None else a["min"])
    hi = ex.const(math.inf if a.get("max") is None else a["max"])
    ex.node("Clip", [x, lo, hi], [out])


def _o_silu(ex, x, out, a):
    s = ex.node("Sigmoid", [x], [ex.tmp("sig")])
    ex.node("Mul", [x, s], [out])


def _o_gelu(ex, x, out, a):
    if a.get("approximate", "none") == "tanh":
        x3 = ex.node("Mul", [x, ex.node("Mul", [x, x], [ex.tmp("x2")])], [ex.tmp("x3")])
        inner = ex.node("Add", [x, ex.node("Mul", [x3, ex.const(0.044715)], [ex.tmp("m")])],
                        [ex.tmp("in")])
        t = ex.node("Tanh", [ex.node("Mul", [inner, ex.const(math.sqrt(2 / math.pi))],
                                     [ex.tmp("s")])], [ex.tmp("tanh")])
    else:
        t = ex.node("Erf", [ex.node("Mul", [x, ex.const(1 / math.sqrt(2))], [ex.tmp("s")])],
                    [ex.tmp("erf")])
    one = ex.node("Add", [t, ex.const(1.0)], [ex.tmp("one")])
    ex.node("Mul", [ex.node("Mul", [x, ex.const(0.5)], [ex.tmp("half")]), one], [out])


def _o_softplus(ex, x, out, a):
    """ONNX Softplus has neither beta nor threshold: log(1 + exp(beta x)) / beta written
    out, and x where beta x > threshold."""
    beta, thr = float(a["beta"]), float(a["threshold"])
    z = ex.node("Mul", [x, ex.const(beta)], [ex.tmp("bx")])
    sp = ex.node("Div", [ex.node("Softplus", [z], [ex.tmp("sp")]), ex.const(beta)],
                 [ex.tmp("spb")])
    big = ex.node("Greater", [z, ex.const(thr)], [ex.tmp("big")])
    ex.node("Where", [big, x, sp], [out])


def _o_mish(ex, x, out):
    """x tanh(softplus(x)) (ONNX's Mish is opset 18; the export is opset 17)."""
    t = ex.node("Tanh", [ex.node("Softplus", [x], [ex.tmp("sp")])], [ex.tmp("t")])
    ex.node("Mul", [x, t], [out])


_ONNX_UNARY = {
    "relu": _o_unary("Relu"), "sigmoid": _o_unary("Sigmoid"), "tanh": _o_unary("Tanh"),
    "relu6": lambda ex, x, out, a: _o_clip(ex, x, out, {"min": 0.0, "max": 6.0}),
    "leaky_relu": lambda ex, x, out, a: ex.node("LeakyRelu", [x], [out],
                                                alpha=a["negative_slope"]),
    "clip": _o_clip, "silu": _o_silu, "gelu": _o_gelu,
    "hardswish": _o_unary("HardSwish"),
    "hardsigmoid": _o_unary("HardSigmoid", alpha=1 / 6, beta=0.5),
    "elu": lambda ex, x, out, a: ex.node("Elu", [x], [out], alpha=a["alpha"]),
    "selu": _o_unary("Selu", alpha=1.6732632423543772, gamma=1.0507009873554805),
    "softplus": lambda ex, x, out, a: _o_softplus(ex, x, out, a),
    "mish": lambda ex, x, out, a: _o_mish(ex, x, out),
}


def _unary_node(name):
    return lambda ex, n, shapes: _ONNX_UNARY[name](ex, n.inputs[0], n.outputs[0], n.attrs)


def _simple(op, **attr_map):
    def f(ex, n, shapes):
        kw = {k: fn(n.attrs) for k, fn in attr_map.items()}
        ex.node(op, [i for i in n.inputs if i], n.outputs, **kw)
    return f


def _o_lrn(ex, n):
    a = n.attrs
    if a["size"] % 2 == 0:
        # ONNX sums channels [c - (size-1)//2, c + ceil((size-1)/2)], PyTorch
        # [c - size//2, c + (size-1)//2]: the same window only for odd sizes.
        raise UnsupportedError(f"ONNX export: node '{n.name}': LRN with even size {a['size']} "
                               f"centres its window differently in ONNX and PyTorch")
    ex.node("LRN", [n.inputs[0]], n.outputs, size=a["size"], alpha=a["alpha"], beta=a["beta"],
            bias=a["k"])


def _o_prelu(ex, n, shapes):
    r = len(shapes[n.inputs[0]])
    slope = _reshape_const(ex, n.inputs[1], shapes[n.inputs[1]], r)
    ex.node("PRelu", [n.inputs[0], slope], n.outputs)


def _reshape_const(ex, name, shape, rank):
    target = [shape[0]] + [1] * (rank - 2)
    return ex.node("Reshape", [name, ex.const(target, np.int64)], [ex.tmp("slope")])


def _o_flatten(ex, n, shapes):
    _reshape(ex, n.inputs[0], shapes[n.outputs[0]], n.outputs[0])


_ONNX_OPS = {
    "conv": _o_conv, "conv_transpose": _o_conv_t,
    "max_pool": _o_pool("max"), "avg_pool": _o_pool("avg"), "min_pool": _o_pool("min"),
    "adaptive_avg_pool": _o_adaptive("avg"), "adaptive_max_pool": _o_adaptive("max"),
    "linear": _o_linear, "matmul": _simple("MatMul"),
    "add": _simple("Add"), "sub": _simple("Sub"), "mul": _simple("Mul"), "div": _simple("Div"),
    "maximum": _simple("Max"), "minimum": _simple("Min"),
    "prelu": _o_prelu,
    "softmax": _simple("Softmax", axis=lambda a: a["dim"]),
    "log_softmax": _simple("LogSoftmax", axis=lambda a: a["dim"]),
    "batch_norm": _o_bn,
    "instance_norm": _simple("InstanceNormalization", epsilon=lambda a: a["eps"]),
    "layer_norm": _simple("LayerNormalization", epsilon=lambda a: a["eps"],
                          axis=lambda a: -len(a["normalized_shape"])),
    "local_response_norm": lambda ex, n, shapes: _o_lrn(ex, n),
    "dropout": _simple("Identity"), "identity": _simple("Identity"),
    "flatten": _o_flatten, "reshape": _o_flatten,
    "permute": _simple("Transpose", perm=lambda a: a["dims"]),
    "concat": _simple("Concat", axis=lambda a: a["dim"]),
    "split": _o_split, "channel_shuffle": _o_shuffle, "pad": _o_pad, "interpolate": _o_interp,
    "mean": _simple("ReduceMean", axes=lambda a: a["dim"], keepdims=lambda a: int(a["keepdim"])),
}
_ONNX_OPS.update({k: _unary_node(k) for k in _ONNX_UNARY})


def _ort_runner(model, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(to_onnx(model).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    name = model.inputs[0].name
    return lambda x: sess.run(None, {name: x})[0]


def _ceil_pool_differs(node, in_shape):
    """Whether PyTorch's ceil_mode rules matter for this pool (seen with OpenVINO 2026.4;
    ONNX Runtime follows PyTorch): PyTorch drops a last window that starts in the right
    padding, and for count_include_pad averages divides an overhanging window by the part
    inside input + padding only."""
    a = node.attrs
    for size, k, s, p, d in zip(in_shape[2:], a["kernel_size"], a["stride"], a["padding"],
                                a.get("dilation", [1] * len(a["kernel_size"]))):
        span = d * (k - 1) + 1
        out = -(-(size + 2 * p - span) // s) + 1
        if (out - 1) * s >= size + p:
            return True                       # PyTorch drops this last window
        if node.op == "avg_pool" and a["count_include_pad"] and (out - 1) * s + span > size + 2 * p:
            return True                       # overhanging window, other divisor
    return False


def _openvino_runner(model, threads):
    import openvino as ov
    for n in model.nodes:
        if n.op in ("max_pool", "min_pool", "avg_pool") and n.attrs["ceil_mode"] and \
                _ceil_pool_differs(n, model.values[n.inputs[0]].shape):
            raise UnsupportedError(f"openvino: node '{n.name}': OpenVINO sizes or divides this "
                                   f"ceil_mode pooling window differently from PyTorch")
    core = ov.Core()
    ov_model = core.read_model(to_onnx(model).SerializeToString())
    compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                    "PERFORMANCE_HINT": "LATENCY",
                                                    "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()

    def run(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()
    return run


def _ncnn_net(workdir, threads):
    """pnnx's conversion in ``workdir`` loaded into an ncnn.Net running float32 only."""
    import os
    import ncnn
    net = ncnn.Net()
    o = net.opt
    o.use_fp16_packed = o.use_fp16_storage = o.use_fp16_arithmetic = False
    o.use_bf16_storage = False
    o.num_threads = threads
    if net.load_param(os.path.join(workdir, "model.ncnn.param")) != 0 or \
            net.load_model(os.path.join(workdir, "model.ncnn.bin")) != 0:
        raise UnsupportedError("ncnn could not load pnnx's conversion of the model")
    return net


_NCNN_TRIAL = """
import sys, numpy as np, ncnn
from engine.peers import _ncnn_net
ex = _ncnn_net(".", 1).create_extractor()
ex.input("in0", ncnn.Mat(np.ones([int(v) for v in sys.argv[1].split(",")], np.float32)))
assert ex.extract("out0")[0] == 0
"""


def _ncnn_trial(workdir, sample_shape):
    """One inference of pnnx's conversion in a child process: some conversions crash ncnn
    (seen on random graphs), which must not take the caller's process with them."""
    import os
    import subprocess
    import sys
    # the child imports this package from where the caller has it, installed or not
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
    r = subprocess.run([sys.executable, "-c", _NCNN_TRIAL,
                        ",".join(str(d) for d in sample_shape)], cwd=workdir, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    if r.returncode != 0:
        raise UnsupportedError(f"ncnn fails on pnnx's conversion of this model (trial run "
                               f"exit code {r.returncode})")


def _ncnn_runner(model, threads):
    """ncnn in float32 on the model converted by pnnx (from our ONNX export), converted at
    the first call's input shape (pnnx needs one) and again if the sample shape changes."""
    import ncnn
    import os
    import subprocess
    import tempfile
    import pnnx
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise UnsupportedError("ncnn: only models with one (N, C, H, W) input are run")
    onnx_bytes = to_onnx(model).SerializeToString()
    work = tempfile.TemporaryDirectory(prefix="engine-ncnn-")
    state = {}

    def convert(sample_shape):
        path = os.path.join(work.name, "model.onnx")
        with open(path, "wb") as f:
            f.write(onnx_bytes)
        shape = ",".join(str(d) for d in (1,) + tuple(sample_shape))
        r = subprocess.run([pnnx.EXEC_PATH, path, f"inputshape=[{shape}]", "fp16=0"],
                           cwd=work.name, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=600)
        param = os.path.join(work.name, "model.ncnn.param")
        if r.returncode != 0 or not os.path.exists(param):
            tail = r.stdout.strip().splitlines()[-1:] or ["no output"]
            raise UnsupportedError(f"pnnx could not convert the model: {tail[0][:300]}")
        _ncnn_trial(work.name, sample_shape)
        state.update(net=_ncnn_net(work.name, threads), shape=tuple(sample_shape), work=work)

    sample = tuple(model.inputs[0].shape[1:])
    if None not in sample:
        convert(sample)               # now, so that a refusal comes from make_runner

    def run(x):
        if state.get("shape") != tuple(x.shape[1:]):
            convert(x.shape[1:])
        outs = []
        for sample in x:              # ncnn has no batch dimension
            ex = state["net"].create_extractor()
            ex.input("in0", ncnn.Mat(np.ascontiguousarray(sample)))
            rc, out = ex.extract("out0")
            if rc != 0:
                raise UnsupportedError("ncnn failed to run the model")
            outs.append(np.array(out))
        y = np.stack(outs)
        # ncnn drops leading dims of extent 1: give the output the model's shape back
        want = (x.shape[0],) + tuple(model.values[model.outputs[0]].shape[1:])
        if None not in want and math.prod(want) == y.size:
            y = y.reshape(want)
        return y
    return run
