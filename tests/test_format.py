"""Model files: round trip, interoperability, and no crash or hang on hostile bytes."""

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import engine
from engine.format import FORMAT, dumps, loads
from helpers import rng_array


def small_model():
    rng = np.random.default_rng(0)
    b = engine.Builder()
    x = b.input("x", (None, 1, 8, 8))
    y = b.relu(b.conv2d(x, rng_array(rng, (4, 1, 3, 3)), rng_array(rng, 4), padding=1))
    y = b.max_pool2d(y, 2)
    y = b.linear(b.flatten(y, 1), rng_array(rng, (3, 64)), rng_array(rng, 3))
    b.output(b.softmax(y, 1), "probs")
    return b.build(metadata={"labels": ["a", "b", "c"], "preprocessing": {"mean": [0.5]}})


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.safetensors"
    engine.save(small_model(), path)
    return path.read_bytes()


def test_round_trip(tmp_path):
    m = small_model()
    p = tmp_path / "m.safetensors"
    engine.save(m, p)
    m2 = engine.load(p)
    assert m2.metadata == m.metadata
    assert [n.to_dict() for n in m2.nodes] == [n.to_dict() for n in m.nodes]
    x = rng_array(np.random.default_rng(1), (2, 1, 8, 8))
    a = engine.Session(m, backend="reference").run(x)[0]
    b = engine.Session(m2, backend="reference").run(x)[0]
    assert np.array_equal(a, b)


def test_readable_by_the_safetensors_library(tmp_path):
    st_np = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open
    m = small_model()
    p = tmp_path / "m.safetensors"
    engine.save(m, p)
    tensors = st_np.load_file(str(p))
    assert sorted(tensors) == sorted(m.constants)
    for k, v in tensors.items():
        assert np.array_equal(v, m.constants[k])
    with safe_open(str(p), framework="numpy") as f:
        assert f.metadata()["format"] == FORMAT


def test_plain_safetensors_weights_are_rejected_clearly():
    data = dumps({"w": np.zeros(3, np.float32)}, {})
    with pytest.raises(engine.ModelFormatError, match="without an engine graph"):
        loads(data)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(engine.ModelFormatError, match="cannot read"):
        engine.load(tmp_path / "nope.safetensors")
    with pytest.raises(engine.ModelFormatError):
        engine.load(tmp_path)


def test_every_truncation_is_a_clean_error(model_bytes):
    for cut in sorted(set(range(0, len(model_bytes), max(1, len(model_bytes) // 300)))):
        with pytest.raises(engine.ModelFormatError):
            loads(model_bytes[:cut])


@settings(max_examples=200)
@given(st.data())
def test_random_corruption_never_crashes(model_bytes, data):
    buf = bytearray(model_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    try:
        m = loads(bytes(buf))
    except engine.ModelFormatError:
        return
    # Corruption in weight bytes yields a valid model with other numbers: fine, not a crash.
    assert isinstance(m, engine.Model)


def rewrite(model_bytes, edit_header=None, edit_graph=None, body=None):
    (n,) = struct.unpack("<Q", model_bytes[:8])
    header = json.loads(model_bytes[8:8 + n])
    if edit_graph:
        g = json.loads(header["__metadata__"]["graph"])
        edit_graph(g)
        header["__metadata__"]["graph"] = json.dumps(g)
    if edit_header:
        edit_header(header)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + (model_bytes[8 + n:] if body is None else body)


def _first_tensor(h):
    return next(k for k in h if k != "__metadata__")


HOSTILE = {
    "huge header length": lambda b: struct.pack("<Q", 2**62) + b[8:],
    "header not json": lambda b: struct.pack("<Q", 5) + b"{{{{{" + b[13:],
    "header is a list": lambda b: struct.pack("<Q", 2) + b"[]",
    "unsupported dtype": lambda b: rewrite(b, lambda h: h[_first_tensor(h)].update(dtype="F64")),
    "object dtype": lambda b: rewrite(b, lambda h: h[_first_tensor(h)].update(dtype="O")),
    "offsets past the end": lambda b: rewrite(
        b, lambda h: h[_first_tensor(h)].update(data_offsets=[0, 10**12])),
    "negative shape": lambda b: rewrite(b, lambda h: h[_first_tensor(h)].update(shape=[-1, 4])),
    "shape/bytes mismatch": lambda b: rewrite(b, lambda h: h[_first_tensor(h)].update(shape=[2])),
    "overlapping tensors": lambda b: rewrite(b, lambda h: [
        h[k].update(data_offsets=[0, h[k]["data_offsets"][1] - h[k]["data_offsets"][0]])
        for k in h if k != "__metadata__"]),
    "newer version": lambda b: rewrite(b, lambda h: h["__metadata__"].update(format_version="99")),
    "metadata not strings": lambda b: rewrite(b, lambda h: h.update(__metadata__={"format": 1})),
    "graph not json": lambda b: rewrite(b, lambda h: h["__metadata__"].update(graph="{nope")),
    "deeply nested graph": lambda b: rewrite(
        b, lambda h: h["__metadata__"].update(graph="[" * 5000 + "]" * 5000)),
    "unknown op": lambda b: rewrite(b, edit_graph=lambda g: g["nodes"][0].update(op="os.system")),
    "attribute of wrong type": lambda b: rewrite(
        b, edit_graph=lambda g: g["nodes"][0]["attrs"].update(stride="__import__('os')")),
    "attributes missing": lambda b: rewrite(b, edit_graph=lambda g: g["nodes"][0].update(attrs={})),
    "activation garbage": lambda b: rewrite(
        b, edit_graph=lambda g: g["nodes"][0]["attrs"].update(activation=[1, 2])),
    "cycle": lambda b: rewrite(b, edit_graph=lambda g: g["nodes"][0].update(
        inputs=[g["nodes"][-1]["outputs"][0]] + g["nodes"][0]["inputs"][1:])),
    "undefined input": lambda b: rewrite(
        b, edit_graph=lambda g: g["nodes"][1].update(inputs=["ghost"])),
    "duplicate output name": lambda b: rewrite(
        b, edit_graph=lambda g: g["nodes"][1].update(outputs=g["nodes"][0]["outputs"])),
    "missing constant": lambda b: rewrite(b, edit_graph=lambda g: g["constants"].pop()),
    "output not produced": lambda b: rewrite(b, edit_graph=lambda g: g.update(outputs=["zzz"])),
    "input shape garbage": lambda b: rewrite(
        b, edit_graph=lambda g: g["inputs"][0].update(shape=["a", {}])),
    "channels mismatch": lambda b: rewrite(
        b, edit_graph=lambda g: g["inputs"][0].update(shape=[None, 3, 8, 8])),
    "nodes not a list": lambda b: rewrite(b, edit_graph=lambda g: g.update(nodes=7)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_raise_clean_errors(model_bytes, name):
    with pytest.raises(engine.ModelFormatError) as err:
        loads(HOSTILE[name](model_bytes), source="evil.safetensors")
    assert "evil.safetensors" in str(err.value)


def test_load_error_names_the_layer(model_bytes):
    bad = HOSTILE["channels mismatch"](model_bytes)
    with pytest.raises(engine.ModelFormatError, match="conv"):
        loads(bad)
