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


def run_many(sess, model, files, read, *, batch=16, top=3, output=None, raw=None,
             quiet=False, decode_threads=None, probabilities=None):
    """Run every file through ``sess`` in batches; returns a summary dict.

    ``read(path) -> array``: one sample (the CLI's .npy / image reader, which checks it
    against the model input).  ``probabilities(logits) -> probs``: for class outputs."""
    if batch < 1:
        raise EngineError(f"--batch must be at least 1, got {batch}")
    labels = model.metadata.get("labels")
    labels = labels if isinstance(labels, list) else []
    writer = _Writer(output, top)
    raws, skipped = [], []
    threads = decode_threads or min(4, os.cpu_count() or 1)
    bar = _progress(len(files), quiet)
    t0 = time.perf_counter()
    done = 0

    def load(path):
        try:
            return read(path), None
        except EngineError as e:               # unreadable, wrong shape: skipped, counted
            return None, str(e).splitlines()[0]

    def flush(paths, arrays):
        nonlocal done
        out = sess.run(np.stack(arrays))[0]
        class_out = out.ndim == 2
        probs = probabilities(out) if class_out and probabilities else out
        for i, path in enumerate(paths):
            pairs = None
            if class_out:
                order = np.argsort(-probs[i], kind="stable")[:top]
                pairs = [(labels[k] if k < len(labels) else str(int(k)), float(probs[i][k]))
                         for k in order]
            writer.row(path, pairs, out[i])
            if raw is not None:
                raws.append(out[i])
        done += len(paths)

    try:
        with cf.ThreadPoolExecutor(max_workers=threads) as pool:
            window = max(2 * batch, 2 * threads)        # decoded ahead of the session
            pending = [pool.submit(load, p) for p in files[:window]]
            nxt = len(pending)
            paths, arrays = [], []
            for k, path in enumerate(files):
                a, why = pending[k].result()
                pending[k] = None
                if nxt < len(files):
                    pending.append(pool.submit(load, files[nxt]))
                    nxt += 1
                if a is None:
                    skipped.append((path, why))
                    print(f"warning: skipped {path}: {why}", file=sys.stderr)
                else:
                    paths.append(path)
                    arrays.append(a)
                if len(arrays) == batch:
                    flush(paths, arrays)
                    paths, arrays = [], []
                if bar is not None:
                    bar.update(1)
            if arrays:
                flush(paths, arrays)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    if raw is not None:
        if raws:
            np.save(raw, np.stack(raws))
        else:
            np.save(raw, np.zeros((0,), np.float32))
    return {"inputs": len(files), "done": done, "skipped": skipped, "seconds": seconds}
