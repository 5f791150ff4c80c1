"""Every op engine knows: shape inference and a NumPy reference, one module per family.

Importing this package fills ``OPS``; the modules below register themselves.
"""

from .registry import OPS, OpDef, get_op, register_op  # noqa: F401

# Importing registers the ops.
from . import (  # noqa: F401,E402
    activation,
    conv,
    elementwise,
    linear,
    norm,
    pool,
    reduce,
    resize,
    shape,
)
