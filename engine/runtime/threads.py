"""How many of its threads a plan's run uses: chosen by measuring whole runs.

A session asks for ``threads``; a run uses that many unless fewer measure faster.  Fewer
win when the cores are not all ours: with another process busy on one of two cores, a
worker descheduled in the middle of a tile holds up the end of every grid for a time slice,
and a 2-thread run takes longer than a 1-thread run would (BENCHMARKS.md, "With another
process busy").  Each layer's grid is too short to tell; a whole run is not.

The chooser runs the current count and now and then probes a neighbour (one thread fewer
or more), keeping whichever is faster.  Probes are spaced so that what they cost (the
probe's measured excess over the current count) stays under ``PROBE_BUDGET`` of the run
time, and further apart while they keep losing.  The current count's time is the median of
its last few runs (robust to an odd slow run, quick to follow a change); when it gets
markedly slower than at the last decision, a probe follows at once.

The count caps the calling thread's kernel calls for one run
(``engine._kernels._lib.set_thread_cap``): they tile for the threads they get, and the
results do not depend on the count chosen.
"""

import statistics
import threading
from collections import deque

PROBE_BUDGET = 0.02     # probes cost about this share of the run time at most
MIN_INTERVAL = 4        # runs between two probes at least; doubled after each probe
MAX_BACKOFF = 3         # that loses in a row, up to 8x
WINDOW = 5              # the current count's time: median of its last WINDOW runs
SLOWDOWN = 1.2          # that time this much above its value at the last decision:
                        # conditions changed, probe now
WIN = 0.97              # a probe must beat the current count by 3 % to take over


class ThreadChooser:
    """Picks the thread count of each run of one plan (``pick``) from the measured times
    of earlier runs (``record``).  Safe to share between Python threads."""

    def __init__(self, threads):
        self.threads = threads
        self.current = threads
        self.recent = deque(maxlen=WINDOW)    # the current count's last run seconds
        self.level = None         # their median when the current count was last confirmed
        self.runs = 0
        self.losses = 0           # probes lost in a row
        self.recorded = 0
        self.next_probe = MIN_INTERVAL
        self.probing = None       # the count a run in flight is probing
        self._lock = threading.Lock()

    def _time(self):
        return statistics.median(self.recent) if self.recent else None

    def pick(self):
        """The thread count for the next run."""
        if self.threads <= 1:
            return 1
        with self._lock:
            self.runs += 1
            if self.probing is None and self.runs >= self.next_probe and self.recent:
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
                self.recent.append(seconds)
                now = self._time()
                if self.level is None:
                    self.level = now
                elif now > SLOWDOWN * self.level:
                    self.next_probe = min(self.next_probe, self.runs + 1)

    def _decide(self, count, seconds):
        now = self._time()
        if seconds < WIN * now:
            # the probe wins: switch, and look again soon (the old count's figure is stale)
            self.current, self.level = count, seconds
            self.recent.clear()
            self.recent.append(seconds)
            self.losses = 0
            self.next_probe = self.runs + MIN_INTERVAL
            return
        self.level = now
        self.losses = min(self.losses + 1, MAX_BACKOFF)
        # space the next probe so that its expected excess is PROBE_BUDGET of the runs
        # in between, and probes that keep losing come less often
        excess = max(seconds - now, 0.0)
        interval = excess / (PROBE_BUDGET * now)
        self.next_probe = self.runs + max(MIN_INTERVAL << self.losses, int(interval))

    def state(self):
        """{"threads", "current", "time_ms", "runs"}: the count settled on and its time."""
        with self._lock:
            now = self._time()
            return {"threads": self.threads, "current": self.current,
                    "time_ms": None if now is None else now * 1e3, "runs": self.runs}
