"""Many processes, one run: data-parallel training and sharded evaluation on torch.distributed.

Started by ``torchrun --nproc_per_node K -m pinnfast …`` (or ``pinnfast … --nproc K``), each process (rank) holds
the whole model and draws its own batch from its own random stream. After each backward pass the gradients are
averaged over the ranks by one all-reduce of their concatenation (explicit, so that it works the same after a
fused kernel's backward or inside a CUDA graph), which makes a step equal to one process's step on the union of
the ranks' batches and keeps parameters, λ and ν identical on every rank. Rank 0 writes the run folder and speaks
for the run. Collectives go over gloo for CPU tensors and NCCL for CUDA tensors. Without a process group every
helper here is that of a world of one and costs nothing.
"""
import contextlib
import logging
import os
import sys
import uuid

import numpy as np
import torch
import torch.distributed as dist

from .errors import PinnfastError


def launched():
    """Whether torchrun started this process (its environment names a rank and a world size)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextlib.contextmanager
def joined():
    """The block runs in torchrun's process group when torchrun started this process (joined here, left at the
    end); yields this process's :class:`Ranks`."""
    if not launched() or dist.is_initialized():
        yield Ranks()
        return
    nccl = torch.cuda.is_available() and dist.is_nccl_available()
    dist.init_process_group("cpu:gloo,cuda:nccl" if nccl else "gloo")
    try:
        yield Ranks()
        # leave together: a rank that tears the group down while rank 0 still writes can abort the run at exit
        # ("terminate called without an active exception", seen once in CI on a resumed 2-process run)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def local_device(device):
    """``device`` for this process: under torchrun, CUDA means the GPU of its local rank (one GPU per process)."""
    if device.type != "cuda" or not launched():
        return device
    index = int(os.environ.get("LOCAL_RANK", 0))
    if index >= torch.cuda.device_count():
        raise PinnfastError(f"process {index} on this machine has no GPU of its own (torch sees "
                            f"{torch.cuda.device_count()}): start at most that many processes per machine")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def rank_seed(seed, rank):
    """The seed of rank ``rank``'s random stream: ``seed`` itself on rank 0 (so one process is the plain run), a
    hash of (seed, rank) elsewhere (so no rank's stream is another seed's)."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class Ranks:
    """This process's place in the run, ``rank`` of ``world`` (0 of 1 without a process group), and the few
    collectives training and evaluation need."""

    def __init__(self):
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0

    @property
    def main(self):
        return self.rank == 0

    def seed(self, seed):
        return rank_seed(seed, self.rank)

    def average(self, tensors):
        """Replace each tensor by its mean over the ranks, by one all-reduce of their concatenation."""
        if self.world == 1:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world
        for tensor, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            tensor.copy_(part.view_as(tensor))

    def sum(self, tensor):
        """``tensor`` summed over the ranks (a new tensor)."""
        total = tensor.clone()
        if self.world > 1:
            dist.all_reduce(total)
        return total

    def gather(self, tensor):
        """Every rank's ``tensor`` (same shape on all ranks), in rank order."""
        if self.world == 1:
            return [tensor]
        gathered = [torch.empty_like(tensor) for _ in range(self.world)]
        dist.all_gather(gathered, tensor)
        return gathered

    def shard(self, n):
        """This rank's contiguous share ``(start, stop)`` of ``n`` items: ⌈n / world⌉ each, the last ones shorter."""
        size = -(-n // self.world)
        return min(n, self.rank * size), min(n, (self.rank + 1) * size)

    def gather_shards(self, local, n):
        """The ``n`` rows of which each rank holds its :meth:`shard` ``local``, on every rank."""
        if self.world == 1:
            return local
        size = -(-n // self.world)
        padded = local.new_zeros((size, *local.shape[1:]))
        padded[:local.shape[0]] = local
        rows = local.new_empty((self.world, size, *local.shape[1:]))
        dist.all_gather(list(rows.unbind(0)), padded)
        return rows.flatten(0, 1)[:n]

    def on_main(self, function):
        """``function()`` run on rank 0 only (a write, a read of what rank 0 wrote); its value, or its error, is
        shared with every rank, so that the ranks go on, or stop, together."""
        if self.world == 1:
            return function()
        outcome = [None]
        if self.main:
            try:
                outcome = [(True, function())]
            except (PinnfastError, OSError) as exc:
                outcome = [(False, exc)]
        dist.broadcast_object_list(outcome, src=0, device=torch.device("cpu"))
        done, value = outcome[0]
        if not done:
            raise value
        return value


def launch(nproc, argv):
    """Run ``python -m pinnfast argv`` on ``nproc`` processes of this machine with torchrun's launcher (what
    ``torchrun --standalone --nproc_per_node nproc`` does); returns the exit code of the first process that
    failed, else 0. The processes print their own messages; the launcher's log is kept quiet."""
    from torch.distributed.elastic.multiprocessing import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as torchrun: one thread per process unless told otherwise
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", run_id=str(uuid.uuid4()), max_restarts=0,
                          monitor_interval=0.1)
    try:
        elastic_launch(config, sys.executable)("-m", "pinnfast", *argv)
    except ChildFailedError as exc:
        code = exc.get_first_failure()[1].exitcode
        return code if code > 0 else 128 - code  # killed by a signal: the shell's 128 + signal number
    except SignalException as exc:
        return 128 + int(exc.sigval)
    return 0
