"""Inputs from files, checked before they are trusted: ``.npy`` arrays (never unpickled)
and images decoded with Pillow and prepared as the model was trained (the preprocessing
stored in its metadata: resize or resize-shorter-and-center-crop, channel order, scale,
mean, std).  Shared by the command line, folder inference (``engine.batch``) and the Ray
workers (``engine.ray``).

    x = read_inputs(["cat.jpg", "dog.png"], model)       # (2, C, H, W) float32
    p = probabilities(logits, already=False)              # softmax over classes

Every file is size-checked before it is read in full (.npy headers against the file size,
image dimensions before decoding) and every failure is an ``EngineError`` of one line.
"""

import math
import os
import stat
import struct
import sys
import tokenize
import warnings

import numpy as np

from .errors import EngineError, InputError, ModelFormatError
from .limits import MAX_RANK, check_buffer

MAX_IMAGE_SIDE = 65536          # pixels of an --input-size / metadata input_size entry
MAX_IMAGE_PIXELS = 89_478_485   # pixels of an image file, checked before decoding
                                # (Pillow's own decompression-bomb threshold)


def user_file(path, what):
    """The size of ``path``, a regular file the user named: EngineError (one line) for a
    missing file, a directory, a pipe or a device (reading those could hang or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EngineError(f"{what} {path!r} does not exist") from None
    except (OSError, ValueError) as e:      # ValueError: a NUL in the path
        raise EngineError(f"cannot read {what} {path!r}: {getattr(e, 'strerror', None) or e}") \
            from None
    if stat.S_ISDIR(st.st_mode):
        raise EngineError(f"{what} {path!r} is a directory; expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise EngineError(f"{what} {path!r} is not a regular file (a pipe or a device?)")
    return st.st_size


def input_shape(model):
    """The shape of the model's first input (the one the command line feeds)."""
    if not model.inputs:
        raise ModelFormatError("the model has no inputs; the command line feeds the first "
                               "input")
    return tuple(model.inputs[0].shape)


def shape_text(shape):
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


# -- inputs: .npy arrays and images -----------------------------------------------------------
NPY_MAGIC = b"\x93NUMPY"


def read_inputs(paths, model, allow_nonfinite=False):
    """Arrays from .npy files, or images (needs Pillow) preprocessed per the model metadata;
    each checked against the model's first input (rank, sizes), one batch in all.
    ``allow_nonfinite``: NaN / Inf in a .npy file warn on stderr instead of failing."""
    want = input_shape(model)
    arrays, total = [], 0
    for p in paths:
        size = user_file(p, "input file")
        if p.lower().endswith(".npy") or _starts_with(p, NPY_MAGIC):
            a = read_npy(p, size, allow_nonfinite)
        else:
            a = read_image(p, want, model.metadata.get("preprocessing") or {})
        if a.ndim == len(want) - 1:
            a = a[None]
        if a.ndim != len(want) or any(w is not None and d != w
                                      for d, w in zip(a.shape[1:], want[1:])):
            raise InputError(f"{p}: an array of shape {a.shape}; the model takes "
                             f"{shape_text(want)} (a batch) or {shape_text(want[1:])} "
                             f"(one sample)")
        if a.shape[0] == 0:
            raise InputError(f"{p}: an array of shape {a.shape} holds no samples")
        total += a.size
        check_buffer(total, "the input files together")
        arrays.append(a)
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]


def read_one(path, model, allow_nonfinite=False):
    """One sample (the model input without its batch dimension) from an image or a .npy
    file holding one sample: what folder inference feeds, file by file."""
    a = read_inputs([path], model, allow_nonfinite)
    if a.shape[0] != 1:
        raise InputError(f"{path}: holds {a.shape[0]} samples; give one sample per file "
                         f"when running a folder, glob or list")
    return a[0]


def _starts_with(path, magic):
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError as e:
        raise EngineError(f"cannot read input file {path!r}: {e.strerror}") from None


_NPY_KINDS = {
    "c": "complex numbers; the model takes real numbers (save a.real or np.abs(a) if that "
         "is what you mean)",
    "b": "booleans; save a.astype(np.float32) if 0/1 inputs are intended",
    "O": "Python objects, which are never unpickled",
    "U": "strings", "S": "byte strings", "V": "structured records (or raw bytes)",
    "M": "dates", "m": "time spans",
}


_CONVERTED = set()      # .npy dtypes already reported as converted to float32


def read_npy(path, size, allow_nonfinite=False):
    """A float32 array from a .npy file, never unpickled: only real numbers (floating
    point or integer) of rank 1 to MAX_RANK, all finite, within the byte cap; the header
    is checked against the file's size before the data is read."""
    from numpy.lib import format as npf
    try:
        with open(path, "rb") as f:
            try:
                version = npf.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = npf.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = npf.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
            except (ValueError, EOFError, SyntaxError, TypeError, struct.error,
                    tokenize.TokenError, RecursionError) as e:   # numpy parsing the header
                raise EngineError(f"{path} is not a valid .npy file: "
                                  f"{first_line(e)}") from None
            start = f.tell()
            if dtype.hasobject or dtype.kind not in "fiu":
                what = _NPY_KINDS.get("O" if dtype.hasobject else dtype.kind,
                                      f"values of type {dtype}")
                raise InputError(f"{path} holds {what}; inputs must be real numbers "
                                 f"(floating point or integer)")
            if not 1 <= len(shape) <= MAX_RANK:
                raise InputError(f"{path} holds an array of rank {len(shape)} (shape "
                                 f"{shape}); inputs have rank 1 to {MAX_RANK}")
            if any(d < 0 for d in shape):
                raise EngineError(f"{path} is not a valid .npy file: negative dimension in "
                                  f"its shape {shape}")
            count = math.prod(shape)
            if count == 0:
                raise InputError(f"{path} holds an empty array of shape {shape}")
            check_buffer(count, f"{path} (shape {shape}, as float32)")
            if size - start < count * dtype.itemsize:
                raise InputError(f"{path}: its header promises {count * dtype.itemsize} "
                                 f"bytes of data (shape {shape}, {dtype}) but the file has "
                                 f"{size - start}; truncated or corrupt")
            f.seek(0)
            try:
                a = np.load(f, allow_pickle=False)
            except (ValueError, EOFError) as e:
                raise EngineError(f"{path} is not a valid .npy file: "
                                  f"{first_line(e)}") from None
    except OSError as e:
        raise EngineError(f"cannot read input file {path!r}: {e.strerror or e}") from None
    with np.errstate(all="ignore"):     # float64 beyond float32's range -> inf, refused
        a = np.ascontiguousarray(a, dtype=np.float32)
    bad = a.size - int(np.count_nonzero(np.isfinite(a)))
    if bad:
        beyond = "" if dtype == np.float32 else " (or beyond float32's range)"
        what = f"{path} holds {bad} NaN or infinite value{'s' if bad > 1 else ''}{beyond}"
        if not allow_nonfinite:
            raise InputError(f"{what}; inputs must be finite numbers (--allow-nonfinite "
                             f"runs them anyway)")
        print(f"warning: {what}; running them anyway (--allow-nonfinite)", file=sys.stderr)
    if dtype != np.float32 and dtype.name not in _CONVERTED:
        # the API takes float32 only; the command line converts, and says so once per type
        _CONVERTED.add(dtype.name)
        print(f"note: {path} holds {dtype.name} values; .npy inputs of that type are "
              f"converted to float32, the type the model computes in", file=sys.stderr)
    return a


def first_line(e):
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def parse_preprocessing(prep, shape):
    """(h, w, pad, channel order, scale, mean, std, resize_shorter) from
    ``metadata["preprocessing"]``, checked (the metadata travels in the model file, so it
    is untrusted too)."""
    channels = shape[1]

    def bad(key, expected, value):
        text = repr(value)
        text = text if len(text) <= 80 else text[:77] + "..."
        raise ModelFormatError(f"the model's metadata preprocessing.{key} must be "
                               f"{expected}, got {text}")

    if not isinstance(prep, dict):
        bad("", "an object", prep)
    size = prep.get("input_size") or [d for d in shape[2:]]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(_is_int(d) and 1 <= d <= MAX_IMAGE_SIDE for d in size)):
        if "input_size" in prep:
            bad("input_size", f"[H, W] with each from 1 to {MAX_IMAGE_SIDE}", size)
        raise InputError(f"images need a model input of fixed height and width, or "
                         f"preprocessing.input_size in its metadata; this one takes "
                         f"{shape_text(shape)}")
    h, w = int(size[0]), int(size[1])
    if any(d is not None and d != v for d, v in zip(shape[2:], (h, w))):
        bad("input_size", f"the model's input size {shape[2]}x{shape[3]}", size)
    if h * w > MAX_IMAGE_PIXELS:
        bad("input_size", f"at most {MAX_IMAGE_PIXELS} pixels", size)
    pad = prep.get("pad", 0) or 0
    if not _is_int(pad) or pad < 0 or 2 * pad >= min(h, w):
        bad("pad", f"an int from 0 to less than half of {min(h, w)}", pad)
    shorter = prep.get("resize_shorter")
    if shorter is not None and (not _is_int(shorter) or
                                not max(h, w) - 2 * pad <= shorter <= MAX_IMAGE_SIDE):
        bad("resize_shorter", f"an int from {max(h, w) - 2 * pad} (the crop) to "
                              f"{MAX_IMAGE_SIDE}", shorter)
    order = prep.get("channels", prep.get("channel_order",
                                          "grayscale" if channels == 1 else "rgb"))
    if not isinstance(order, str) or order.lower() not in ("rgb", "bgr", "grayscale"):
        bad("channels", "rgb, bgr or grayscale", order)
    scale = prep.get("scale", 1 / 255)
    with np.errstate(all="ignore"):
        scale32 = np.float32(scale) if is_number(scale) else np.float32(0)
    if not np.isfinite(scale32) or scale32 == 0:
        bad("scale", "a finite non-zero number (in float32)", scale)
    vals = {}
    for key, default in (("mean", 0.0), ("std", 1.0)):
        v = prep.get(key, [default] * channels)
        if (not isinstance(v, (list, tuple)) or len(v) not in (1, channels)
                or not all(is_number(x) for x in v)):
            bad(key, f"a list of 1 or {channels} finite numbers", v)
        with np.errstate(all="ignore"):
            vals[key] = np.asarray(v, np.float32).reshape(-1, 1, 1)
        if not np.isfinite(vals[key]).all():
            bad(key, "finite in float32", v)
        if key == "std" and not vals[key].all():
            bad(key, "non-zero in float32 (inputs are divided by it)", v)
    return (h, w, int(pad), order.lower(), scale32, vals["mean"], vals["std"],
            None if shorter is None else int(shorter))


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_number(v):
    return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            and math.isfinite(v))


def read_image(path, shape, prep):
    """An image file as the model's input, preprocessed per ``metadata["preprocessing"]``:

    ``input_size`` [H, W] (the network input; default: the model's input shape),
    ``resize_shorter`` S: the shorter side resized to S (aspect kept), then the center
    crop of input_size, as torchvision's Resize(S) + CenterCrop (absent: the image is
    resized to input_size, aspect not kept),
    ``channels`` "rgb" | "bgr" | "grayscale" (default from the input's channel count),
    ``pad`` (pixels of zero padding around the resized image, included in input_size),
    ``scale`` (default 1/255), ``mean`` and ``std`` (per channel, after scaling).

    Images of more than MAX_IMAGE_PIXELS pixels are refused before they are decoded.
    """
    Image = _pillow()
    steps = _image_steps(shape, prep)
    try:
        with warnings.catch_warnings():
            # Pillow's notes on odd files, and its DecompressionBombWarning: the pixel
            # count is checked below, before decoding (above twice that, open() raises
            # DecompressionBombError)
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                _check_pixels(img, f"image {path!r}")
                img = _resize(img, steps)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"image {path!r} refused: {first_line(e)}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        # what Pillow raises for unidentified, truncated or corrupt files
        raise EngineError(f"cannot read image {path!r}: {first_line(e)}") from None
    return _normalize(img, steps)


def image_from_pixels(pixels, shape, prep):
    """Decoded pixels (H x W or H x W x 1/3/4 uint8, as ``ray.data.read_images`` or
    Pillow give them) as the model's input, with the same preprocessing as ``read_image``."""
    Image = _pillow()
    steps = _image_steps(shape, prep)
    a = np.asarray(pixels)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4))):
        raise InputError(f"image pixels must be uint8 of shape (H, W) or (H, W, 1/3/4 "
                         f"channels), got {a.dtype} {a.shape}")
    img = Image.fromarray(a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a)
    _check_pixels(img, f"an image of {a.shape}")
    return _normalize(_resize(img, steps), steps)


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise EngineError("reading images needs Pillow (pip install pillow); "
                          "or pass a .npy array") from None
    return Image


def _image_steps(shape, prep):
    if len(shape) != 4 or shape[1] not in (1, 3):
        raise InputError(f"image inputs need a model with an (N, 1 or 3, H, W) input, this "
                         f"one takes {shape_text(shape)}")
    return (shape[1],) + parse_preprocessing(prep, shape)


def _check_pixels(img, what):
    pixels = img.width * img.height         # from the header: not decoded yet
    if pixels > MAX_IMAGE_PIXELS:
        raise InputError(f"{what} is {img.width}x{img.height} ({pixels} pixels), more than "
                         f"the {MAX_IMAGE_PIXELS} engine decodes; resize it first")


def _resize(img, steps):
    channels, h, w, pad, _, _, _, _, shorter = steps
    Image = _pillow()
    resample = getattr(Image, "Resampling", Image).BILINEAR
    img = img.convert("L" if channels == 1 else "RGB")
    if shorter is None:
        return img.resize((w - 2 * pad, h - 2 * pad), resample)
    return _resize_and_crop(img, shorter, h - 2 * pad, w - 2 * pad, resample)


def _normalize(img, steps):
    _, _, _, pad, order, scale, mean, std, _ = steps
    a = np.asarray(img, dtype=np.float32) * scale
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    if order == "bgr" and a.shape[0] == 3:
        a = a[::-1]
    if pad:
        a = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
    return ((a - mean) / std).astype(np.float32)


def _resize_and_crop(img, shorter, ch, cw, resample):
    """torchvision's Resize(shorter) then CenterCrop((ch, cw)) on a PIL image: the same
    sizes, the same PIL resampling call and the same crop offsets."""
    iw, ih = img.size
    if iw <= ih:
        size = (shorter, int(shorter * ih / iw))
    else:
        size = (int(shorter * iw / ih), shorter)
    if size != (iw, ih):
        img = img.resize(size, resample)
    top = int(round((size[1] - ch) / 2.0))
    left = int(round((size[0] - cw) / 2.0))
    return img.crop((left, top, left + cw, top + ch))


def probabilities(logits, already):
    if already:
        return logits
    with np.errstate(all="ignore"):      # non-finite logits show as nan, not as warnings
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
