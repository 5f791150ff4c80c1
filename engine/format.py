"""The model file: one safetensors file holding the graph, the weights and metadata.

Layout: a standard safetensors file (8-byte little-endian header length, a JSON header
describing each tensor's dtype, shape and byte range, then the raw little-endian data).
Its ``__metadata__`` string map carries:

    "format": "engine-model"     marks the file as ours (plain weight files are rejected)
    "format_version": "1"        bumped on incompatible change; newer files are refused
    "graph": JSON                inputs, outputs, nodes (op, name, inputs, outputs, attrs)
    "metadata": JSON             labels, preprocessing, provenance

Why safetensors: no code execution on load (unlike pickle), a trivial layout, and files
every ML toolchain reads (the ``safetensors`` package opens ours; tests check that).  The
format is small enough that we read and write it ourselves, keeping NumPy the only
run-time dependency and every error ours.  Before trusting anything we check: the file
size against the header, the
header's JSON structure, every tensor's dtype/shape/byte count, the graph's JSON types,
op names and attribute types, and finally the whole graph with shape inference.  Any
failure raises ``ModelFormatError`` naming the problem; nothing is executed.
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from typing import Union

import numpy as np

from .errors import ArgumentError, EngineError, ModelFormatError
from .ir import Model, Node, Value
from .limits import MAX_DIM, MAX_RANK, get_limits
from .metadata import check_metadata

FORMAT = "engine-model"
VERSION = 1
MAX_HEADER = 100 * 2**20          # bytes of JSON header we are willing to parse
MAX_JSON_DEPTH = 64
MAX_NAME = 4096                   # characters of a tensor name


def to_bytes(model):
    """The bytes of ``model``'s file (what ``save`` writes; ``loads`` reads them back)."""
    if not isinstance(model, Model):
        raise ArgumentError(f"expected a Model, got {type(model).__name__}")
    meta = {
        "format": FORMAT,
        "format_version": str(VERSION),
        "graph": json.dumps(model.graph_dict(), separators=(",", ":")),
        "metadata": json.dumps(model.metadata, separators=(",", ":")),
    }
    return dumps(model.constants, meta)


def save(model: Model, path: Union[str, os.PathLike]) -> None:
    """Write ``model`` to ``path`` (conventionally ``*.safetensors``)."""
    if not isinstance(model, Model):
        raise ArgumentError(f"save expects a Model, got {type(model).__name__}")
    path = _path(path)
    if os.path.isdir(path):
        raise ArgumentError(f"cannot save the model to {path!r}: it is a directory")
    data = to_bytes(model)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)       # never leave a half-written model behind
    except OSError as e:
        raise EngineError(f"cannot write model file {path!r}: {e.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _path(path):
    try:
        return os.fspath(path)
    except TypeError:
        raise ArgumentError(f"a model path must be a str or os.PathLike, got "
                            f"{type(path).__name__}") from None


def dumps(tensors, metadata):
    """safetensors bytes: header length, JSON header (space-padded to 8 bytes), data."""
    header, chunks, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        chunks.append(arr.tobytes())
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def load(path: Union[str, os.PathLike]) -> Model:
    """Read and validate a model file; raises ModelFormatError on any problem."""
    path = _path(path)
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ModelFormatError(f"{path!r} is not a regular file")
            os.set_blocking(fd, True)
            cap = get_limits().max_buffer_bytes
            if info.st_size > cap:
                raise ModelFormatError(f"{path!r} has {info.st_size} bytes, more than the "
                                       f"{cap} a model file may have (engine.set_limits)")
            data = f.read(info.st_size + 1)
    except OSError as e:
        raise ModelFormatError(f"cannot read model file {path!r}: {e.strerror}") from None
    return loads(data, source=path)


def loads(data, source="<bytes>"):
    """Parse a model from the bytes of a file."""
    header, body = _split(data, source)
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFormatError(f"{source}: a safetensors file without an engine graph (plain "
                               f"weights?); convert a checkpoint with 'engine convert'")
    version = meta.get("format_version")
    if version != str(VERSION):
        raise ModelFormatError(f"{source}: model format version {version!r}; this engine reads "
                               f"version {VERSION} (upgrade engine for newer files)")
    constants = _tensors(header, body, source)
    graph = _json(meta.get("graph"), "graph", source)
    extra = _json(meta.get("metadata", "{}"), "metadata", source)
    try:
        check_metadata(extra)
    except ValueError as e:
        raise ModelFormatError(f"{source}: {e}") from None
    try:
        inputs, outputs, nodes, names = _graph(graph)
        if sorted(names) != sorted(constants):
            raise ModelFormatError(
                f"constants listed in the graph and tensors stored differ: "
                f"missing {sorted(set(names) - set(constants))[:5]}, "
                f"unlisted {sorted(set(constants) - set(names))[:5]}")
        return Model(inputs, outputs, nodes, constants, extra)
    except ModelFormatError as e:
        raise ModelFormatError(f"{source}: {e}") from None
    except EngineError as e:
        raise ModelFormatError(f"{source}: invalid graph: {e}") from None
    except Exception as e:  # hostile attribute values can break any shape function
        raise ModelFormatError(f"{source}: invalid graph ({type(e).__name__}: {e})") from None


# -- container ------------------------------------------------------------------------------
_DTYPES = {"F32": np.float32}


def _split(data, source):
    if len(data) < 8:
        other = _other_format(data)
        raise ModelFormatError(f"{source}: file too short ({len(data)} bytes) to be a model"
                               + (f"; {other}" if other else ""))
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        other = _other_format(data)
        if other:
            raise ModelFormatError(f"{source}: not an engine model file but {other}")
        raise ModelFormatError(f"{source}: header claims {n} bytes but the file has "
                               f"{len(data) - 8} after the length field (truncated or corrupt)")
    try:
        header = _parse_json(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelFormatError(f"{source}: header is not valid JSON ({_why(e)})") from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"{source}: header must be a JSON object")
    meta = header.get("__metadata__")
    if meta is not None and (not isinstance(meta, dict)
                             or not all(isinstance(v, str) for v in meta.values())):
        raise ModelFormatError(f"{source}: __metadata__ must map strings to strings")
    return header, memoryview(data)[8 + n:]


def _other_format(data):
    """What a file that is no safetensors file looks like it is, with the command that
    converts it (None: nothing recognisable)."""
    head = bytes(data[:64])
    if head[:4] == b"PK\x03\x04":
        return _zip_kind(data) or (
            "a ZIP archive: a PyTorch checkpoint or TorchScript file?  Convert it: "
            "engine convert FILE --arch NAME -o model.safetensors (a state dict), or "
            "engine convert FILE --input-shape 1,3,224,224 -o model.safetensors "
            "(TorchScript)")
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy array (an input, not a model?)"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return ("a Python pickle (a torch.save file?), which engine never unpickles; "
                "convert a state dict with: engine convert FILE --arch NAME -o "
                "model.safetensors")
    # ONNX ModelProto: field 1 (ir_version, a small varint) first, then producer, graph,
    # opset ... (length-delimited fields 2 to 8 or 20)
    if len(head) > 2 and head[0] == 0x08 and head[1] < 0x80 and \
            head[2] in (0x12, 0x1a, 0x22, 0x2a, 0x32, 0x3a, 0x42, 0xa2):
        return ("an ONNX model: import it with engine convert FILE.onnx -o model.safetensors "
                "(or engine.from_onnx)")
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "a text file"
    return None


def _zip_kind(data):
    """A torch.save or torch.jit.save archive told apart by its entries, and a pickled
    module from a state dict by the names its data.pkl refers to (read as opcodes, never
    unpickled); None when neither."""
    import io
    import pickletools
    import zipfile
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()[:10000]
            if any("/code/" in n for n in names):
                return ("a TorchScript archive (torch.jit.save): convert it with engine "
                        "convert FILE --input-shape 1,3,224,224 -o model.safetensors")
            pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if pkl is None:
                return None
            with z.open(pkl) as f:
                raw = f.read(1 << 20)           # what names classes comes first
    except Exception:       # noqa: BLE001  (a hostile archive breaks zipfile in many ways
        return None         # (OverflowError, zlib.error, ...); the hint is only a hint)
    strings = []
    try:
        for op, arg, _ in pickletools.genops(raw):
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:       # noqa: BLE001  (a truncated or odd pickle: use what was read)
        pass
    if any(t.startswith("torch.nn.modules") or t == "__main__" for t in strings):
        return ("a pickled whole module (torch.save(model)), which engine never unpickles: "
                "save model.state_dict() instead and convert that with engine convert FILE "
                "--module package.module:Class --input-shape 1,3,224,224 (or --arch NAME) "
                "-o model.safetensors")
    return ("a PyTorch checkpoint (torch.save): convert it with engine convert FILE --arch "
            "NAME -o model.safetensors, or --module package.module:Class --input-shape "
            "1,3,224,224 for your own class")


def _tensors(header, body, source):
    """Every entry checked (types, counts in Python integers, byte ranges inside the data
    and disjoint) before any tensor is copied out of the file."""
    entries = []
    for name, info in header.items():
        where = f"{source}: tensor {name!r}"
        if not name or len(name) > MAX_NAME:
            raise ModelFormatError(f"{where}: names must be 1 to {MAX_NAME} characters")
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ModelFormatError(f"{where}: entry must have exactly dtype, shape and "
                                   f"data_offsets")
        dtype = info["dtype"]
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ModelFormatError(f"{where}: dtype {dtype!r} is not supported (F32)")
        shape, offs = info["shape"], info["data_offsets"]
        if (not isinstance(shape, list) or len(shape) > MAX_RANK
                or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape)):
            raise ModelFormatError(f"{where}: invalid shape {_short(shape)} (at most {MAX_RANK} "
                                   f"dims, each an int from 0 to {MAX_DIM})")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(type(o) is int for o in offs) or not 0 <= offs[0] <= offs[1] <= len(body)):
            raise ModelFormatError(f"{where}: byte range {_short(offs)} lies outside the file's "
                                   f"{len(body)} data bytes (truncated or corrupt)")
        nbytes = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize   # exact, cannot wrap
        if offs[1] - offs[0] != nbytes:
            raise ModelFormatError(f"{where}: shape {shape} needs {nbytes} bytes, the file "
                                   f"gives {offs[1] - offs[0]}")
        entries.append((offs[0], offs[1], name, dtype, shape))
    entries.sort()
    for (a0, a1, an, _, _), (b0, b1, bn, _, _) in zip(entries, entries[1:]):
        if b0 < a1:
            raise ModelFormatError(f"{source}: tensors {an!r} and {bn!r} overlap")
    constants = {}
    for start, end, name, dtype, shape in entries:
        arr = np.frombuffer(body[start:end], dtype=_DTYPES[dtype]).reshape(shape)
        constants[name] = arr.astype(np.float32, copy=True)
    return constants


def _json(text, what, source):
    if not isinstance(text, str):
        raise ModelFormatError(f"{source}: {what} is missing")
    try:
        value = _parse_json(text)
    except (ValueError, RecursionError) as e:
        raise ModelFormatError(f"{source}: {what} is not valid JSON ({_why(e)})") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ModelFormatError(f"{source}: {what} is nested deeper than {MAX_JSON_DEPTH}")
    return value


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise _DuplicateKey(f"key {k!r} appears twice")
        obj[k] = v
    return obj


def _parse_json(text):
    """json.loads refusing duplicate keys (the last would silently win)."""
    return json.loads(text, object_pairs_hook=_unique_keys)


def _why(e):
    return str(e) if isinstance(e, _DuplicateKey) else e.__class__.__name__


def _short(v):
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _depth(v, d=0):
    if d > MAX_JSON_DEPTH:
        return d
    if isinstance(v, dict):
        return max([_depth(x, d + 1) for x in v.values()] or [d + 1])
    if isinstance(v, list):
        return max([_depth(x, d + 1) for x in v] or [d + 1])
    return d


# -- graph ----------------------------------------------------------------------------------
def _expect(cond, msg):
    if not cond:
        raise ModelFormatError(msg)


def _str_list(v, what):
    _expect(isinstance(v, list) and all(isinstance(s, str) for s in v),
            f"{what} must be a list of strings")
    return v


def _graph(g):
    _expect(isinstance(g, dict), "graph must be a JSON object")
    for key in ("inputs", "outputs", "nodes", "constants"):
        _expect(key in g, f"graph lacks {key!r}")
    inputs = []
    _expect(isinstance(g["inputs"], list) and g["inputs"], "graph inputs must be a non-empty list")
    for v in g["inputs"]:
        _expect(isinstance(v, dict) and isinstance(v.get("name"), str)
                and isinstance(v.get("shape"), list) and len(v["shape"]) <= MAX_RANK
                and all(d is None or (type(d) is int and 1 <= d <= MAX_DIM) for d in v["shape"])
                and v.get("dtype", "float32") == "float32",
                f"graph input {_short(v)} must have a name, a shape of at most {MAX_RANK} "
                f"dims (ints from 1 to {MAX_DIM}, or null for the batch) and dtype float32")
        inputs.append(Value(v["name"], tuple(v["shape"]), "float32"))
    outputs = _str_list(g["outputs"], "graph outputs")
    _expect(isinstance(g["nodes"], list), "graph nodes must be a list")
    nodes = []
    for i, n in enumerate(g["nodes"]):
        _expect(isinstance(n, dict), f"node #{i} must be an object")
        _expect(isinstance(n.get("op"), str) and isinstance(n.get("name"), str),
                f"node #{i} needs string 'op' and 'name'")
        attrs = n.get("attrs", {})
        _expect(isinstance(attrs, dict), f"node {n['name']!r}: attrs must be an object")
        nodes.append(Node(n["op"], n["name"], _str_list(n.get("inputs"), f"node {n['name']!r} inputs"),
                          _str_list(n.get("outputs"), f"node {n['name']!r} outputs"), attrs))
    return inputs, outputs, nodes, _str_list(g["constants"], "graph constants")
