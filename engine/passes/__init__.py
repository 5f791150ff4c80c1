"""Graph optimisation passes, one module each; ``optimize`` runs them to a fixed point.

Every pass is ``pass(model, keep) -> changed`` and edits ``model`` in place; ``keep`` names
values a caller wants to read (intermediate outputs), which passes must not remove or
rename.  Each pass preserves the model's outputs exactly (up to float rounding for the
folding passes); ``tests/test_passes.py`` checks that on random graphs.
"""

from ..ir import gc_paused
from .constant_folding import fold_constants
from .dead_code import remove_dead_code
from .fold_batchnorm import fold_batchnorm
from .fuse_activation import fuse_activation
from .fuse_residual import fuse_residual
from .remove_identity import remove_identity

# fuse_residual runs before fuse_activation: relu(conv + r) needs the add absorbed first.
PIPELINE = (remove_identity, fold_constants, fold_batchnorm, fuse_residual, fuse_activation,
            remove_dead_code)


def optimize(model, keep=frozenset(), passes=PIPELINE, max_rounds=10):
    """An optimised copy of ``model``; the original is left untouched."""
    with gc_paused():           # O(n) garbage-free rewriting: see ir.gc_paused
        m = model.copy()
        keep = frozenset(keep)
        for _ in range(max_rounds):
            changed = False
            for p in passes:
                changed |= bool(p(m, keep))
            if not changed:
                break
        m.validate()
    return m


__all__ = ["optimize", "PIPELINE", "fold_constants", "remove_dead_code", "fold_batchnorm",
           "fuse_residual", "fuse_activation", "remove_identity"]
