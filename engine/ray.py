"""Batch inference on a Ray cluster with Ray Data (optional: ``pip install "engine[ray]"``).

One session per actor, running as many threads as the CPUs Ray gave the actor:

    import ray, engine.ray
    ds = ray.data.from_items([{"path": p} for p in paths])      # or ray.data.read_images(...)
    ds = ds.map_batches(engine.ray.Predictor, batch_size=32, num_cpus=2,
                        compute=ray.data.ActorPoolStrategy(size=4),
                        fn_constructor_kwargs={"model": "model.safetensors", "column": "path",
                                               "top": 5})

The input column (``column``, default ``"image"``) holds file paths (decoded on the
workers with the preprocessing stored in the model, so the workers must see the files),
decoded uint8 pixels (H x W x C, as ``ray.data.read_images`` gives them; the same
preprocessing from the pixels on), or prepared float32 arrays of the model's input shape.
Each batch gains the columns ``output`` (the model's first output per row), ``error``
(``""``, or why the row's file could not be read; its ``output`` is then NaN) and, with
``top=K`` on a classifier, ``labels`` and ``probs`` (the K best classes per row).

``engine run MODEL DIR --ray [ADDRESS]`` runs folder inference this way (``run_folder``):
the same slots of ``--batch`` files as in one process, so the rows are the same.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np

from .errors import EngineError, InputError
from .batch import Rows, batches, top_k, try_read
from .inputs import image_from_pixels, probabilities, read_one
from .ir import Model

DEFAULT_THREADS_PER_ACTOR = 2


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError('Ray inference needs Ray Data: pip install "engine[ray]" '
                          '(or pip install "ray[data]")') from None
    return ray


def _actor_cpus():
    """The CPUs Ray assigned to this actor (None outside Ray, or when none were asked)."""
    try:
        import ray
        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            return max(1, int(cpus)) if cpus else None
    except Exception:       # outside a worker: no runtime context to ask
        return None
    return None


class Predictor:
    """A callable class for ``ray.data.Dataset.map_batches`` (see the module docstring).

    ``model``: a model file's path (visible to the workers), its bytes, or an
    ``engine.Model``; ``threads``: default, the CPUs Ray gave the actor; ``session_options``:
    more ``engine.Session`` arguments (``isa``, ``tune``, ...)."""

    def __init__(self, model: Union[str, os.PathLike, bytes, bytearray, memoryview, Model],
                 column: str = "image", output_column: str = "output", top: int = 0,
                 threads: Optional[int] = None, **session_options: Any) -> None:
        """Load the model and create this actor's session (``threads`` threads, default the
        actor's CPUs); ``column`` is read, ``output_column`` written, ``top`` > 0 adds the
        ``labels`` / ``probs`` columns."""
        from .format import load, loads
        from .runtime import Session
        if isinstance(model, (bytes, bytearray, memoryview)):
            model = loads(bytes(model), source="<model bytes>")
        elif not isinstance(model, Model):
            model = load(model)
        if not isinstance(top, int) or isinstance(top, bool) or top < 0:
            raise InputError(f"top must be an int >= 0, got {top!r}")
        self.model, self.column, self.output_column, self.top = \
            model, column, output_column, top
        threads = threads or _actor_cpus()
        self.session = Session(model, threads=threads, **session_options)
        self._decoders = cf.ThreadPoolExecutor(max_workers=self.session.threads)
        labels = model.metadata.get("labels")
        self._labels = labels if isinstance(labels, list) else []
        self._already = model.metadata.get("output") == "probabilities"
        self._shape = tuple(model.inputs[0].shape)
        self._out_row = None                # one output row's shape, once known

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """One Ray batch ({column: array}, as ``batch_format="numpy"`` gives it): the same
        columns plus ``output_column``, ``error`` and, with ``top``, ``labels`` and
        ``probs``.  Rows whose file cannot be read get NaN outputs and the reason in
        ``error``."""
        if self.column not in batch:
            raise InputError(f"the batch has no column {self.column!r} (columns: "
                             f"{', '.join(map(str, batch))}); pass column=...")
        samples, errors = self._samples(batch[self.column])
        ok = [i for i, e in enumerate(errors) if not e]
        out = self.session.run(np.stack([samples[i] for i in ok]))[0] if ok else None
        if out is not None:
            self._out_row = out.shape[1:]
        if self._out_row is None:           # nothing readable yet: ask the model
            self._out_row = self.session.run(
                np.zeros((1,) + tuple(1 if d is None else d for d in self._shape[1:]),
                         np.float32))[0].shape[1:]
        full = np.full((len(errors),) + self._out_row, np.nan, np.float32)
        if ok:
            full[ok] = out
        result = dict(batch)
        result[self.output_column] = full
        result["error"] = np.asarray(errors, dtype=object)
        if self.top and full.ndim == 2:
            probs = probabilities(full, self._already)
            pairs = [top_k(p, self._labels, self.top) if not e else [] for p, e in
                     zip(probs, errors)]
            result["labels"] = np.asarray([[lab for lab, _ in p] for p in pairs], dtype=object)
            result["probs"] = np.asarray([[pr for _, pr in p] for p in pairs], dtype=object)
        return result

    def _samples(self, column):
        """(samples, errors): one input array per row, or "" / why not."""
        rows = list(column) if not isinstance(column, np.ndarray) or column.dtype == object \
            or column.dtype.kind in "US" else column
        first = rows[0] if len(rows) else None
        if isinstance(first, (str, bytes, np.str_, np.bytes_)):      # file paths, read here
            read = lambda p: read_one(p.decode() if isinstance(p, bytes) else str(p),
                                      self.model, self.session.allow_nonfinite)
            got = list(self._decoders.map(lambda p: try_read(read, p), rows))
            return [a for a, _ in got], [why or "" for _, why in got]
        arrays = [np.asarray(r) for r in rows]
        if arrays and arrays[0].dtype == np.uint8:                    # decoded pixels
            prep = self.model.metadata.get("preprocessing") or {}
            got = list(self._decoders.map(
                lambda a: try_read(lambda x: image_from_pixels(x, self._shape, prep), a),
                arrays))
            return [a for a, _ in got], [why or "" for _, why in got]
        return arrays, [""] * len(arrays)                             # prepared arrays


def run_folder(model: Model, files: Sequence[str], *, model_path: Optional[str] = None,
               address: Optional[str] = None, batch: int = 16, top: int = 3,
               output: Optional[str] = None, raw: Optional[str] = None, quiet: bool = False,
               threads: Optional[int] = None, actors: Optional[int] = None,
               allow_nonfinite: bool = False) -> dict[str, Any]:
    """``engine run MODEL DIR --ray [ADDRESS]``: the files through ``Predictor`` actors on a
    Ray cluster (a local one without ``address``), the rows written here in input order
    exactly as ``engine.batch.run_many`` writes them.  Returns the same summary dict.

    ``model_path``: the model's file, which the workers then load themselves (it must be
    visible to them, like the input files); without it the model travels as bytes."""
    ray = _ray()
    from .format import to_bytes
    import pyarrow as pa
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its plan and progress notes
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True         # rows come back in input order
    ctx.enable_progress_bars = False                    # ours below, as in one process
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    # an actor asking for more CPUs than any one node has would wait for ever
    node_cpus = max([int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes()
                     if n.get("Alive")] or [cpus])
    threads = threads or min(DEFAULT_THREADS_PER_ACTOR, node_cpus)
    if threads > node_cpus:
        raise EngineError(f"--threads {threads} per Ray actor, but the largest node of the "
                          f"cluster has {node_cpus} CPU{'s' if node_cpus > 1 else ''}; "
                          f"ask for at most that many")
    actors = actors or max(1, cpus // threads)
    slots = batches(files, batch)
    # one block per few slots, each a whole number of slots: Ray's batches are the slots
    per_block = max(1, min(64, len(slots) // (4 * actors)))
    blocks = [pa.table({"path": [p for slot in slots[i:i + per_block] for p in slot]})
              for i in range(0, len(slots), per_block)]
    ds = ray.data.from_arrow(blocks).map_batches(
        Predictor, batch_size=batch, batch_format="numpy", num_cpus=threads,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"model": os.path.abspath(model_path) if model_path
                               else to_bytes(model), "column": "path",
                               "threads": threads, "allow_nonfinite": allow_nonfinite})
    rows = Rows(model, len(files), top=top, output=output, raw=raw, quiet=quiet)
    t0 = time.perf_counter()
    try:
        for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
            kept, outs = [], []
            for path, out, why in zip(b["path"], b["output"], b["error"]):
                if why:
                    rows.skip(str(path), why)
                else:
                    kept.append(str(path))
                    outs.append(out)
            if kept:
                rows.add(kept, np.stack(outs))
    finally:
        rows.close()
    return {"inputs": len(files), "done": rows.done, "skipped": rows.skipped,
            "seconds": time.perf_counter() - t0, "actors": actors, "threads": threads}
