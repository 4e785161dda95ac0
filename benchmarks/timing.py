"""GPU timing for the benchmark scripts: the median of CUDA-event times after warm-up calls."""
import time

import torch


def timed(fn, smoke, budget_ms=300.0, at_least=5):
    """Median milliseconds over at least ``at_least`` calls (more while within ``budget_ms``), with CUDA events
    after two warm-up calls; the wall clock of one call in a smoke run (CPU interpreter)."""
    if smoke:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    fn(), fn()
    torch.cuda.synchronize()
    times = []
    while len(times) < at_least or (sum(times) < budget_ms and len(times) < 200):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return sorted(times)[len(times) // 2]
