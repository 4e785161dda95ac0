"""Jobs in spawned processes side by side. Compiling a Triton kernel takes seconds on one CPU core; on a GPU machine
with many cores, processes that each launch some configurations once fill Triton's on-disk cache together, and the
process that times the kernels then finds them compiled."""
import multiprocessing
import traceback

import torch


def _call(job):
    function, args = job
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        return function(*args), None
    except Exception:
        return None, traceback.format_exc()[-1500:]


def run_side_by_side(jobs, workers):
    """``[(result, None) or (None, traceback)]`` for ``jobs`` = ``[(function, args)]`` (module-level functions),
    in order; slowest first is best. ``workers`` ≤ 1 runs them in this process. Leaving early (an exception, SIGTERM
    turned into one) terminates the workers."""
    if workers <= 1:
        return [_call(job) for job in jobs]
    context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
    with context.Pool(min(workers, len(jobs))) as pool:
        return pool.map(_call, jobs, chunksize=1)
