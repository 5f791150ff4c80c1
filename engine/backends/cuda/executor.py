"""What the CUDA plans share: the runtime contract (``execute``, ``profile``, ``steps``,
``memory``), whatever executes the records (a GPU through CuPy, or the CPU emulator)."""

import threading
import time

import numpy as np

from ..base import plan_rows


class PlanBase:
    """A bound device program.  Subclasses implement ``_write(name, array)``, ``_run()``,
    ``_run_steps(indices)`` (eager, in order), ``_read(name, device)`` and ``_sync()``."""

    device_kind = "cuda"

    def __init__(self, program):
        self.program = program
        self.steps = program.steps
        self.memory = program.memory
        self.shapes = program.shapes
        self.input_shapes = {k: tuple(program.shapes[k]) for k in program.inputs}
        # One arena per plan: concurrent runs of a session are serialised here (the
        # session calls execute outside its own lock).
        self.lock = threading.RLock()

    def execute(self, feeds, outputs, device_outputs=False):
        with self.lock:
            return self._execute(feeds, outputs, device_outputs)

    def _execute(self, feeds, outputs, device_outputs):
        for name, arr in feeds.items():
            self._write(name, arr)
        self._run()
        return [self._output(o, device_outputs) for o in outputs]

    def rows(self, times=None):
        """A PlanRow per step (Session.plan); ``times`` ({node name: seconds}) fills seconds
        and share."""
        return plan_rows(self.steps, self.shapes, times, lambda s: self.device_kind)

    def _output(self, name, device):
        const = self.program.constant_outputs.get(name)
        if const is not None:
            return self._from_host(np.array(const, dtype=np.float32), device)
        if name not in self.program.slots:
            raise KeyError(f"value {name!r} was not planned as an output of this CUDA plan")
        return self._read(name, device)

    def _from_host(self, arr, device):
        return arr

    def profile(self, feeds, repeat=1):
        """Per-node time in seconds (min over ``repeat`` eager runs, no CUDA graph)."""
        with self.lock:
            return self._profile(feeds, repeat)

    def _profile(self, feeds, repeat):
        for name, arr in feeds.items():
            self._write(name, arr)
        best = {}
        for _ in range(max(1, int(repeat))):
            for i, s in enumerate(self.steps):
                dt = self._time_step(i)
                best[s.node.name] = min(dt, best.get(s.node.name, dt))
        return best

    def _time_step(self, i):
        t0 = time.perf_counter()
        self._run_steps([i])
        self._sync()
        return time.perf_counter() - t0

    def _sync(self):
        pass
