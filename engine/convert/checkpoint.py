"""Reading PyTorch checkpoints safely: state dicts only, never arbitrary pickled objects.

``torch.load(path, map_location="cpu", weights_only=True)`` restricts unpickling to
tensors, containers and primitive types, so a hostile or unexpected file cannot run code.
It reads both the zip format (``torch.save`` since 1.6) and the legacy non-zip format.
We then accept:

- a plain state dict ``{name: tensor}``,
- a training checkpoint nesting it under ``"state_dict"``, ``"model_state_dict"``,
  ``"model"``, ``"net"`` or ``"module"`` (other entries such as the optimizer are ignored),
- names prefixed with ``module.`` (``nn.DataParallel``) or ``_orig_mod.`` (``torch.compile``),
  which are stripped.

Anything else (a whole pickled ``nn.Module``, a list, a bare tensor) raises
ConversionError saying what the file holds and how to save a state dict instead.

Size guards.  A checkpoint is untrusted input, and a small file can ask for a lot of
memory: a zip member compressed 1000:1 (torch inflates it whole), a storage declared far
larger than the file holds or placed on the ``meta`` device (no bytes in the file, but
allocated in full on the CPU), many tensors viewing one storage or a tensor of stride 0
(each becomes its own array).  So, before torch reads any tensor data
(``load_torch_state_dict``):

1. ``check_checkpoint_file``: a regular, non-empty file; a zip archive (torch.save since
   1.6, TorchScript) whose members declare at most ``MAX_INFLATION`` times the file's
   size (+ ``SLACK``) in all, so nothing compressed inflates far (torch stores members
   uncompressed: a legitimate archive's members add up to less than the file); a legacy
   (non-zip) file of at most the byte cap;
2. the pickle is read with every global stubbed (nothing imported or run) to list the
   storages it declares: each must be in the archive, and together they must fit in
   ``MAX_INFLATION`` times the file's size and the byte cap;
3. torch loads the file with ``map_location="meta"`` (its own parser; no storage
   allocated, no data read): every tensor must be dense, the state dict's of real
   numbers, and all tensors together, and the state dict as the float32 arrays it
   becomes, must fit in ``MAX_GROWTH`` times the file's size (float16 doubles; tied
   weights repeat) and the byte cap (``engine.get_limits().max_buffer_bytes``);
4. only then does torch load it for real, still with ``weights_only=True``.
"""

import io
import os
import pickle
import re
import stat
import struct
import warnings
import zipfile

import numpy as np

from ..errors import ConversionError
from ..limits import LimitError, check_buffer

MAX_INFLATION = 2          # declared storage bytes per byte of file (zip members, storages)
MAX_GROWTH = 4             # bytes of float32 arrays per byte of file
SLACK = 16 * 2**20         # bytes allowed on top of those ratios (tiny files)
MAX_PICKLE_BYTES = 8 * 2**20   # a pickle (data.pkl): ~100 bytes per tensor in a state dict;
                               # unpickling costs ~50 bytes of Python objects per byte

# What torch.load raises for corrupt, truncated or hostile files (besides UnpicklingError);
# torch is a third-party library, so its failure types are listed, not guessed at.
_TORCH_LOAD_ERRORS = (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError,
                      IndexError, AttributeError, AssertionError, NotImplementedError,
                      OverflowError, MemoryError, UnicodeDecodeError, struct.error,
                      zipfile.BadZipFile)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError,
               struct.error, NotImplementedError, UnicodeDecodeError)

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
PREFIXES = ("module.", "_orig_mod.")

_HOW = ("save the weights with torch.save(model.state_dict(), path), then convert with "
        "--arch NAME or --module pkg.mod:Class")


def is_torchscript(path):
    """True for a TorchScript archive (torch.jit.save): a zip with code/ and constants.pkl."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except _ZIP_ERRORS:
        return False
    return any(n.endswith("constants.pkl") for n in names) or \
        any("/code/" in n for n in names)


def _mib(n):
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def _over_cap(path, what, nbytes):
    """engine's byte cap (engine.limits.check_buffer), as a ConversionError."""
    try:
        check_buffer(nbytes, f"{path}: {what}", itemsize=1)
    except LimitError as e:
        raise ConversionError(str(e)) from None


def _is_zip(path):
    """zipfile.is_zipfile, which raises BadZipFile for some corrupt archives (its own
    "not a zip" is False): ConversionError for those and for unreadable files."""
    try:
        return zipfile.is_zipfile(path)
    except OSError as e:
        raise ConversionError(f"cannot read checkpoint {path!r}: {e.strerror or e}") from None
    except _ZIP_ERRORS as e:
        raise ConversionError(f"{path}: not a readable zip archive ({e})") from None


def check_checkpoint_file(path):
    """The file's size in bytes, after the size guard (module docstring, step 1) that runs
    before torch reads anything: ConversionError for a missing, empty or non-regular
    file, a zip archive whose members declare more than ``MAX_INFLATION`` times the file's
    size (compressed, or lying) or more than the byte cap, a legacy file above the cap."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConversionError(f"checkpoint {path!r} does not exist") from None
    except OSError as e:
        raise ConversionError(f"cannot read checkpoint {path!r}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConversionError(f"checkpoint {path!r} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ConversionError(f"checkpoint {path!r} is not a regular file (a pipe or a "
                              f"device?)")
    size = st.st_size
    if size == 0:
        raise ConversionError(f"{path}: empty file, not a PyTorch checkpoint")
    if not _is_zip(path):                      # legacy torch.save format: data stored raw
        _over_cap(path, "a legacy (non-zip) checkpoint", size)
        return size
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except _ZIP_ERRORS as e:
        raise ConversionError(f"{path}: not a readable zip archive ({e})") from None
    declared = 0
    for info in infos:
        if info.file_size < 0 or info.header_offset + info.compress_size > size:
            raise ConversionError(f"{path}: zip member {_short_repr(info.filename)} lies "
                                  f"outside the file (truncated or corrupt)")
        if info.filename.endswith(".pkl") and info.file_size > MAX_PICKLE_BYTES:
            _big_pickle(path, info.file_size)
        declared += info.file_size
    allowed = MAX_INFLATION * size + SLACK
    if declared > allowed:
        raise ConversionError(
            f"{path}: its zip members declare {declared} bytes ({_mib(declared)}) in a file "
            f"of {size} bytes ({_mib(size)}): compressed or corrupt, refused before inflating "
            f"(torch.save stores tensors uncompressed; save the checkpoint again with "
            f"torch.save)")
    _over_cap(path, "its zip content", declared)
    return size


def _big_pickle(path, nbytes):
    size = f"has {nbytes} bytes, more than" if nbytes else "is larger than"
    raise ConversionError(f"{path}: its pickle (the structure around the tensors) {size} "
                          f"the {MAX_PICKLE_BYTES} bytes engine reads (a state dict needs "
                          f"about 100 bytes per tensor); refused before unpickling")


def _torch_load(path, location):
    import torch
    try:
        return torch.load(path, map_location=location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConversionError(_explain_unpickling(path, str(e))) from None
    except _TORCH_LOAD_ERRORS as e:
        text = str(e).strip()
        msg = text.splitlines()[0][:300] if text else type(e).__name__
        if "weights_only" in msg or "Unsupported global" in text:
            raise ConversionError(_explain_unpickling(path, text)) from None
        if "Quantized" in text or "quantized" in text:
            raise ConversionError(f"{path}: holds quantized tensors, which engine does not "
                                  f"convert; save the float model's state dict") from None
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({msg})") from None


class _Stub(dict):
    """Whatever a pickle names (a class, a function) while its storages are listed: never
    the real thing, so nothing is imported or run; accepts every way a pickle builds."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return _Stub()

    def __setstate__(self, state):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class _StorageLister(pickle.Unpickler):
    """Reads a torch pickle with every global replaced by a stub, recording the storages
    its persistent ids declare: (storage type name, key, location, element count)."""

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        return type(str(name)[:100] or "stub", (_Stub,), {"_where": (str(module), str(name))})

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage"):
            kind, key, location, numel = pid[1:5]
            self.storages.append((getattr(kind, "_where", ("?", _short_repr(kind)))[1], key,
                                  location, numel))
        return _Stub()


_SCAN_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
                IndexError, AttributeError, OverflowError, MemoryError, UnicodeDecodeError,
                RecursionError, struct.error)


def _element_size(path, type_name):
    import torch
    if type_name == "UntypedStorage":
        return 1
    kind = getattr(torch, type_name, None) if type_name.endswith("Storage") else None
    with warnings.catch_warnings():         # TypedStorage is deprecated
        warnings.simplefilter("ignore")
        dtype = getattr(kind, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        raise ConversionError(f"{path}: declares a storage of unknown type {type_name!r}")
    return torch._utils._element_size(dtype)


def _declared_storages(path, size):
    """{key: (bytes, location)} of the storages the checkpoint's pickle declares, read
    without unpickling anything real (step 2 of the module docstring)."""
    found = []
    try:
        if _is_zip(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                pkl = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
                if not pkl:
                    raise ConversionError(f"{path}: a zip archive without data.pkl, not a "
                                          f"PyTorch checkpoint")
                prefix = pkl[0][:-len("data.pkl")]
                records = {n[len(prefix) + 5:]: z.getinfo(n).file_size for n in names
                           if n.startswith(prefix + "data/")}
                with z.open(pkl[0]) as f:
                    _StorageLister(f, found).load()
        else:                           # legacy: pickles, then the raw storages
            records = None
            with open(path, "rb") as f:
                head = io.BytesIO(f.read(MAX_PICKLE_BYTES))
            try:
                for _ in range(4):      # magic number, protocol, system info, the object
                    _StorageLister(head, found).load()
            except (EOFError, pickle.UnpicklingError):
                if size > MAX_PICKLE_BYTES and head.tell() >= MAX_PICKLE_BYTES:
                    _big_pickle(path, 0)
                raise
    except ConversionError:
        raise
    except OSError as e:
        raise ConversionError(f"cannot read checkpoint {path!r}: {e.strerror or e}") from None
    except (*_SCAN_ERRORS, *_ZIP_ERRORS) as e:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint "
                              f"({type(e).__name__}: {str(e)[:200]})") from None
    out = {}
    for type_name, key, location, numel in found:
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise ConversionError(f"{path}: storage {_short_repr(key)} declares "
                                  f"{_short_repr(numel)} elements")
        if isinstance(location, bytes):
            location = location.decode("ascii", "replace")
        if not isinstance(key, (str, int)) or not isinstance(location, str):
            raise ConversionError(f"{path}: a storage with an invalid key or location")
        nbytes = numel * _element_size(path, type_name)
        if records is not None and str(key) not in records:
            raise ConversionError(
                f"{path}: storage {_short_repr(key)} ({nbytes} bytes, on "
                f"{_short_repr(location)}) is not in the "
                f"file (a tensor on the 'meta' device has no values); refused before "
                f"allocating it")
        if key in out and out[key][0] != nbytes:
            raise ConversionError(f"{path}: storage {_short_repr(key)} is declared with two "
                                  f"sizes")
        out[key] = (nbytes, location)
    stored = sum(n for n, _ in out.values())
    allowed = MAX_INFLATION * size + SLACK
    if stored > allowed:
        raise ConversionError(
            f"{path}: it declares {len(out)} storages of {stored} bytes ({_mib(stored)}) in "
            f"a file of {size} bytes ({_mib(size)}): hostile or corrupt, refused before "
            f"allocating")
    _over_cap(path, "its storage data", stored)
    return out


def _where(where, depth=8):
    """'[\'optimizer\'][\'state\'][0]' for a (parent, key) chain, its last ``depth`` keys."""
    keys = []
    while where is not None and len(keys) < depth:
        where, k = where
        keys.append(f"[{_short_repr(k)}]")
    return ("..." if where is not None else "") + "".join(reversed(keys)) if keys else \
        "at the top level"


def _short_repr(v, n=60):
    text = repr(v)
    return text if len(text) <= n else text[:n - 3] + "..."


def _check_tensors(shadow, sd, path, size):
    """Step 3 of the module docstring, on the meta-device load ``shadow`` and its state
    dict ``sd``: dense tensors of real numbers whose float32 arrays fit the bounds."""
    import torch
    stack, seen, every = [(None, shadow)], set(), 0
    while stack:                        # every tensor, e.g. in the optimizer state too
        where, o = stack.pop()          # where: (parent's where, key), a string on demand
        if isinstance(o, torch.Tensor):
            if o.layout != torch.strided:
                raise ConversionError(
                    f"{path}: tensor {_where(where)} is a {str(o.layout).split('.')[-1]} "
                    f"tensor; engine reads dense tensors only (save t.to_dense(), or only "
                    f"the state dict)")
            if id(o) not in seen:
                seen.add(id(o))
                every += o.numel() * o.element_size()
        elif isinstance(o, (dict, list, tuple, set, frozenset)) and id(o) not in seen:
            seen.add(id(o))
            for k, v in (o.items() if isinstance(o, dict) else enumerate(o)):
                stack.append(((where, k), v))
    arrays = 0
    for name, t in sd.items():
        if t.is_complex():
            raise ConversionError(f"{path}: tensor {_short_repr(name)} holds complex numbers "
                                  f"({t.dtype}); engine computes with real numbers")
        arrays += t.numel() * (4 if t.is_floating_point() else t.element_size())
    allowed = MAX_GROWTH * size + SLACK
    for what, noun, n in (("its tensors would take", "its tensor data", every),
                          ("its state dict would become float32 arrays of",
                           "its state dict, as float32 arrays,", arrays)):
        if n > allowed:
            raise ConversionError(
                f"{path}: {what} {n} bytes ({_mib(n)}), from a file of {size} bytes "
                f"({_mib(size)}): their values are not in the file (views repeating one "
                f"storage, stride 0, 'meta' tensors); hostile or corrupt, refused before "
                f"allocating; a state dict saved with torch.save(model.state_dict(), path) "
                f"holds each value once")
        _over_cap(path, noun, n)


def load_torch_state_dict(path):
    """The checkpoint's state dict as {name: torch.Tensor} (see the module docstring),
    after the size guards."""
    path = os.fspath(path)
    size = check_checkpoint_file(path)
    if is_torchscript(path):
        raise ConversionError(f"{path}: a TorchScript archive (torch.jit.save), not a state "
                              f"dict; convert it without --arch/--module: "
                              f"engine convert {os.path.basename(path)} -o model.safetensors")
    _declared_storages(path, size)
    shadow = _torch_load(path, "meta")      # torch's parser, no storage allocated
    _check_tensors(shadow, _state_dict_of(shadow, path), path, size)
    del shadow
    return _state_dict_of(_torch_load(path, "cpu"), path)


def _explain_unpickling(path, message):
    m = re.search(r"GLOBAL ([\w.]+)", message)
    what = m.group(1) if m else None
    if what and ("Module" in what or "." in what):
        kind = (f"a pickled Python object of class {what} (a whole model saved with "
                f"torch.save(model)?)")
    else:
        kind = "pickled Python objects other than tensors"
    return (f"{path} holds {kind}, not a state dict; loading it would execute arbitrary code, "
            f"so it is refused. Load it in your own code and {_HOW}, or export it with "
            f"torch.jit.save(torch.jit.script(model), path)")


def _describe(obj):
    import torch
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    if isinstance(obj, dict):
        keys = ", ".join(_short_repr(k) for k in list(obj)[:8])
        return f"a dict without tensors at the top level (keys: {keys})"
    return f"a {type(obj).__name__}"


def _is_state_dict(obj):
    import torch
    return isinstance(obj, dict) and all(isinstance(k, str) for k in obj) and \
        all(isinstance(v, torch.Tensor) for v in obj.values())


def _state_dict_of(obj, path):
    import torch
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in NESTED_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                obj = obj[key]
                break
        else:
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if tensors and len(tensors) >= len(obj) // 2 + 1 and all(
                    isinstance(k, str) for k in tensors):
                obj = tensors              # e.g. a state dict with an extra metadata entry
    if not _is_state_dict(obj):
        raise ConversionError(f"{path} holds {_describe(obj)}, not a state dict "
                              f"(a dict of parameter name -> tensor); {_HOW}")
    out = dict(obj)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in out):
            out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def load_state_dict(path):
    """Read a PyTorch checkpoint into {name: numpy array} without running pickled code.

    Floating-point tensors become float32 arrays; integer buffers (``num_batches_tracked``)
    keep their dtype.  Raises ConversionError for files that are not state dicts.
    """
    sd = load_torch_state_dict(path)
    return {k: to_numpy(v) for k, v in sd.items()}


def to_numpy(t):
    t = t.detach().cpu()
    if t.is_floating_point():
        return np.ascontiguousarray(t.float().numpy())
    return np.ascontiguousarray(t.numpy())


def check_state_dict(expected, given, what="the model"):
    """Compare {name: shape} dicts; ConversionError naming every missing, unexpected or
    mis-shaped tensor (with both shapes)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [(k, tuple(expected[k]), tuple(given[k])) for k in expected
             if k in given and tuple(expected[k]) != tuple(given[k])]
    if not (missing or unexpected or wrong):
        return
    lines = [f"the checkpoint does not fit {what}:"]
    for k, want, got in wrong[:20]:
        lines.append(f"  {k}: checkpoint has shape {got}, {what} expects {want}")
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): "
                     + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        lines.append(f"  not in {what} ({len(unexpected)}): "
                     + ", ".join(unexpected[:10]) + (" ..." if len(unexpected) > 10 else ""))
    raise ConversionError("\n".join(lines))
