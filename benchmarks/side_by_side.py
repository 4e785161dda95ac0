"""Jobs in spawned processes side by side. Compiling a Triton kernel takes seconds on one CPU core; on a GPU machine
with many cores, processes that each launch some configurations once fill Triton's on-disk cache together, and the
process that times the kernels then finds them compiled."""
import contextlib
import multiprocessing
import time
import traceback

import torch


def _call(job):
    function, args = job
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        return function(*args), None
    except Exception:
        return None, traceback.format_exc()[-1500:]


def run_side_by_side(jobs, workers, progress=None):
    """``[(result, None) or (None, traceback)]`` for ``jobs`` = ``[(function, args)]`` (module-level functions),
    in order; slowest first is best. ``progress(k, seconds)`` is called as the k-th result arrives (in order), so
    that a run cut short still shows how far it got. ``workers`` ≤ 1 runs them in this process. Leaving early (an
    exception, SIGTERM turned into one) terminates the workers."""
    started, results = time.perf_counter(), []
    with contextlib.ExitStack() as stack:
        if workers <= 1:
            outcomes = map(_call, jobs)
        else:
            context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
            pool = stack.enter_context(context.Pool(min(workers, len(jobs))))
            outcomes = pool.imap(_call, jobs, chunksize=1)
        for outcome in outcomes:
            results.append(outcome)
            if progress is not None:
                progress(len(results), time.perf_counter() - started)
    return results
