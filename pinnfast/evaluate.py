"""Burgers residuals on point sets of any size, streamed chunk by chunk with memory bounded by the chunk.

Points may live on the CPU (10^8 points are 1.2 GB there) or be generated per chunk by a function; each chunk
goes to the model's device, through the fused kernel (CUDA) or the torch jets (CPU), and back into the result.
No autograd graph is kept. Under torchrun (``shard=True``) each rank evaluates only its share of the points.
"""
import importlib.util

import torch

from .burgers import burgers_residuals
from .distributed import Ranks
from .errors import PinnfastError

OUTPUTS = ("fields", "squared_norm", "total")
BACKENDS = ("auto", "triton", "torch")
DEFAULT_CHUNK = 1 << 20


def evaluate_residuals(model, points, nu, *, n=None, chunk_size=DEFAULT_CHUNK, output="fields", out_device=None,
                       backend="auto", precision=None, shard=False):
    """Residuals of ``model`` at ``points``.

    ``points``: an ``(N, 3)`` tensor (x, y, t) on any device, or a function ``(start, stop) → (stop − start, 3)``
    tensor with the total count ``n``. ``output="fields"`` returns ``(N, 4)`` = (u, v, r_u, r_v);
    ``"squared_norm"`` returns ``(N,)`` = r_u² + r_v²; ``"total"`` returns ‖r‖² = Σ (r_u² + r_v²) over all points
    (a float64 scalar, summed chunk by chunk: memory bounded by the chunk whatever N). The result lives on
    ``out_device`` (default: the points' device, or the CPU for a function). ``backend``: ``"triton"`` (fused
    kernel), ``"torch"`` or ``"auto"``.

    ``shard=True`` in a torch.distributed run (e.g. under torchrun; a world of one otherwise): each rank reads or
    generates only its contiguous share of the N points, and every rank gets the whole result, gathered (fields,
    squared norms) or summed (total) over the ranks.
    """
    if output not in OUTPUTS:
        raise PinnfastError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    if backend not in BACKENDS:
        raise PinnfastError(f"unknown backend {backend!r} for streamed residuals; choose one of {', '.join(BACKENDS)}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise PinnfastError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if callable(points):
        if n is None:
            raise PinnfastError("points given as a function need the total count n")
        source, out_device = points, torch.device("cpu") if out_device is None else out_device
    else:
        if points.dim() != 2 or points.shape[1] != 3:
            raise PinnfastError(f"points must have shape (N, 3) for (x, y, t), got {tuple(points.shape)}")
        n = points.shape[0]
        source, out_device = (lambda start, stop: points[start:stop]), \
            (points.device if out_device is None else out_device)
    device = next(model.parameters()).device
    if backend == "auto":  # the fused kernel on a GPU that has triton; the torch jets elsewhere
        backend = "triton" if device.type == "cuda" and importlib.util.find_spec("triton") else "torch"
    options = {} if precision is None else {"precision": precision}
    ranks = Ranks() if shard else None
    first, last = ranks.shard(n) if shard else (0, n)
    if output == "total":
        result = torch.zeros((), dtype=torch.float64, device=device)
    else:
        result = torch.empty((last - first, 4) if output == "fields" else (last - first,), dtype=torch.float32,
                             device=out_device)
    nu = torch.as_tensor(nu, dtype=torch.float32, device=device)
    with torch.no_grad():
        for start in range(first, last, int(chunk_size)):
            stop = min(last, start + int(chunk_size))
            chunk = source(start, stop).to(device=device, dtype=torch.float32)
            fields = _burgers_fields(model, chunk, nu, backend, options)
            if output == "total":
                result += fields[:, 2:].double().square().sum()
            else:
                value = fields if output == "fields" else fields[:, 2:].square().sum(1)
                result[start - first:stop - first].copy_(value)
    if not shard:
        return result.to(out_device)
    return ranks.sum(result).to(out_device) if output == "total" else ranks.gather_shards(result, n)


def _burgers_fields(model, x, nu, backend, options):
    """(u, v, r_u, r_v) for one chunk: the fused kernel, or residuals from the torch/autograd jets."""
    if backend == "triton":
        from .kernels import burgers_fields
        return burgers_fields(model, x, nu, **options)
    residual, value = burgers_residuals(model, x, nu, backend=backend, **options)
    return torch.cat([value, residual], 1)
