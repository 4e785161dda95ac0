"""How many CPU threads a run uses: fixed, or adapted to the cores other processes leave free.

Several runs on one machine is what parameter sweeps look like, and torch's default (every core, threads that
spin while they wait) collapses there: two default runs started together on 2 cores trained 16x slower than one
alone (BENCHMARKS.md), because each parallel region waits for a sibling thread the other process has descheduled.
:class:`CoreWatch` measures, between two calls, the CPU time the whole machine spent (``/proc/stat``) less this
process's own, and sets torch's threads to the cores left free (at least 1, at most torch's default), so that runs
that share the cores take one each and a run alone takes them all. The number of threads does not change a run's
numbers on the runs measured (the default network, compiled or not: metrics.csv byte for byte with 1 and 2).
Inductor's compiled CPU kernels follow the setting when they were compiled with every core (their OpenMP regions
then take the current thread count), so a run compiles before it first adapts.
"""
import os
import time

import torch



def fixed(requested):
    """The thread count asked for: ``--threads N``, else ``OMP_NUM_THREADS`` (None when neither is given)."""
    if requested not in (None, "auto"):
        return int(requested)
    given = os.environ.get("OMP_NUM_THREADS")
    return int(given) if given and given.isdigit() and int(given) >= 1 else None


class CoreWatch:
    """Adapts torch's thread count to the cores that other processes leave free (see the module)."""

    def __init__(self):
        self.most = torch.get_num_threads()
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.last = _snapshot()

    def adjust(self):
        """Set torch's threads to the cores left free since the last call; returns the count (unchanged when the
        machine's CPU time cannot be read)."""
        now = _snapshot()
        if now is None or self.last is None or now[0] <= self.last[0]:
            self.last = now
            return torch.get_num_threads()
        wall, busy, own = (b - a for a, b in zip(self.last, now))
        self.last = now
        others = max(0.0, (busy - own) / wall)
        threads = max(1, min(self.most, round(self.cores - others)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads


def _snapshot():
    """(wall seconds, CPU seconds the machine has been busy, CPU seconds of this process), or None off Linux."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return time.monotonic(), (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), time.process_time()
