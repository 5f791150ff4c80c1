"""The public API is documented and annotated, and the package ships ``py.typed``.

Public API: every name in ``engine.__all__`` (modules and ``__version__`` aside), plus
``engine.zoo.get`` / ``names`` / ``info`` and ``engine.ray.Predictor`` / ``run_folder``.
For a class: its docstring, and every public method or property defined in its body
(``vars(cls)``: names without a leading underscore, plus ``__init__`` and ``__call__``).
Each test collects every offender and fails once, listing them all.
"""

import dataclasses
import importlib.resources
import inspect
import types
import typing

import engine
import engine.ray
import engine.zoo

EXTRA = [(engine.zoo, "get"), (engine.zoo, "names"), (engine.zoo, "info"),
         (engine.ray, "Predictor"), (engine.ray, "run_folder")]
DUNDERS = ("__init__", "__call__")
UNANNOTATED = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _public_objects():
    """[(qualified name, object)] for the functions and classes of the public API."""
    objs = []
    for name in engine.__all__:
        obj = getattr(engine, name)
        if isinstance(obj, types.ModuleType) or not (inspect.isclass(obj) or callable(obj)):
            continue                    # engine.convert, engine.limits, __version__
        objs.append((f"engine.{name}", obj))
    objs += [(f"{mod.__name__}.{name}", getattr(mod, name)) for mod, name in EXTRA]
    return objs


def _members(cls):
    """[(name, member)]: the public methods, static/class methods and properties defined
    in the body of ``cls`` (aliases such as ``Builder.clamp`` included)."""
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_") and name not in DUNDERS:
            continue
        if isinstance(member, (staticmethod, classmethod, property)) or inspect.isfunction(member):
            out.append((name, member))
    return out


def _generated(cls, name):
    """A dataclass's generated ``__init__`` (documented by the class docstring)."""
    return name == "__init__" and dataclasses.is_dataclass(cls)


def _documented_items():
    """[(qualified name, object whose __doc__ must be non-empty)]."""
    items = []
    for qual, obj in _public_objects():
        items.append((qual, obj))
        if inspect.isclass(obj):
            for name, member in _members(obj):
                if not _generated(obj, name):
                    items.append((f"{qual}.{name}", member))
    return items


def _functions():
    """[(qualified name, function)]: every public function and method (not properties)
    whose signature must be annotated; exception classes bring none of their own."""
    funcs = []
    for qual, obj in _public_objects():
        if not inspect.isclass(obj):
            funcs.append((qual, obj))
            continue
        if issubclass(obj, BaseException):
            continue
        for name, member in _members(obj):
            if isinstance(member, property):
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            funcs.append((f"{qual}.{name}", member))
    return funcs


def _doc(obj):
    doc = obj.fget.__doc__ if isinstance(obj, property) and obj.fget else obj.__doc__
    if isinstance(obj, (staticmethod, classmethod)):
        doc = obj.__func__.__doc__
    return (doc or "").strip()


def test_public_api_is_found():
    names = {q for q, _ in _documented_items()}
    for expected in ("engine.Builder", "engine.Builder.conv2d", "engine.Session.run",
                     "engine.Model.input_names", "engine.load", "engine.zoo.get",
                     "engine.ray.Predictor.__call__", "engine.GraphError"):
        assert expected in names
    assert len(_functions()) > 100


def test_public_api_has_docstrings():
    missing = [q for q, obj in _documented_items() if not _doc(obj)]
    assert missing == [], f"{len(missing)} public names without a docstring:\n  " + \
        "\n  ".join(missing)


def test_public_api_is_annotated():
    problems = []
    for qual, fn in _functions():
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())
        if params and params[0].name in ("self", "cls"):
            params = params[1:]
        bare = [p.name for p in params
                if p.kind not in UNANNOTATED and p.annotation is inspect.Parameter.empty]
        if bare:
            problems.append(f"{qual}: parameter(s) {', '.join(bare)} not annotated")
        if sig.return_annotation is inspect.Signature.empty:
            problems.append(f"{qual}: no return annotation")
    assert problems == [], f"{len(problems)} annotation problems:\n  " + "\n  ".join(problems)


def test_public_annotations_resolve():
    failures = []
    for qual, fn in _functions():
        try:
            typing.get_type_hints(fn)
        except Exception as e:  # noqa: BLE001 -- any failure to resolve is the finding
            failures.append(f"{qual}: {type(e).__name__}: {e}")
        # ``X | Y`` only evaluates from Python 3.10: get_type_hints would fail on 3.9
        pep604 = [k for k, a in fn.__annotations__.items() if isinstance(a, str) and "|" in a]
        if pep604:
            failures.append(f"{qual}: {', '.join(pep604)} written X | Y (use Optional / "
                            f"Union: Python 3.9 is supported)")
    assert failures == [], f"{len(failures)} unresolvable annotations:\n  " + \
        "\n  ".join(failures)


def test_package_ships_py_typed():
    marker = importlib.resources.files("engine") / "py.typed"
    assert marker.is_file(), f"{marker} is missing: PEP 561 marker for type checkers"
