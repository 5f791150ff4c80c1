"""Data-movement ops: dropout, identity, flatten, reshape (aliases of their input),
permute, concat, split, channel_shuffle, pad.

Shape functions propagate the symbolic batch (``None``) but never do arithmetic with it;
where a result would need it (flattening the batch with other dims, concatenating or
splitting along it, padding it) they raise ValueError.
"""

import numbers

import numpy as np

from .conv import is_int, known
from .registry import check, register_op


def normalize_dim(dim, rank, what="dim"):
    """A possibly negative dim as an index in [0, rank)."""
    check(is_int(dim), f"{what} must be an int, got {dim!r}")
    check(-rank <= dim < rank, f"{what} {dim} is out of range for a rank-{rank} input")
    return int(dim) % rank


def _product(dims, what):
    """Product of dims; None if the only non-1 factor is a single None; ValueError if it
    would need arithmetic on the symbolic batch."""
    dims = list(dims)
    if None in dims:
        rest = [d for d in dims if d is not None]
        check(dims.count(None) == 1 and all(d == 1 for d in rest),
              f"{what}: cannot combine the symbolic batch (None) with other dims {tuple(dims)}")
        return None
    p = 1
    for d in dims:
        p *= d
    return p


# -- aliases --------------------------------------------------------------------------------

def _infer_dropout(x, *, p):
    check(isinstance(p, numbers.Real) and not isinstance(p, bool) and 0 <= p <= 1,
          f"dropout p must be a number in [0, 1], got {p!r}")
    return tuple(x)


@register_op("dropout", infer=_infer_dropout, alias=True)
def dropout(x, *, p):
    """Identity at inference."""
    return x


def _infer_identity(x):
    return tuple(x)


@register_op("identity", infer=_infer_identity, alias=True)
def identity(x):
    return x


def _flatten_range(rank, start_dim, end_dim):
    r = max(rank, 1)
    s = normalize_dim(start_dim, r, "start_dim")
    e = normalize_dim(end_dim, r, "end_dim")
    check(s <= e, f"flatten start_dim {start_dim} comes after end_dim {end_dim} for a "
                  f"rank-{rank} input")
    return s, e


def _infer_flatten(x, *, start_dim, end_dim):
    x = tuple(x)
    s, e = _flatten_range(len(x), start_dim, end_dim)
    if len(x) == 0:
        return (1,)
    merged = _product(x[s:e + 1], "flatten")
    return x[:s] + (merged,) + x[e + 1:]


@register_op("flatten", infer=_infer_flatten, alias=True)
def flatten(x, *, start_dim, end_dim):
    """torch.flatten: merge dims start_dim..end_dim (inclusive, negative allowed)."""
    s, e = _flatten_range(x.ndim, start_dim, end_dim)
    if x.ndim == 0:
        return x.reshape(1)
    return x.reshape(x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:])


def _infer_reshape(x, *, shape):
    check(isinstance(shape, (list, tuple)) and all(is_int(d) for d in shape),
          f"reshape shape must be a list of ints, got {shape!r}")
    shape = [int(d) for d in shape]
    check(all(d >= 1 or d == -1 for d in shape),
          f"reshape shape entries must be positive or -1, got {shape}")
    check(shape.count(-1) <= 1, f"reshape shape may contain at most one -1, got {shape}")
    x = tuple(x)
    target = 1
    for d in shape:
        if d != -1:
            target *= d
    if None in x:
        check(x.count(None) == 1, f"reshape: more than one symbolic dim in {x}")
        known_numel = 1
        for d in x:
            if d is not None:
                known_numel *= d
        check(-1 in shape,
              f"reshape of an input with a symbolic batch {x} to the fixed shape {shape} "
              f"needs -1 for the batch dim")
        check(known_numel == target,
              f"reshape of {x} to {shape}: -1 would be the symbolic batch times "
              f"{known_numel}/{target}; only -1 = batch (known sizes {known_numel} == "
              f"{target}) is supported")
        return tuple(None if d == -1 else d for d in shape)
    numel = 1
    for d in x:
        numel *= d
    if -1 in shape:
        check(numel % target == 0,
              f"cannot reshape input {x} ({numel} elements) to {shape}: {numel} is not "
              f"divisible by {target}")
        return tuple(numel // target if d == -1 else d for d in shape)
    check(numel == target,
          f"cannot reshape input {x} ({numel} elements) to {tuple(shape)} ({target} elements)")
    return tuple(shape)


@register_op("reshape", infer=_infer_reshape, alias=True)
def reshape(x, *, shape):
    """torch.reshape with one optional -1."""
    return x.reshape(_infer_reshape(x.shape, shape=shape))


# -- permute --------------------------------------------------------------------------------

def _perm(rank, dims):
    check(isinstance(dims, (list, tuple)) and all(is_int(d) for d in dims),
          f"permute dims must be a list of ints, got {dims!r}")
    check(len(dims) == rank, f"permute dims {list(dims)} must have {rank} entries (the input "
                             f"rank)")
    perm = [normalize_dim(d, rank, "permute dim") if rank else 0 for d in dims]
    check(sorted(perm) == list(range(rank)),
          f"permute dims {list(dims)} must be a permutation of 0..{rank - 1}")
    return perm


def _infer_permute(x, *, dims):
    perm = _perm(len(x), dims)
    return tuple(x[p] for p in perm)


@register_op("permute", infer=_infer_permute)
def permute(x, *, dims):
    """torch.permute (transpose is a permute)."""
    return np.ascontiguousarray(np.transpose(x, _perm(x.ndim, dims)))


# -- concat / split -------------------------------------------------------------------------

def _infer_concat(*xs, dim):
    check(len(xs) >= 1, "concat needs at least one input")
    rank = len(xs[0])
    check(rank >= 1, "concat inputs must have at least 1 dim, got a scalar")
    for i, s in enumerate(xs):
        check(len(s) == rank, f"concat inputs must all have rank {rank} (input 0 is "
                              f"{tuple(xs[0])}), input {i} has shape {tuple(s)}")
    d = normalize_dim(dim, rank)
    out = list(xs[0])
    for i, s in enumerate(xs[1:], 1):
        for j in range(rank):
            if j != d:
                check(s[j] == out[j],
                      f"concat along dim {dim}: input {i} has shape {tuple(s)} but input 0 "
                      f"has {tuple(xs[0])}; dim {j} must match ({out[j]} vs {s[j]})")
    out[d] = sum(known(s[d], f"concat dim {dim} (the concatenated dim)") for s in xs)
    return tuple(out)


@register_op("concat", infer=_infer_concat, n_inputs=(1, 10**6))
def concat(*xs, dim):
    """torch.cat along dim."""
    _infer_concat(*(x.shape for x in xs), dim=dim)
    return np.concatenate(xs, axis=dim)


def _split_sizes(size, split_size_or_sections):
    s = split_size_or_sections
    if is_int(s):
        check(s >= 1, f"split_size must be a positive int, got {s}")
        return [min(s, size - i) for i in range(0, size, s)] or [0]
    check(isinstance(s, (list, tuple)) and len(s) >= 1 and all(is_int(v) and v >= 0
                                                                for v in s),
          f"split_size_or_sections must be a positive int or a non-empty list of "
          f"non-negative ints, got {s!r}")
    check(sum(s) == size, f"split sections {list(s)} sum to {sum(s)} but the split dim has "
                          f"size {size}")
    return [int(v) for v in s]


def _infer_split(x, *, split_size_or_sections, dim):
    check(len(x) >= 1, "split input must have at least 1 dim, got a scalar")
    d = normalize_dim(dim, len(x))
    size = known(x[d], f"split dim {dim}")
    out = []
    for n in _split_sizes(size, split_size_or_sections):
        s = list(x)
        s[d] = n
        out.append(tuple(s))
    return out


@register_op("split", infer=_infer_split)
def split(x, *, split_size_or_sections, dim):
    """torch.split: pieces of split_size (last may be smaller) or the given sections."""
    d = normalize_dim(dim, x.ndim)
    sizes = _split_sizes(x.shape[d], split_size_or_sections)
    cuts = np.cumsum(sizes)[:-1]
    return tuple(np.split(x, cuts, axis=d))


# -- channel_shuffle ------------------------------------------------------------------------

def _infer_channel_shuffle(x, *, groups):
    check(len(x) >= 3, f"channel_shuffle expects an input of rank >= 3 (N, C, spatial...), got "
                       f"shape {tuple(x)}")
    check(is_int(groups) and groups >= 1, f"groups must be a positive int, got {groups!r}")
    c = known(x[1], "channel_shuffle channels")
    check(c % groups == 0,
          f"channel_shuffle expects channels divisible by groups={groups}, got {c}")
    return tuple(x)


@register_op("channel_shuffle", infer=_infer_channel_shuffle)
def channel_shuffle(x, *, groups):
    """(N, g, C/g, ...) -> transpose -> (N, C/g, g, ...) -> (N, C, ...)."""
    _infer_channel_shuffle(x.shape, groups=groups)
    n, c = x.shape[:2]
    rest = x.shape[2:]
    y = x.reshape((n, groups, c // groups) + rest).swapaxes(1, 2)
    return np.ascontiguousarray(y).reshape(x.shape)


# -- pad ------------------------------------------------------------------------------------

def _pad_pairs(x, pad, mode, value):
    rank = len(x)
    check(isinstance(pad, (list, tuple)) and all(is_int(v) for v in pad),
          f"pad must be a list of ints, got {pad!r}")
    check(len(pad) % 2 == 0 and 2 <= len(pad) <= 2 * rank,
          f"pad must have an even number of entries, 2 to {2 * rank} (2 x input rank), got "
          f"{len(pad)}")
    check(all(v >= 0 for v in pad), f"negative (cropping) pads are not supported, got "
                                    f"{list(pad)}")
    check(mode in ("constant", "reflect", "replicate"),
          f"pad mode must be 'constant', 'reflect' or 'replicate', got {mode!r}")
    # Every mode carries the attribute (the kernels read it), even where it is unused.
    check(value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)),
          f"pad value must be a number, got {value!r}")
    npad = len(pad) // 2
    if mode != "constant":
        check(npad <= 3 and rank in (npad + 1, npad + 2),
              f"{mode} padding of the last {npad} dims needs an input of rank {npad + 1} or "
              f"{npad + 2}, got rank {rank}")
    pairs = [(0, 0)] * rank
    for i in range(npad):                     # torch order: last dim first
        pairs[rank - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    for i, (b, e) in enumerate(pairs):
        if b or e:
            size = known(x[i], f"padded dim {i}")
            if mode == "reflect":
                check(b < size and e < size,
                      f"reflect padding ({b}, {e}) of dim {i} must be smaller than its size "
                      f"{size}")
            if mode == "replicate":
                check(size >= 1, f"replicate padding of dim {i} needs a non-empty dim")
    return pairs


def _infer_pad(x, *, pad, mode, value):
    pairs = _pad_pairs(tuple(x), pad, mode, value)
    return tuple(d if b == e == 0 else d + b + e for d, (b, e) in zip(x, pairs))


@register_op("pad", infer=_infer_pad)
def pad(x, *, pad, mode, value):
    """torch.nn.functional.pad (constant, reflect, replicate); pad lists the last dim first."""
    pairs = _pad_pairs(x.shape, pad, mode, value)
    if mode == "constant":
        return np.pad(x, pairs, mode="constant",
                      constant_values=np.float32(0.0 if value is None else value))
    return np.pad(x, pairs, mode="reflect" if mode == "reflect" else "edge")


__all__ = ["normalize_dim"]
