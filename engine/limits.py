"""Limits on what a model may ask for: the one place sizes and geometry are bounded.

A model file is untrusted input, and the graph it describes decides how much memory the
runtime allocates and which index arithmetic the C kernels do.  So before any plan or
kernel exists, every node passes through here (``OpDef.infer_shapes`` calls
``check_attrs`` and ``check_shapes``; the op shape functions call ``check_extent`` and
``check_buffer`` for their intermediate sizes):

* every integer attribute (stride, padding, dilation, kernel size, output_padding, groups,
  axes, sizes, ...) and every dimension lies within ``MAX_DIM`` (2**31 - 1), so that a
  product of two of them fits comfortably in the kernels' 64-bit index arithmetic;
* every intermediate extent a kernel computes (a padded input, a dilated kernel, the
  span of a transposed convolution) lies within ``MAX_DIM`` too: op shape functions
  compute them in Python integers, which cannot wrap, and check them here;
* every buffer (a value, a kernel workspace, the activation arena) is at most
  ``max_buffer_bytes`` (default 8 GiB, see ``set_limits``): a hostile file cannot make the
  runtime allocate more than that in one piece;
* attribute values are JSON-like (ints, floats, bools, strings, lists, dicts) of bounded
  size and nesting.

A violation raises ``LimitError`` (a ``GraphError``, so also a ``ValueError`` that shape
functions treat like their own checks); the op registry and the planner prefix it with
the node, the loader turns it into ``ModelFormatError``.  docs/limits.md lists the limits.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import threading
from dataclasses import dataclass, replace
from typing import Optional

from .errors import GraphError

MAX_DIM = 2**31 - 1            # any dimension, integer attribute or intermediate extent
MAX_RANK = 8                   # dims of any value
MAX_THREADS = 1024             # threads of one session (and concurrent runs)
MAX_ATTR_ITEMS = 4096          # entries of one attribute list / dict, characters of a string
MAX_ATTR_DEPTH = 8             # nesting of attribute lists / dicts
MAX_WINDOW_WORK = 2**36         # window taps one pooling node may visit (~1 min of work)
DEFAULT_MAX_BUFFER_BYTES = 8 * 2**30
ENV_MAX_BUFFER_BYTES = "ENGINE_MAX_BUFFER_BYTES"
F32 = 4


class LimitError(GraphError):
    """A size or count is above one of engine's limits (docs/limits.md)."""


@dataclass(frozen=True)
class Limits:
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES


def _from_env():
    text = os.environ.get(ENV_MAX_BUFFER_BYTES)
    if not text:
        return Limits()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise LimitError(f"{ENV_MAX_BUFFER_BYTES} must be a positive number of bytes, "
                         f"got {text!r}")
    return Limits(max_buffer_bytes=value)


_lock = threading.Lock()
_current = None


def get_limits() -> Limits:
    """The limits in force (from ``set_limits``, else the environment, else the defaults)."""
    global _current
    current = _current          # one atomic read: this runs once per value and buffer
    if current is not None:
        return current
    with _lock:
        if _current is None:
            _current = _from_env()
        return _current


def set_limits(max_buffer_bytes: Optional[int] = None) -> Limits:
    """Change the limits for the whole process; returns the previous ``Limits``.

    ``max_buffer_bytes``: the largest single buffer (value, workspace or activation arena)
    a model may need; raise it for very large inputs or batches.  The environment variable
    ENGINE_MAX_BUFFER_BYTES sets it at start-up.
    """
    global _current
    old = get_limits()
    new = old
    if max_buffer_bytes is not None:
        if not _is_int(max_buffer_bytes) or max_buffer_bytes < 1:
            raise LimitError(f"max_buffer_bytes must be a positive int, got "
                             f"{max_buffer_bytes!r}")
        new = replace(new, max_buffer_bytes=int(max_buffer_bytes))
    with _lock:
        _current = new
    return old


@contextlib.contextmanager
def override(**changes):
    """``with engine.limits.override(max_buffer_bytes=...):`` the limits changed for a block
    (process-wide while it lasts)."""
    global _current
    old = set_limits(**changes)
    try:
        yield get_limits()
    finally:
        with _lock:
            _current = old


# -- checks ---------------------------------------------------------------------------------

def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _gib(n):
    return f"{n / 2**30:.3g} GiB"


def check_extent(value, what):
    """LimitError unless ``0 <= value <= MAX_DIM`` (a size computed from attributes)."""
    if not 0 <= value <= MAX_DIM:
        raise LimitError(f"{what} is {value}, outside the supported range 0 to {MAX_DIM} "
                         f"(2**31 - 1)")
    return value


def check_buffer(elements, what, itemsize=F32):
    """LimitError if a buffer of ``elements`` items needs more than the byte cap."""
    nbytes = int(elements) * itemsize
    cap = get_limits().max_buffer_bytes
    if nbytes > cap:
        raise LimitError(f"{what} needs {nbytes} bytes ({_gib(nbytes)}), more than the "
                         f"{cap} bytes ({_gib(cap)}) one buffer may take; raise the cap with "
                         f"engine.set_limits(max_buffer_bytes=...) or {ENV_MAX_BUFFER_BYTES} "
                         f"if this is intended")
    return nbytes


def check_work(taps, what):
    """LimitError if a windowed op would visit more than MAX_WINDOW_WORK taps in all."""
    if taps > MAX_WINDOW_WORK:
        raise LimitError(f"{what} would visit {taps} window taps, more than the "
                         f"{MAX_WINDOW_WORK} (2**36) one node may; windows this large over "
                         f"this input are not supported")
    return taps


def check_shape(shape, what):
    """LimitError unless ``shape`` is at most MAX_RANK dims, each None (the symbolic batch,
    counted as 1) or an int in [0, MAX_DIM], and its float32 buffer is within the byte cap."""
    if len(shape) > MAX_RANK:
        raise LimitError(f"{what} has rank {len(shape)}, more than the supported {MAX_RANK}")
    count = 1
    for d in shape:
        if d is None:
            continue
        if not _is_int(d):
            raise LimitError(f"{what} has a non-integer dimension {d!r} in {tuple(shape)}")
        check_extent(int(d), f"a dimension of {what} {tuple(shape)}")
        count *= int(d)
    check_buffer(count, f"{what} of shape {tuple(shape)}")
    return count


def check_attrs(attrs):
    """LimitError unless node attributes are JSON-like values of bounded size whose ints lie
    within +-MAX_DIM."""
    if not isinstance(attrs, dict):
        raise LimitError(f"attributes must be a dict, got {type(attrs).__name__}")
    stack = [(name, value, 0) for name, value in attrs.items()]
    while stack:
        name, v, depth = stack.pop()
        if depth > MAX_ATTR_DEPTH:
            raise LimitError(f"attribute {name!r} is nested deeper than {MAX_ATTR_DEPTH}")
        if v is None or isinstance(v, bool):
            continue
        if _is_int(v):
            if abs(int(v)) > MAX_DIM:
                raise LimitError(f"attribute {name!r} holds {v}, outside the supported range "
                                 f"+-{MAX_DIM} (2**31 - 1)")
        elif isinstance(v, numbers.Real):
            pass                        # NaN and infinities are legitimate (pad values, bounds)
        elif isinstance(v, str):
            if len(v) > MAX_ATTR_ITEMS:
                raise LimitError(f"attribute {name!r} is a string of {len(v)} characters, "
                                 f"more than {MAX_ATTR_ITEMS}")
        elif isinstance(v, (list, tuple)):
            if len(v) > MAX_ATTR_ITEMS:
                raise LimitError(f"attribute {name!r} has {len(v)} entries, more than "
                                 f"{MAX_ATTR_ITEMS}")
            stack.extend((name, x, depth + 1) for x in v)
        elif isinstance(v, dict):
            if len(v) > MAX_ATTR_ITEMS:
                raise LimitError(f"attribute {name!r} has {len(v)} entries, more than "
                                 f"{MAX_ATTR_ITEMS}")
            stack.extend((name, x, depth + 1) for x in v.values())
        else:
            raise LimitError(f"attribute {name!r} has a value of type {type(v).__name__}; "
                             f"attributes are ints, floats, bools, strings, lists and dicts")


__all__ = ["MAX_DIM", "MAX_RANK", "MAX_THREADS", "Limits", "LimitError", "get_limits", "set_limits",
           "override", "check_extent", "check_work", "check_buffer", "check_shape", "check_attrs"]
