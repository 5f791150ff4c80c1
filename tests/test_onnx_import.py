"""ONNX import (engine.from_onnx) against data nobody here wrote.

* The ``onnx`` wheel's backend test cases (``onnx/backend/test/data``): ``pytorch-converted``,
  ``pytorch-operator`` and ``simple`` run with their stored inputs and expected outputs;
  the ``light`` Model Zoo architectures (weights there are ``ConstantOfShape`` fills, which
  would make every channel alike) get random weights and are compared with ONNX Runtime.
  A case may be unsupported only for a reason in ``OUTSIDE_THE_SET`` (ops and types outside
  the importer's operator set) or ``KNOWN_GAPS`` (in it, not done yet; docs/onnx.md).  The
  table of results is printed at the end of the session.
* torchvision models exported by ``torch.onnx.export`` (opsets 13 and 17, dynamic batch)
  import and match PyTorch at batch 2.
* Our own exporter (engine.peers.to_onnx) round-trips the zoo.
"""

import glob
import io
import os
import re

import numpy as np
import pytest

import engine
from engine.errors import ConversionError

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
FOLDERS = ("pytorch-converted", "pytorch-operator", "simple")

# Reasons a case may be unsupported: ops and types the importer's set leaves out.
OUTSIDE_THE_SET = (
    r"element type (int64|object|float64)", r"\bExp\b", r"\bAbs\b", r"\bSqrt\b",
    r"Pow with a non-scalar", r"\bTile\b", r"\bSign\b", r"\bShrink\b", r"Sequence",
    r"SplitToSequence", r"Gradient",
)
# In the set, not done yet (listed in docs/onnx.md).
KNOWN_GAPS = ()

RESULTS = []          # (case, status, detail) for the summary table


def _read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def _close(got, want, what, rel=1e-4):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(float(np.abs(want).max()), 1e-6)
    err = float(np.abs(got.astype(np.float64) - want).max()) / scale
    assert err <= rel, f"{what}: max |diff| / max |ref| = {err:.3g} > {rel}"
    return err


def _cases():
    out = []
    for sub in FOLDERS:
        for model in sorted(glob.glob(os.path.join(DATA, sub, "*", "model.onnx"))):
            out.append(pytest.param(model, id=f"{sub}/{os.path.basename(os.path.dirname(model))}"))
    return out


@pytest.mark.parametrize("path", _cases())
def test_backend_case(path, request):
    case = request.node.callspec.id
    try:
        m = engine.from_onnx(path)
    except ConversionError as e:
        why = str(e)
        allowed = [p for p in OUTSIDE_THE_SET + KNOWN_GAPS if re.search(p, why)]
        RESULTS.append((case, "unsupported", why.replace("\n", " ")[:120]))
        assert allowed, f"{case}: refused for a reason inside the operator set: {why}"
        return
    data = os.path.join(os.path.dirname(path), "test_data_set_0")
    feeds = {v.name: _read_pb(os.path.join(data, f"input_{i}.pb")).astype(np.float32)
             for i, v in enumerate(m.inputs)}
    got = engine.Session(m).run(feeds)
    errs = [_close(g, _read_pb(os.path.join(data, f"output_{i}.pb")), case)
            for i, g in enumerate(got)]
    RESULTS.append((case, "passed", f"max rel diff {max(errs):.1e}"))


def _randomized(path):
    """The light model with random weights in place of its ConstantOfShape fills
    (BatchNorm variances and scales positive)."""
    m = onnx.load(path)
    g = m.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    positive = {n.input[4] for n in g.node if n.op_type == "BatchNormalization"}
    rng = np.random.default_rng(0)
    keep = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in consts:
            shape = [int(v) for v in consts[n.input[0]]]
            fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            if n.output[0] in positive:
                a = rng.uniform(0.5, 1.5, shape)
            else:
                a = rng.uniform(-1, 1, shape) * np.sqrt(3.0 / fan)
            g.initializer.append(numpy_helper.from_array(a.astype(np.float32), n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    m.ir_version = max(m.ir_version, 4)   # (IR 3 wants every initializer a graph input)
    return m


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(DATA, "light", "*.onnx"))),
                         ids=lambda p: os.path.basename(p)[:-5])
def test_light_model_zoo(path):
    ort = pytest.importorskip("onnxruntime")
    proto = _randomized(path)
    m = engine.from_onnx(proto)
    x = np.random.default_rng(1).standard_normal(
        [1 if d is None else d for d in m.inputs[0].shape]).astype(np.float32)
    got = engine.Session(m).run(x)[0]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    want = ort.InferenceSession(proto.SerializeToString(), so,
                                providers=["CPUExecutionProvider"]).run(
        None, {m.inputs[0].name: x})[0]
    assert float(np.abs(want).std()) > 0, "degenerate reference (all outputs alike)"
    err = _close(got, want, os.path.basename(path))
    RESULTS.append((f"light/{os.path.basename(path)[:-5]}", "passed",
                    f"vs ONNX Runtime, random weights: {err:.1e}"))


TV_MODELS = ["resnet18", "mobilenet_v2", "googlenet", "densenet121", "shufflenet_v2_x1_0",
             "squeezenet1_1", "efficientnet_b0", "mobilenet_v3_small", "regnet_x_400mf",
             "convnext_tiny"]


@pytest.fixture(scope="module")
def torchvision():
    pytest.importorskip("torch")
    from tv_compat import import_torchvision
    tv = import_torchvision()
    if tv is None:
        pytest.skip("torchvision not installed")
    return tv


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", TV_MODELS)
def test_torch_onnx_export(torchvision, name, opset):
    import torch
    kw = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None, **kw).eval()
    f = io.BytesIO()
    torch.onnx.export(net, torch.randn(1, 3, 224, 224), f, opset_version=opset,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, dynamo=False)
    m = engine.from_onnx(f.getvalue())
    assert m.inputs[0].shape == (None, 3, 224, 224)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = net(x).numpy()
    _close(engine.Session(m).run(x.numpy())[0], want, f"{name} opset {opset}")


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_decomposed_layer_norm_gelu_and_linear_bias_map_to_one_op_each(opset):
    """Below opset 17 / 20 the exporter spells LayerNorm and GELU in elementwise nodes (Erf,
    Sqrt, Pow ... which engine has no op for); they import as layer_norm / gelu, and a
    MatMul + bias Add on a 3-d input as one linear."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 4)).eval()
    f = io.BytesIO()
    torch.onnx.export(net, torch.randn(1, 5, 8), f, opset_version=opset, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                      dynamo=False)
    m = engine.from_onnx(f.getvalue())
    ops = sorted(n.op for n in m.nodes)
    assert ops == ["gelu", "layer_norm", "linear", "linear"], ops
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        want = net(x).numpy()
    _close(engine.Session(m).run(x.numpy())[0], want, f"opset {opset}", rel=1e-5)


@pytest.mark.parametrize("name", ["lenet5", "resnet18", "mobilenet_v2", "squeezenet1_1"])
def test_own_export_round_trips(name):
    import engine.zoo
    from engine import peers
    model = engine.zoo.get(name)
    m = engine.from_onnx(peers.to_onnx(model).SerializeToString())
    shape = [2 if d is None else d for d in model.inputs[0].shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    _close(engine.Session(m).run(x)[0], engine.Session(model).run(x)[0], name, rel=1e-5)


def _resnet_proto():
    import engine.zoo
    from engine import peers
    model = engine.zoo.get("resnet18")
    return model, peers.to_onnx(model)


def _check_same(model, m):
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    _close(engine.Session(m).run(x)[0], engine.Session(model).run(x)[0], "resnet18", rel=1e-5)


def test_external_data_weights_load(tmp_path):
    model, proto = _resnet_proto()
    path = tmp_path / "r18.onnx"
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="r18.weights", size_threshold=1024)
    assert (tmp_path / "r18.weights").stat().st_size > 40e6 and path.stat().st_size < 1e6
    _check_same(model, engine.from_onnx(str(path)))


def test_weights_in_constant_nodes_load_like_initializers():
    """paddle2onnx keeps weights in Constant nodes instead of initializers."""
    from onnx import helper
    model, proto = _resnet_proto()
    g = proto.graph
    consts = [helper.make_node("Constant", [], [t.name], value=t) for t in g.initializer]
    nodes = consts + list(g.node)
    del g.initializer[:]
    del g.node[:]
    g.node.extend(nodes)
    _check_same(model, engine.from_onnx(proto))


# -- errors -------------------------------------------------------------------------------

def _tiny(op, inputs, outputs, **attrs):
    from onnx import TensorProto, helper
    node = helper.make_node(op, [i[0] for i in inputs], [o[0] for o in outputs], **attrs)
    g = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_every_unsupported_op_is_listed_at_once():
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Erf", ["x"], ["a"], name="e1"),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Sign", ["x"], ["c"], name="s1"),
             helper.make_node("Add", ["b", "c"], ["y"])]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    with pytest.raises(ConversionError) as e:
        engine.from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert "Erf" in str(e.value) and "Sign" in str(e.value) and "e1" in str(e.value)


def test_not_onnx_is_named():
    with pytest.raises(ConversionError, match="not an ONNX model"):
        engine.from_onnx(b"\x00\x01 this is not protobuf \xff" * 3)
    with pytest.raises(ConversionError, match="expects a path, bytes"):
        engine.from_onnx(3.5)


def test_symbolic_spatial_dims_ask_for_the_shape():
    m = _tiny("Relu", [("x", ["N", 3, "H", "W"])], [("y", ["N", 3, "H", "W"])])
    with pytest.raises(ConversionError, match="input shape"):
        engine.from_onnx(m)
    got = engine.from_onnx(m, input_shape=(1, 3, 8, 8))
    assert got.inputs[0].shape == (None, 3, 8, 8)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad_matches_onnxruntime(auto_pad):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad, strides=[2, 2])
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                         ["n", "c", "h", "w"])],
                          [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 3, 8, 7)).astype(np.float32)
    want = ort.InferenceSession(proto.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    _close(engine.Session(engine.from_onnx(proto)).run(x)[0], want, auto_pad, rel=1e-5)


def results_table():
    """The results table (printed by conftest's terminal summary)."""
    if not RESULTS:
        return []
    counts = {}
    for _, status, _ in RESULTS:
        counts[status] = counts.get(status, 0) + 1
    lines = ["ONNX import, onnx backend test data: " +
             ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))]
    lines += [f"  {status:<11} {case}: {detail}" for case, status, detail in sorted(RESULTS)
              if status != "passed"]
    return lines


# -- the command line -----------------------------------------------------------------------

def test_cli_export_then_convert_round_trip(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from engine.cli import main
    path = engine.cli._data_path(engine.cli.DEFAULT_MODEL)        # LeNet-5, with labels
    onnx_file = str(tmp_path / "lenet.onnx")
    assert main(["export", path, "-o", onnx_file]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "verification: max abs diff" in out
    back = str(tmp_path / "back.safetensors")
    assert main(["convert", onnx_file, "-o", back]) == 0
    assert "engine cpu vs ONNX Runtime" in capsys.readouterr().out
    a, b = engine.load(path), engine.load(back)
    assert b.metadata.get("labels") == a.metadata.get("labels")
    x = np.random.default_rng(0).standard_normal(
        [2 if d is None else d for d in a.inputs[0].shape]).astype(np.float32)
    _close(engine.Session(b).run(x)[0], engine.Session(a).run(x)[0], "round trip", rel=1e-6)


def test_cli_convert_onnx_refuses_pytorch_options(tmp_path, capsys):
    from engine.cli import main
    from engine import peers
    import engine.zoo
    f = tmp_path / "m.onnx"
    f.write_bytes(peers.to_onnx(engine.zoo.get("lenet5")).SerializeToString())
    assert main(["convert", str(f), "-o", str(tmp_path / "o.safetensors"), "--arch",
                 "resnet18"]) != 0
    assert "--arch is for PyTorch checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("kind, data, says", [
    ("onnx", None, "an ONNX model: import it with engine convert"),
    ("zip", b"PK\x03\x04" + bytes(60), "a ZIP archive"),
    ("pickle", b"\x80\x04\x95" + bytes(60), "a Python pickle"),
    ("text", b"name,label\ncat,1\ndog,2\n" * 4, "a text file"),
])
def test_other_formats_are_named(tmp_path, kind, data, says):
    from engine import peers
    import engine.zoo
    if data is None:
        data = peers.to_onnx(engine.zoo.get("lenet5")).SerializeToString()
    f = tmp_path / f"model.{kind}"
    f.write_bytes(data)
    for load in (engine.load, engine.Session):
        with pytest.raises(engine.ModelFormatError, match=says):
            load(str(f))


def _single_op_model(node, inits, in_shape, out_shape):
    from onnx import TensorProto, helper
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op, extra, in_shape, out_shape", [
    ("Abs", None, [2, 3, 4], [2, 3, 4]),
    ("Tile", [1, 3, 2], [2, 3, 4], [2, 9, 8]),
    ("Tile", [1, 1, 1], ["N", 3, 4], ["N", 3, 4]),
    ("Expand", [2, 2, 3, 4], [1, 3, 1], [2, 2, 3, 4]),
    ("Expand", [1, 3, 5], ["N", 3, 1], ["N", 3, 5]),
])
def test_abs_tile_expand_match_onnxruntime_exactly(op, extra, in_shape, out_shape):
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper
    inits = [] if extra is None else [numpy_helper.from_array(np.array(extra, np.int64), "k")]
    node = helper.make_node(op, ["x"] + (["k"] if extra is not None else []), ["y"])
    proto = _single_op_model(node, inits, in_shape, out_shape).SerializeToString()
    x = np.random.default_rng(0).standard_normal(
        [2 if isinstance(d, str) else d for d in in_shape]).astype(np.float32)
    x.flat[0], x.flat[1], x.flat[2] = -0.0, np.nan, -np.inf
    want = ort.InferenceSession(proto).run(None, {"x": x})[0]
    got = engine.Session(engine.from_onnx(proto), threads=1, allow_nonfinite=True).run(x)[0]
    np.testing.assert_array_equal(got, want)          # NaN where NaN, -inf, +-0 alike
    assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("op, extra, in_shape, says", [
    ("Tile", [2, 1, 1], ["N", 3, 4], "Tile along the symbolic batch"),
    ("Expand", [3, 3, 5], ["N", 3, 1], "Expand of (None, 3, 1) to [3, 3, 5] across the "
                                       "symbolic batch"),
])
def test_tile_and_expand_across_the_symbolic_batch_are_named(op, extra, in_shape, says):
    from onnx import helper
    inits = [numpy_helper.from_array(np.array(extra, np.int64), "k")]
    proto = _single_op_model(helper.make_node(op, ["x", "k"], ["y"]), inits, in_shape,
                             ["N", 3, 5]).SerializeToString()
    with pytest.raises(ConversionError, match=re.escape(says)):
        engine.from_onnx(proto)


@pytest.mark.parametrize("eq, sa, sb, so", [
    ("bhqd,bhkd->bhqk", ["N", 3, 5, 4], ["N", 3, 6, 4], ["N", 3, 5, 6]),
    ("bchw,bkc->bkhw", ["N", 4, 3, 5], ["N", 7, 4], ["N", 7, 3, 5]),
    ("ij,jk->ik", [3, 4], [4, 5], [3, 5]),
])
def test_onnx_einsum_matches_onnxruntime(eq, sa, sb, so):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    g = helper.make_graph(
        [helper.make_node("Einsum", ["a", "b"], ["y"], equation=eq)], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, sa),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, sb)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, so)])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    proto = proto.SerializeToString()
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal([2 if isinstance(d, str) else d for d in s])
             .astype(np.float32) for k, s in (("a", sa), ("b", sb))}
    want = ort.InferenceSession(proto).run(None, feeds)[0]
    got = engine.Session(engine.from_onnx(proto), threads=1).run(feeds)[0]
    _close(got, want, eq, rel=1e-5)


def test_onnx_pad_with_negative_amounts_crops_as_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper
    pads = numpy_helper.from_array(np.array([0, 0, -1, 2, 0, 0, 1, -2], np.int64), "k")
    node = helper.make_node("Pad", ["x", "k"], ["y"], mode="constant")
    proto = _single_op_model(node, [pads], ["N", 3, 6, 7], ["N", 3, 6, 7]).SerializeToString()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 7)).astype(np.float32)
    want = ort.InferenceSession(proto).run(None, {"x": x})[0]
    got = engine.Session(engine.from_onnx(proto), threads=1).run(x)[0]
    np.testing.assert_array_equal(got, want)
