"""engine: a CPU inference engine for convolutional networks trained in PyTorch.

    import engine
    sess = engine.Session("model.safetensors")
    probs, = sess.run(x)

Public API: Builder (write models like torch.nn.functional), Model, Session (prepare once,
run many), save / load (safe single-file format), from_torch (convert a PyTorch module),
from_onnx (import an ONNX model), show_config; engine.zoo holds the classic architectures.
"""

__version__ = "0.1.0"

from .errors import (ArgumentError, ConversionError, EngineError, GraphError,  # noqa: E402
                     InputError, ModelFormatError, UnsupportedError)
from . import ops  # noqa: E402,F401  (fills the op registry)
from .ir import Model, Node, Value  # noqa: E402
from .builder import Builder, Tensor  # noqa: E402
from .format import load, save  # noqa: E402
from .runtime import Session  # noqa: E402
from .config import show_config  # noqa: E402
from . import limits  # noqa: E402
from .limits import LimitError, get_limits, set_limits  # noqa: E402
from . import convert  # noqa: E402,F401  (imports torch only when a conversion runs)
from .convert import from_onnx, from_torch  # noqa: E402

__all__ = ["from_torch", "from_onnx", "convert", "Builder", "Tensor", "Model", "Node", "Value", "Session", "load", "save",
           "show_config", "ArgumentError", "ConversionError", "EngineError", "GraphError", "InputError", "ModelFormatError",
           "UnsupportedError", "LimitError", "limits", "get_limits", "set_limits", "__version__"]
