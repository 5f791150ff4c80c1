"""Many inputs through one session: ``engine run MODEL DIR_OR_GLOB_OR_LIST [--output ...]``.

    rows, summary = run_many(session, model, ["photos/"], batch=16, top=5,
                             output="preds.csv")

Inputs are image files and ``.npy`` arrays named by directories (their files, sorted),
glob patterns, list files (``.txt``: one path per line, relative to the list) or paths.
A few threads decode (Pillow, with the preprocessing stored in the model) ahead of the
session, which runs each batch with the GIL released, so decoding overlaps inference.
Every input gives one row, in input order: a CSV or JSON Lines file with the top-K labels
and probabilities (``--output``), and optionally every raw output in one ``.npy``
(``--raw``).  An unreadable file is skipped with a warning on stderr and counted in the
summary: nothing is dropped silently.  A progress bar (tqdm, when installed) runs while
stderr is a terminal.
"""

import concurrent.futures as cf
import csv
import glob
import json
import os
import sys
import time

import numpy as np

from .errors import EngineError, InputError
from .inputs import probabilities

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                    ".ppm", ".pgm")
INPUT_EXTENSIONS = IMAGE_EXTENSIONS + (".npy",)
MAX_FILES = 10_000_000


def is_many(specs):
    """Whether the command line names inputs in bulk (a directory, a glob or a list file)."""
    return any(os.path.isdir(s) or _is_glob(s) or s.lower().endswith(".txt") for s in specs)


def _is_glob(s):
    return any(c in s for c in "*?[") and not os.path.exists(s)


def collect(specs):
    """The input files the specs name, in order (directories sorted, globs sorted)."""
    files = []
    for s in specs:
        if os.path.isdir(s):
            found = sorted(os.path.join(s, f) for f in os.listdir(s)
                           if f.lower().endswith(INPUT_EXTENSIONS))
            if not found:
                raise InputError(f"directory {s!r} holds no images or .npy files "
                                 f"({', '.join(INPUT_EXTENSIONS)})")
            files += found
        elif _is_glob(s):
            found = sorted(glob.glob(s, recursive=True))
            if not found:
                raise InputError(f"the pattern {s!r} matches no file")
            files += found
        elif s.lower().endswith(".txt"):
            files += _list_file(s)
        else:
            files.append(s)
        if len(files) > MAX_FILES:
            raise InputError(f"more than {MAX_FILES} input files")
    return files


def _list_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the list file {path!r}: {e}") from None
    base = os.path.dirname(os.path.abspath(path))
    out = [ln if os.path.isabs(ln) else os.path.join(base, ln)
           for ln in lines if ln and not ln.startswith("#")]
    if not out:
        raise InputError(f"the list file {path!r} names no files")
    return out


class _Writer:
    """Rows to a CSV / JSON Lines file, or printed (no --output)."""

    def __init__(self, path, top):
        self.path, self.top, self.f, self.csv = path, top, None, None
        if path is None:
            return
        kind = os.path.splitext(path)[1].lower()
        if kind not in (".csv", ".jsonl"):
            raise EngineError(f"--output {path!r}: name a .csv or .jsonl file")
        self.f = open(path, "w", encoding="utf-8", newline="")
        if kind == ".csv":
            self.csv = csv.writer(self.f)
            head = ["path"]
            for k in range(1, top + 1):
                head += [f"label{k}", f"prob{k}"]
            self.csv.writerow(head)

    def row(self, path, pairs, out=None):
        if self.f is None:
            text = ", ".join(f"{lab} ({p:.3f})" for lab, p in pairs) if pairs else \
                f"output shape {out.shape}, mean {out.mean():.5g}"
            print(f"{path}: {text}")
        elif self.csv is not None:
            cells = [path]
            for lab, p in pairs:
                cells += [lab, f"{p:.6g}"]
            self.csv.writerow(cells)
        else:
            rec = {"path": path}
            if pairs:
                rec["top"] = [{"label": lab, "prob": round(float(p), 6)} for lab, p in pairs]
            else:
                rec["output_shape"] = list(out.shape)
            self.f.write(json.dumps(rec) + "\n")

    def close(self):
        if self.f is not None:
            self.f.close()


def _progress(total, quiet):
    """A tqdm bar on a terminal (None when quiet, not a terminal, or tqdm is missing)."""
    if quiet or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)


class Rows:
    """Where results go, one row per input in input order, whichever path computed them
    (this process or Ray workers): the --output file or stdout, the --raw outputs, the
    skipped files (warned on stderr) and the progress bar."""

    def __init__(self, model, total, *, top=3, output=None, raw=None, quiet=False):
        labels = model.metadata.get("labels")
        self.labels = labels if isinstance(labels, list) else []
        self.already = model.metadata.get("output") == "probabilities"
        self.top, self.raw = top, raw
        self.writer = _Writer(output, top)
        self.bar = _progress(total, quiet)
        self.raws, self.skipped, self.done = [], [], 0

    def add(self, paths, outputs):
        """A batch's rows: ``outputs[i]`` is the first output for ``paths[i]``."""
        class_out = outputs.ndim == 2
        probs = probabilities(outputs, self.already) if class_out else outputs
        for i, path in enumerate(paths):
            pairs = top_k(probs[i], self.labels, self.top) if class_out else None
            self.writer.row(path, pairs, outputs[i])
            if self.raw is not None:
                self.raws.append(outputs[i])
        self.done += len(paths)
        self._advance(len(paths))

    def skip(self, path, why):
        self.skipped.append((path, why))
        print(f"warning: skipped {path}: {why}", file=sys.stderr)
        self._advance(1)

    def _advance(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        self.writer.close()
        if self.bar is not None:
            self.bar.close()
        if self.raw is not None:
            np.save(self.raw, np.stack(self.raws) if self.raws else np.zeros((0,), np.float32))


def top_k(probs, labels, k):
    """[(label, probability)] of the k largest, ties in class order."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(labels[j] if j < len(labels) else str(int(j)), float(probs[j])) for j in order]


def batches(files, batch):
    """The files in slots of ``batch``: the same slots in this process and on Ray, so a
    file's output comes from the same batch composition either way (the kernels may
    round a sample's output differently at another batch size).  An unreadable file
    leaves its slot one input short."""
    if batch < 1:
        raise EngineError(f"--batch must be at least 1, got {batch}")
    return [files[i:i + batch] for i in range(0, len(files), batch)]


def try_read(read, path):
    try:
        return read(path), None
    except EngineError as e:               # unreadable, wrong shape: skipped, counted
        return None, str(e).splitlines()[0]


def run_many(sess, model, files, read, *, batch=16, top=3, output=None, raw=None,
             quiet=False, decode_threads=None):
    """Run every file through ``sess`` in slots of ``batch``; returns a summary dict.

    ``read(path) -> array``: one sample, checked against the model input (the command
    line's reader, ``engine.inputs.read_one``).  A few threads decode ahead of the session,
    which runs with the GIL released, so decoding overlaps inference."""
    slots = batches(files, batch)
    rows = Rows(model, len(files), top=top, output=output, raw=raw, quiet=quiet)
    threads = decode_threads or min(4, os.cpu_count() or 1)
    t0 = time.perf_counter()
    try:
        with cf.ThreadPoolExecutor(max_workers=threads) as pool:
            ahead = max(2, -(-2 * threads // batch))        # slots decoded ahead
            pending = [[pool.submit(try_read, read, p) for p in slot] for slot in slots[:ahead]]
            for k, slot in enumerate(slots):
                decoded = [f.result() for f in pending[k]]
                pending[k] = None
                if k + ahead < len(slots):
                    pending.append([pool.submit(try_read, read, p) for p in slots[k + ahead]])
                arrays, kept = [], []
                for path, (a, why) in zip(slot, decoded):
                    if a is None:
                        rows.skip(path, why)
                    else:
                        arrays.append(a)
                        kept.append(path)
                if arrays:
                    rows.add(kept, sess.run(np.stack(arrays))[0])
    finally:
        rows.close()
    return {"inputs": len(files), "done": rows.done, "skipped": rows.skipped,
            "seconds": time.perf_counter() - t0}
