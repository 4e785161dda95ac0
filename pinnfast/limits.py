"""Up-front limits: what a run will need, refused in one line before anything is allocated or written.

The memory estimate is a floor (parameters with their gradients and Adam's two moments, one gradient per loss
term for annealing, and the jets of every layer for the step's points), so that a run refused here could never
have fitted, and a run allowed may still need more (the autograd graph keeps a few more tensors per layer).
"""
import os

import numpy as np

from .errors import PinnfastError

JET_CHANNELS = 6  # value, three first and two second derivatives: the Burgers residual's channels
PARAMETER_COPIES = 4  # the parameter, its gradient and Adam's two moments
SAVED_PER_LAYER = 4  # tensors of (points, width, channels) each layer keeps for the backward pass (lower bound)
VISCOSITY_RANGE = (1e-9, 1e9)  # ν T / L² (T the time span, L the shorter space span) a run can identify
MIN_SPAN = 1e-9  # a coordinate's span: second derivatives scale as 1 / span², which float32 must hold


def parameter_count(in_dim, out_dim, width, depth, members=1):
    """Parameters of the modified MLP (the larger of the two networks): input layer, the two gate encoders,
    ``depth`` hidden layers and the output layer, per member."""
    per_member = 3 * (in_dim * width + width) + depth * (width * width + width) + width * out_dim + out_dim
    return members * per_member


def problem_shape(pde):
    """A declared problem's (inputs, outputs, loss terms besides the residual)."""
    return pde.in_dim, pde.out_dim, len(pde.conditions)


def estimate_bytes(config, in_dim, out_dim, n_terms):
    """A floor for the memory of one training step of ``config`` (a TrainConfig) on a problem with ``in_dim``
    inputs, ``out_dim`` outputs and ``n_terms`` loss terms besides the residual."""
    item = 8 if config.dtype == "float64" else 4
    members = config.ensemble
    parameters = parameter_count(in_dim, out_dim, config.width, config.depth, members)
    copies = PARAMETER_COPIES + (n_terms + 1 if config.model in ("m2", "m4") else 0)
    points = config.n_collocation * (4 if config.lbfgs_steps else 1) + config.batch_size
    jets = members * points * config.width * JET_CHANNELS * (config.depth + 3) * SAVED_PER_LAYER
    return (parameters * copies + jets) * item


def available_bytes(device):
    """Memory a run on ``device`` (a torch.device) can still take: the GPU's free memory, else the machine's
    available memory (/proc/meminfo, else its physical memory); None when unknown."""
    if device.type == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None


def check_fits(config, in_dim, out_dim, n_terms, device):
    """Refuse in one line a run whose memory floor exceeds what ``device`` has available."""
    need, have = estimate_bytes(config, in_dim, out_dim, n_terms), available_bytes(device)
    if have is not None and need > have:
        raise PinnfastError(f"this run needs at least {_size(need)} of memory (width {config.width}, depth "
                            f"{config.depth}, {config.n_collocation} collocation points, batch {config.batch_size}, "
                            f"ensemble {config.ensemble}, {config.dtype}) and {device.type} has {_size(have)} "
                            "available; make the network, the batches or the ensemble smaller")


def check_viscosity(nu, lo, hi, flag="--nu-init"):
    """Refuse a viscosity ν that no Burgers data in the box ``lo``–``hi`` (x, y, t) can show: ν T / L² outside
    :data:`VISCOSITY_RANGE` (T the time span, L the shorter space span), where float32 residuals overflow or ν
    is lost below the rounding of the other terms."""
    span = np.asarray(hi, dtype=float) - np.asarray(lo, dtype=float)
    length, duration = min(span[0], span[1]), span[2]
    scale = length ** 2 / duration
    low, high = (bound * scale for bound in VISCOSITY_RANGE)
    if not low <= nu <= high:
        raise PinnfastError(f"{flag} {nu:g} is not a viscosity these data can show: for this box (time span "
                            f"{duration:g}, shorter space span {length:g}) ν must lie between {low:.3g} and "
                            f"{high:.3g}")


def check_span(values, name, source):
    """Refuse a coordinate whose span float32 training cannot resolve (tiny, or lost in the coordinate's own
    magnitude)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo
    if span < MIN_SPAN or span < 1e-6 * max(abs(lo), abs(hi)):
        raise PinnfastError(f"{source}: {name} spans only {span:.3g} (from {lo:.6g} to {hi:.6g}), too little for "
                            f"float32 training (at least {MIN_SPAN:g} and a millionth of its magnitude); rescale or "
                            "shift the coordinate")


def _size(count):
    """A byte count for people: 3.2 GB, 410 MB."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} B"
