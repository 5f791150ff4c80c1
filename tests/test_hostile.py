"""Hostile models and arguments: every reproducer of the hardening issue is a clean engine
error (engine.limits bounds geometry before any plan or kernel exists), never a crash, a
hang, a giant allocation or a bare ValueError / KeyError / TypeError."""

import json
import struct

import numpy as np
import pytest

import engine
from engine.format import loads
from engine.limits import MAX_DIM


def _x():
    b = engine.Builder()
    return b, b.input("x", (None, 3, 8, 8))


def _save_load_run(tmp_path, model):
    """What a user does with a downloaded file: load it, prepare it, run it."""
    path = tmp_path / "m.safetensors"
    engine.save(model, path)
    s = engine.Session(str(path), threads=1)
    return s.run(np.ones((1, 3, 8, 8), np.float32))


def _file_with_graph_edit(tmp_path, build, edit):
    """A saved model whose graph JSON is edited in the file (as an attacker would), skipping
    the Builder's checks."""
    b, x = _x()
    build(b, x)
    path = tmp_path / "m.safetensors"
    engine.save(b.build(), path)
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    graph = json.loads(header["__metadata__"]["graph"])
    edit(graph)
    header["__metadata__"]["graph"] = json.dumps(graph)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + raw[8 + n:]


def _set_attrs(**attrs):
    def edit(graph):
        graph["nodes"][0]["attrs"].update(attrs)
    return edit


# -- the geometry reproducers --------------------------------------------------------

def test_conv_whose_padded_size_wraps_is_refused(tmp_path):
    # Used to SIGSEGV: the padded size wrapped in int64 and ek_im2col_pad overflowed the heap.
    b, x = _x()
    with pytest.raises(engine.LimitError, match="padded input size"):
        b.conv2d(x, np.ones((4, 3, 3, 3), np.float32), stride=2**31 - 1, padding=2**30)


def test_conv_geometry_edited_into_a_file_is_a_format_error(tmp_path):
    data = _file_with_graph_edit(
        tmp_path, lambda b, x: b.output(b.conv2d(x, np.ones((4, 3, 3, 3), np.float32)), "y"),
        _set_attrs(stride=[2**31 - 1, 2**31 - 1], padding=[[2**30, 2**30], [2**30, 2**30]]))
    with pytest.raises(engine.ModelFormatError, match="padded input size"):
        loads(data)
    # Within the extent limit, the zero-padded copy the kernels would make is over the cap.
    data = _file_with_graph_edit(
        tmp_path, lambda b, x: b.output(b.conv2d(x, np.ones((4, 3, 3, 3), np.float32)), "y"),
        _set_attrs(stride=[2**30, 2**30], padding=[[2**29, 2**29], [2**29, 2**29]]))
    with pytest.raises(engine.ModelFormatError, match="zero-padded input copy"):
        loads(data)


def test_max_pool_with_a_huge_window_finishes_and_matches_the_reference():
    # Used to loop for ever in C with the GIL released (every tap of a 2**30 window).
    b, x = _x()
    b.output(b.max_pool2d(x, 2**30, stride=2**30, padding=2**29), "y")
    m = b.build()
    xin = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    y, = engine.Session(m, threads=1).run(xin)
    assert y.shape == (1, 3, 1, 1)
    assert np.array_equal(y[:, :, 0, 0], xin.max(axis=(2, 3)))


@pytest.mark.parametrize("build", [
    lambda b, x: b.conv2d(x, np.ones((4, 3, 3, 3), np.float32), stride=(1, 2**31)),
    lambda b, x: b.conv_transpose2d(x, np.ones((3, 4, 3, 3), np.float32), stride=2**30,
                                    padding=2**31, output_padding=2**30 - 1),
    lambda b, x: b.conv_transpose2d(x, np.ones((3, 4, 3, 3), np.float32), stride=2**30,
                                    padding=0, output_padding=2**30 - 1),
    lambda b, x: b.interpolate(x, size=(2**31 - 1, 1)),
    lambda b, x: b.interpolate(x, size=(2**31, 1)),
    lambda b, x: b.avg_pool2d(x, 3, stride=1, padding=MAX_DIM),
    lambda b, x: b.pad(x, (2**31 - 1, 2**31 - 1)),
], ids=["conv-stride-2**31", "conv_transpose-padding-2**31", "conv_transpose-uncropped",
        "interpolate-2**31-1", "interpolate-2**31", "avg_pool-padding", "pad"])
def test_extreme_attributes_are_graph_errors_naming_the_node(build):
    b, x = _x()
    with pytest.raises(engine.GraphError, match=r"node '\w+' \(\w+\)"):
        b.output(build(b, x), "y")


def test_interpolate_refused_before_any_index_table_is_allocated(tmp_path):
    data = _file_with_graph_edit(
        tmp_path, lambda b, x: b.output(b.interpolate(x, size=(16, 16)), "y"),
        _set_attrs(size=[2**31 - 1, 1]))
    with pytest.raises(engine.ModelFormatError, match="GiB"):
        loads(data)


def test_the_byte_cap_is_configurable():
    b, x = _x()
    y = b.interpolate(x, size=(512, 512))               # 3 MiB per image
    b.output(y, "y")
    m = b.build()
    with engine.limits.override(max_buffer_bytes=2**20):
        with pytest.raises(engine.LimitError, match="engine.set_limits"):
            engine.Session(m, threads=1).prepare(1)
        with pytest.raises(engine.LimitError):
            m.infer_shapes({"x": (1, 3, 8, 8)})
    assert engine.get_limits().max_buffer_bytes == engine.limits.DEFAULT_MAX_BUFFER_BYTES
    engine.Session(m, threads=1).prepare(1)
    with pytest.raises(engine.LimitError, match="positive"):
        engine.set_limits(max_buffer_bytes=0)


def test_batch_beyond_the_cap_is_refused_before_allocating():
    b, x = _x()
    b.output(b.relu(x), "y")
    s = engine.Session(b.build(), threads=1)
    with pytest.raises(engine.LimitError, match="batch_size 100000000"):
        s.prepare(100_000_000)


# -- the file-format reproducers -----------------------------------------------------

def _tensor_edit(path_bytes, edit):
    n = struct.unpack("<Q", path_bytes[:8])[0]
    header = json.loads(path_bytes[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    edit(header[name], header)
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + path_bytes[8 + n:]


@pytest.fixture(scope="module")
def default_bytes():
    from importlib.resources import files
    return (files("engine") / "data" / "default.safetensors").read_bytes()


@pytest.mark.parametrize("edit, message", [
    (lambda t, h: t.update(shape=[2**32, 2**32], data_offsets=[0, 0]), "invalid shape"),
    (lambda t, h: t.update(shape=[2**16] * 4, data_offsets=[0, 0]), "needs"),
    (lambda t, h: t.update(dtype=["F32"]), "dtype"),
    (lambda t, h: t.update(dtype={"F32": 1}), "dtype"),
    (lambda t, h: t.update(shape="4"), "invalid shape"),
    (lambda t, h: t.update(data_offsets=[0, 2**70]), "outside"),
    (lambda t, h: h["__metadata__"].update(metadata=json.dumps({"labels": 5})), "labels"),
    (lambda t, h: h["__metadata__"].update(
        metadata=json.dumps({"preprocessing": {"std": [0, 0, 0]}})), "std"),
    (lambda t, h: h["__metadata__"].update(
        metadata=json.dumps({"preprocessing": {"input_size": [2**40, 1]}})), "input_size"),
], ids=["count-wraps", "count-huge", "dtype-list", "dtype-dict", "shape-string",
        "offset-huge", "labels-int", "std-zero", "input-size-huge"])
def test_tensor_table_and_metadata_edits_are_format_errors(default_bytes, edit, message):
    with pytest.raises(engine.ModelFormatError, match=message):
        loads(_tensor_edit(default_bytes, edit))


def test_duplicate_json_keys_are_refused(default_bytes):
    n = struct.unpack("<Q", default_bytes[:8])[0]
    text = default_bytes[8:8 + n].decode().replace("{", '{"a":1,"a":2,', 1).encode()
    with pytest.raises(engine.ModelFormatError, match="appears twice"):
        loads(struct.pack("<Q", len(text)) + text + default_bytes[8 + n:])


def test_graph_output_naming_a_constant(tmp_path):
    data = _file_with_graph_edit(
        tmp_path, lambda b, x: b.output(b.conv2d(x, np.ones((4, 3, 3, 3), np.float32),
                                                 np.ones(4, np.float32)), "y"),
        lambda g: g.update(outputs=[g["constants"][0]]))
    with pytest.raises(engine.ModelFormatError, match="names a constant"):
        loads(data)


def test_run_asking_for_a_constant_is_an_input_error():
    b, x = _x()
    b.output(b.conv2d(x, np.ones((4, 3, 3, 3), np.float32), np.ones(4, np.float32)), "y")
    m = b.build()
    s = engine.Session(m, threads=1)
    with pytest.raises(engine.InputError, match="constants"):
        s.run(np.ones((1, 3, 8, 8), np.float32), outputs=[sorted(m.constants)[0]])


def test_input_dims_beyond_the_limit_are_format_errors(tmp_path):
    data = _file_with_graph_edit(
        tmp_path, lambda b, x: b.output(b.relu(x), "y"),
        lambda g: g["inputs"][0].update(shape=[None, 3, 2**31, 8]))
    with pytest.raises(engine.ModelFormatError, match="graph input"):
        loads(data)


# -- API arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [0, -1, 2.5, "1", True, None])
def test_prepare_and_memory_report_check_the_batch(batch):
    b, x = _x()
    b.output(b.relu(x), "y")
    s = engine.Session(b.build(), threads=1)
    for call in (s.prepare, s.memory_report):
        with pytest.raises(engine.ArgumentError, match="batch_size"):
            call(batch)


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"threads": 100_000}, {"threads": 1.5},
                                    {"max_concurrent": 0}, {"executor": "gpu"}])
def test_session_arguments_are_engine_errors(kwargs):
    b, x = _x()
    b.output(b.relu(x), "y")
    with pytest.raises(engine.ArgumentError):
        engine.Session(b.build(), **kwargs)
    with pytest.raises(ValueError):          # ArgumentError is a ValueError too
        engine.Session(b.build(), **kwargs)


def test_session_of_something_else_is_an_argument_error():
    with pytest.raises(engine.ArgumentError, match="Model or a path"):
        engine.Session(42)


def test_attribute_values_are_bounded():
    b, x = _x()
    with pytest.raises(engine.LimitError, match="attribute 'stride'"):
        b.max_pool2d(x, 2, stride=2**40)


def test_load_refuses_fifos_and_devices_without_blocking(tmp_path):
    import os
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)                          # opening it for reading used to wait for ever
    for path in (fifo, "/dev/zero"):
        with pytest.raises(engine.ModelFormatError, match="not a regular file"):
            engine.load(path)


def test_model_file_without_inputs_is_refused(tmp_path):
    data = _file_with_graph_edit(tmp_path, lambda b, x: b.output(b.relu(x), "y"),
                                 lambda g: g.update(inputs=[]))
    with pytest.raises(engine.ModelFormatError, match="inputs"):
        loads(data)


@pytest.mark.parametrize("num_classes", [-5, 0, 2.5, 10**9])
def test_zoo_num_classes_is_checked(num_classes):
    import engine.zoo
    with pytest.raises(engine.GraphError, match="num_classes"):
        engine.zoo.get("lenet5", num_classes=num_classes)


def test_pooling_an_empty_spatial_dim_is_a_graph_error():
    # A file can make a split produce an empty piece; pooling it must not reach the kernel.
    b = engine.Builder()
    x = b.input("x", (None, 3, 8, 6))
    try:
        parts = b.split(x, [6, 0], dim=3)
    except engine.GraphError:
        pytest.skip("the Builder refuses empty split sections")
    with pytest.raises(engine.GraphError, match="empty"):
        b.max_pool2d(parts[1], 2, padding=1)


def test_ceil_mode_window_span_is_bounded():
    b = engine.Builder()
    x = b.input("x", (None, 1, 2**31 - 1))
    with pytest.raises(engine.LimitError, match="window span"):
        b.max_pool1d(x, 2**30, stride=2**30, ceil_mode=True)


def test_outputs_may_be_any_iterable_of_names_but_nothing_else():
    b, x = _x()
    b.output(b.relu(x), "y")
    s = engine.Session(b.build(), threads=1)
    xin = np.ones((1, 3, 8, 8), np.float32)
    assert s.run(xin, outputs={"y"})[0].shape == (1, 3, 8, 8)
    assert s.run(xin, outputs="y")[0].shape == (1, 3, 8, 8)
    for bad in (5, [], [["y"]]):
        with pytest.raises(engine.ArgumentError, match="outputs"):
            s.run(xin, outputs=bad)


def test_ragged_weights_are_a_graph_error():
    b, x = _x()
    with pytest.raises(engine.GraphError, match="real numbers"):
        b.conv2d(x, [[1.0, 2.0], [3.0]])


def test_pooling_whose_windows_cover_a_large_input_many_times_is_refused():
    # Found by tools/fuzz.py (100,000-case run): a 3-D max pool with windows far wider than
    # a 65536-wide input, stride 1: every output visits the whole row (~3e12 taps).
    b = engine.Builder()
    x = b.input("x", (None, 4, 1, 7, 65536))
    with pytest.raises(engine.LimitError, match="window taps"):
        b.max_pool3d(x, (524288, 8192, 8388608), stride=(524288, 1, 1),
                     padding=(262144, 4096, 4194304), ceil_mode=True)
