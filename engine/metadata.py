"""The model metadata keys engine itself reads, and what each must hold.

Metadata is free-form JSON that travels in the model file, but a few keys drive the
command line (labels, image preprocessing), so a file read from disk has them checked
here before anything uses them: ``check_metadata`` raises ``ValueError`` naming the key
and what was expected (the loader turns it into ``ModelFormatError``).  Other keys are
kept as they are.
"""

import math
import numbers

MAX_LABELS = 1_000_000
MAX_TEXT = 1_000_000          # characters of a free-text field
MAX_IMAGE_SIDE = 65536        # pixels of input_size entries
CHANNEL_ORDERS = ("rgb", "bgr", "grayscale")


def _fail(key, expected, value):
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    raise ValueError(f"metadata {key!r} must be {expected}, got {text}")


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _text(key, v):
    if not isinstance(v, str) or len(v) > MAX_TEXT:
        _fail(key, f"a string of at most {MAX_TEXT} characters", v)


def _labels(key, v):
    if (not isinstance(v, list) or len(v) > MAX_LABELS
            or not all(isinstance(s, str) and len(s) <= 1000 for s in v)):
        _fail(key, f"a list of at most {MAX_LABELS} strings (each at most 1000 characters)", v)


def _sample_labels(key, v):
    if not isinstance(v, list) or len(v) > MAX_LABELS or not all(_is_int(i) for i in v):
        _fail(key, "a list of class indices (ints)", v)


def _number(key, v):
    if not _is_number(v):
        _fail(key, "a finite number", v)


def _preprocessing(key, v):
    if not isinstance(v, dict):
        _fail(key, "an object (input_size, resize_shorter, channels, pad, scale, mean, std)",
              v)
    size = v.get("input_size")
    if size is not None and (not isinstance(size, list) or len(size) != 2 or not all(
            _is_int(d) and 1 <= d <= MAX_IMAGE_SIDE for d in size)):
        _fail(f"{key}.input_size", f"[H, W] with each from 1 to {MAX_IMAGE_SIDE}", size)
    shorter = v.get("resize_shorter")
    if shorter is not None and not (_is_int(shorter) and 1 <= shorter <= MAX_IMAGE_SIDE):
        _fail(f"{key}.resize_shorter", f"an int from 1 to {MAX_IMAGE_SIDE}", shorter)
    if shorter is not None and size is not None and shorter < max(size):
        _fail(f"{key}.resize_shorter", f"at least the larger side of input_size {size} (the "
              f"center crop is taken from the resized image)", shorter)
    pad = v.get("pad")
    if pad is not None and not (_is_int(pad) and pad >= 0):
        _fail(f"{key}.pad", "a non-negative int", pad)
    if pad and size is not None and 2 * pad >= min(size):
        _fail(f"{key}.pad", f"less than half of input_size {size}", pad)
    for name in ("channels", "channel_order"):
        order = v.get(name)
        if order is not None and (not isinstance(order, str)
                                  or order.lower() not in CHANNEL_ORDERS):
            _fail(f"{key}.{name}", f"one of {', '.join(CHANNEL_ORDERS)}", order)
    scale = v.get("scale")
    if scale is not None and not (_is_number(scale) and scale != 0):
        _fail(f"{key}.scale", "a finite non-zero number", scale)
    for name in ("mean", "std"):
        vals = v.get(name)
        if vals is None:
            continue
        if (not isinstance(vals, list) or not 1 <= len(vals) <= 4096
                or not all(_is_number(x) for x in vals)):
            _fail(f"{key}.{name}", "a list of finite numbers, one per channel", vals)
        if name == "std" and any(x == 0 for x in vals):
            _fail(f"{key}.std", "non-zero (the input is divided by it)", vals)


# key -> checker(key, value); keys not listed are free-form.
SCHEMA = {
    "labels": _labels,
    "sample_labels": _sample_labels,
    "description": _text,
    "output": _text,
    "preprocessing": _preprocessing,
    "heldout_accuracy_torch": _number,
}


def check_metadata(meta):
    """ValueError unless ``meta`` is a dict whose keys engine reads hold what it expects."""
    if not isinstance(meta, dict):
        raise ValueError(f"metadata must be a JSON object, got {type(meta).__name__}")
    for key, checker in SCHEMA.items():
        if key in meta:
            checker(key, meta[key])
    return meta
