"""How many of its threads a plan's run uses: chosen by measuring whole runs.

A session asks for ``threads``; a run uses that many unless fewer measure faster.  Fewer
win when the cores are not all ours: with another process busy on one of two cores, a
worker descheduled in the middle of a tile holds up the end of every grid for a time slice,
and a 2-thread run takes longer than a 1-thread run would (BENCHMARKS.md, "With another
process busy").  Each layer's grid is too short to tell; a whole run is not.

The chooser runs the current count and now and then probes a neighbour (one thread fewer
or more), keeping whichever is faster.  Probes are spaced so that what they cost (the
probe's measured excess over the current count) stays under ``PROBE_BUDGET`` of the run
time, and further apart while they keep losing; a run that gets markedly slower than the
level the last decision saw triggers a probe at once.  The count caps the calling thread's grids for one run
(``engine._kernels._lib.set_thread_cap``); the kernels' tiling stays that of ``threads``,
so the results do not depend on the count chosen.
"""

import threading

PROBE_BUDGET = 0.02     # probes cost about this share of the run time at most
MIN_INTERVAL = 4        # runs between two probes at least; doubled after each probe
MAX_BACKOFF = 3         # that loses in a row, up to 8x
SLOWDOWN = 1.2          # the current count's runs this much slower than at the last
                        # decision: conditions changed, probe now
WIN = 0.97              # a probe must beat the current count by 3 % to take over
SMOOTHING = 0.25        # weight of a new run in the current count's running mean


class ThreadChooser:
    """Picks the thread count of each run of one plan (``pick``) from the measured times
    of earlier runs (``record``).  Safe to share between Python threads."""

    def __init__(self, threads):
        self.threads = threads
        self.current = threads
        self.mean = None          # running mean of the current count's run seconds
        self.level = None         # that mean when the current count was last confirmed
        self.runs = 0
        self.losses = 0           # probes lost in a row
        self.recorded = 0
        self.next_probe = MIN_INTERVAL
        self.probing = None       # the count a run in flight is probing
        self._lock = threading.Lock()

    def pick(self):
        """The thread count for the next run."""
        if self.threads <= 1:
            return 1
        with self._lock:
            self.runs += 1
            if self.probing is None and self.runs >= self.next_probe and self.mean:
                self.probing = self._neighbour()
                return self.probing
            return self.current

    def _neighbour(self):
        if self.current == self.threads:
            return self.current - 1
        if self.current == 1:
            return 2
        # in between: alternate down and up
        return self.current - 1 if self.runs % 2 else self.current + 1

    def record(self, count, seconds):
        """The run at ``count`` threads (from ``pick``) took ``seconds``."""
        if self.threads <= 1 or seconds <= 0:
            return
        with self._lock:
            self.recorded += 1
            if self.recorded == 1:     # the first run also pays for page faults and caches
                return
            if count == self.probing:
                self.probing = None
                self._decide(count, seconds)
            elif count == self.current:
                self.mean = seconds if self.mean is None else \
                    self.mean + SMOOTHING * (seconds - self.mean)
                if self.level is None:
                    self.level = self.mean
                elif self.mean > SLOWDOWN * self.level:
                    self.next_probe = min(self.next_probe, self.runs + 1)

    def _decide(self, count, seconds):
        if seconds < WIN * self.mean:
            # the probe wins: switch, and look again soon (the old count's figure is stale)
            self.current, self.mean, self.level = count, seconds, seconds
            self.losses = 0
            self.next_probe = self.runs + MIN_INTERVAL
            return
        self.level = self.mean
        self.losses = min(self.losses + 1, MAX_BACKOFF)
        # space the next probe so that its expected excess is PROBE_BUDGET of the runs
        # in between, and probes that keep losing come less often
        excess = max(seconds - self.mean, 0.0)
        interval = excess / (PROBE_BUDGET * self.mean)
        self.next_probe = self.runs + max(MIN_INTERVAL << self.losses, int(interval))

    def state(self):
        """{"threads", "current", "mean_ms", "runs"}: what the chooser settled on."""
        with self._lock:
            return {"threads": self.threads, "current": self.current,
                    "mean_ms": None if self.mean is None else self.mean * 1e3,
                    "runs": self.runs}
