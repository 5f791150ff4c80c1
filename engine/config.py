"""Runtime configuration: thread defaults and what this build of engine can do."""

from __future__ import annotations

import os
import platform
from typing import Optional, TextIO

from . import __version__


def physical_cores():
    """Physical cores this process may use: SMT siblings count once; cgroup quotas apply."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:          # not Linux
        allowed = set(range(os.cpu_count() or 1))
    cores = set()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = phys = None
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "processor":
                    cpu, phys = int(val), "0"
                elif key == "physical id":
                    phys = val
                elif key == "core id" and cpu in allowed:
                    cores.add((phys, val))
    except (OSError, ValueError):
        pass
    n = len(cores) or len(allowed) or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(n, quota)) if quota else n


def _cgroup_cpu_quota():
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, period = f.read().split()[:2]
        if q != "max":
            return max(1, -(-int(q) // int(period)))
    except (OSError, ValueError):
        pass
    return None


def build_info():
    """What the compiled kernels were built with and run on: the instruction set chosen
    (and how: auto / ENGINE_ISA / set_isa), the ones available, the thread pool, the GEMM
    tile."""
    try:
        from ._kernels import build_config
        return dict(build_config())
    except ImportError as e:
        msg = str(e)
        if "ENGINE_ISA" in msg:
            return {"kernels": f"unavailable ({msg})"}
        return {"kernels": f"not built ({msg})"}


def config_dict():
    import numpy
    info = {
        "engine": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "machine": platform.machine(),
        "default_threads": physical_cores(),
    }
    info.update(build_info())
    return info


def measured_peak(threads=None, seconds=0.3, isa=None):
    """{threads: GFLOP/s}: this machine's floating-point peak measured now at the session
    level (engine._kernels.gemm.fma_peak: register-only multiply-add chains, 2 flops each),
    on 1 thread and on ``threads`` (default: the physical cores).  On a shared machine it
    moves with the load: measure it next to the figures it is a yardstick for."""
    from ._kernels import gemm
    threads = physical_cores() if threads is None else threads
    return {t: gemm.fma_peak(seconds, t, isa=isa) / 1e9 for t in sorted({1, threads})}


def show_config(file: Optional[TextIO] = None, peak: bool = False) -> None:
    """Print the build and runtime configuration (instruction set, thread pool, threads)
    to ``file`` (default stdout); with ``peak``, also the measured floating-point peak
    (measured_peak)."""
    info = config_dict()
    if peak and "isa" in info:
        info["peak_gflops"] = ", ".join(f"{g:.1f} on {t} thread{'s' if t > 1 else ''}"
                                        for t, g in measured_peak().items())
    for k, v in info.items():
        if isinstance(v, (list, tuple)):
            v = ", ".join(str(x) for x in v)
        print(f"{k:>16}: {v}", file=file)
