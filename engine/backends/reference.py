"""The reference backend: every op runs its NumPy reference (the oracle, not fast).

``Session(model, backend="reference")`` gives the results every fast backend is tested
against.  One generic kernel serves all ops, so a newly registered op runs here at once.
"""

import numpy as np

from ..ops import OPS
from .base import Kernel, register_kernel


class ReferenceKernel(Kernel):
    variant = "numpy"

    def __init__(self, node, opdef):
        self.node, self.opdef = node, opdef

    def run(self, inputs, outputs, scratch):
        for out, res in zip(outputs, self.opdef.run_reference(self.node, inputs)):
            np.copyto(out, res.reshape(out.shape))


def _register_all():
    for name, opdef in OPS.items():
        register_kernel("reference", name, "numpy", native=False,
                        note="NumPy reference")(lambda node, ctx, _d=opdef: ReferenceKernel(node, _d))


_register_all()
