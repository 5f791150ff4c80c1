"""Exceptions raised by engine. Every user-facing failure is an EngineError subclass."""


class EngineError(Exception):
    """Base class of every error engine raises on purpose."""


class GraphError(EngineError, ValueError):
    """The graph is malformed: unknown values, bad attributes, shapes that do not fit.

    Messages name the node (``node 'conv1' (conv): ...``) and say what was expected.
    """


class InputError(EngineError, ValueError):
    """Arrays handed to ``Session.run`` do not match the model's inputs."""


class ArgumentError(EngineError, ValueError, TypeError):
    """An argument of an engine function has the wrong type or value (``threads=-1``,
    ``prepare(2.5)``); a ValueError and a TypeError too, as Python's own would be."""


class ModelFormatError(EngineError):
    """A model file is truncated, corrupted, of another format, or hostile."""


class UnsupportedError(EngineError):
    """An op, backend or kernel variant is not available."""


def node_error(node, message, cls=None):
    """GraphError (or ``cls``, a subclass) naming the node; used by shape inference, passes
    and the planner."""
    return (cls or GraphError)(f"node '{node.name}' ({node.op}): {message}")


def node_error_from(node, exc):
    """``exc`` raised for ``node``'s shapes or attributes, as an error naming the node: its
    own class when it is a GraphError subclass (LimitError), else GraphError."""
    cls = type(exc) if isinstance(exc, GraphError) else GraphError
    return node_error(node, str(exc), cls)


class ConversionError(EngineError):
    """A PyTorch model or checkpoint cannot be converted: unsupported ops (all listed at
    once, with module path and source line), weight names or shapes that do not match, or a
    file that is not a state dict."""
