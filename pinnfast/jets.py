"""Forward-mode Taylor propagation ("jets"): the rules of docs/math.md, once, in plain torch ops.

A jet is a tensor of shape ``(1 + F + S, N, W)``: channel 0 the value, channels ``1..F`` first derivatives along
the spec's propagated directions, then ``S`` pure second derivatives (an ensemble's jets carry its member axis
after the channel: ``(1 + F + S, K, N, W)``). Every model, the ``torch`` backend and the
docs use these functions; the Triton kernels implement the same rules and are tested against ``autograd``.
"""
from dataclasses import dataclass

import torch

from .errors import PinnfastError


@dataclass(frozen=True)
class JetSpec:
    """Which derivative channels to carry: ``first`` directions, and pure ``second`` directions.

    The tanh rule for ``h_ii`` needs ``z_i``, so a direction asked only as a second derivative is still
    propagated as a first-derivative channel (``dirs``) and dropped from the output by :meth:`output_channels`.
    """

    first: tuple
    second: tuple

    @classmethod
    def build(cls, first, second, in_dim):
        first, second = tuple(int(i) for i in first), tuple(int(i) for i in second)
        for name, dirs in (("first", first), ("second", second)):
            if len(set(dirs)) != len(dirs):
                raise PinnfastError(f"{name}={dirs} repeats a direction")
            bad = [i for i in dirs if not 0 <= i < in_dim]
            if bad:
                raise PinnfastError(f"{name}={dirs}: direction {bad[0]} is not an input index (in_dim={in_dim})")
        return cls(first, second)

    @property
    def dirs(self):
        """Propagated first-derivative directions: ``first``, then second-only directions."""
        return self.first + tuple(i for i in self.second if i not in self.first)

    @property
    def second_pos(self):
        """For each second direction, its position in :attr:`dirs`."""
        return tuple(self.dirs.index(i) for i in self.second)

    @property
    def n_outputs(self):
        """Channels in the public layout: value, first..., second..."""
        return 1 + len(self.first) + len(self.second)

    def output_channels(self):
        """Indices into the propagated jet that form the public layout (value, first..., second...)."""
        n_dirs = len(self.dirs)
        return [0] + [1 + k for k in range(len(self.first))] + [1 + n_dirs + k for k in range(len(self.second))]


VALUE_ONLY = JetSpec((), ())


# Inside a network a jet is a triple of channel groups (value, first, second), shapes (1, ..., N, W),
# (len(dirs), ..., N, W) and (len(second), ..., N, W), a group being None when the spec has no such channels (or,
# for the input layers' second derivatives, when they are zero). The rules act on whole groups and only the
# network's output is concatenated: slicing one stacked tensor costs, in the backward pass, a whole zeroed jet per
# slice (about half the CPU time of a training step).


def input_jet(x, scale, shift, weight, bias, spec):
    """Jet of ``z = x̃ Wᵀ + b`` with ``x̃ = x * scale + shift``: ``z_i = scale_i Wᵀ[i, :]`` (the same for every
    point: a broadcast view), ``z_ii = 0`` (None).

    ``weight`` ``(..., out, in)`` and ``bias`` ``(..., 1, out)`` or ``(out,)``: an ``nn.Linear``'s, or with leading
    axes (an ensemble's members, layers batched), which the value and every channel keep."""
    value = (x * scale + shift) @ weight.mT + bias
    if not spec.dirs:
        return value.unsqueeze(0), None, None
    dirs = list(spec.dirs)
    first = (weight.mT[..., dirs, :] * scale[dirs, None]).movedim(-2, 0).unsqueeze(-2)
    return value.unsqueeze(0), first.expand(len(dirs), *value.shape), None


def stacked(jet):
    """A jet triple as one ``(C, ..., N, W)`` tensor: value, first, second channels."""
    return torch.cat([group for group in jet if group is not None], 0)


def _pure_second_dirs(first, spec):
    """The first-derivative channels of the directions that have a second derivative, in ``spec.second`` order:
    a view when they are consecutive channels (as for Burgers), else a stack of views whose gradients are stacked
    back once (indexing would zero a whole copy each)."""
    positions = spec.second_pos
    if positions == tuple(range(positions[0], positions[0] + len(positions))):
        return first.narrow(0, positions[0], len(positions))
    channels = first.unbind(0)
    return torch.stack([channels[p] for p in positions])


def linear_jet(jet, linear):
    """``z = h W + b``; every derivative channel shares ``W`` and gets no bias."""
    value, first, second = jet
    weight = linear.weight.mT
    return (value @ weight + linear.bias, None if first is None else first @ weight,
            None if second is None else second @ weight)


def tanh_jet(jet, spec):
    """``h = tanh(z)``, ``g = 1 − h²``: ``h_i = g z_i``, ``h_ii = g (z_ii − 2 h z_i²)``."""
    value, first, second = jet
    h = torch.tanh(value)
    if first is None:
        return h, None, None
    g = 1 - h * h
    if not spec.second:
        return h, g * first, None
    z_i = _pure_second_dirs(first, spec)
    curvature = -2 * h * z_i * z_i if second is None else second - 2 * h * z_i * z_i
    return h, g * first, g * curvature


def difference_jet(u, v, spec):
    """``D = V − U`` for :func:`gate_jet`, once per network (every gate layer uses it), with ``D_i`` of the pure
    second directions picked out as a fourth group."""
    d0, d1, d2 = (None if a is None else b - a for a, b in zip(u, v))
    return d0, d1, d2, None if d2 is None else _pure_second_dirs(d1, spec)


def gate_jet(u, d, z, spec):
    """``H = U + Z ⊙ D`` (``d`` from :func:`difference_jet`): ``H_i = U_i + Z_i D + Z D_i``,
    ``H_ii = U_ii + Z_ii D + 2 Z_i D_i + Z D_ii``."""
    (u0, u1, u2), (d0, d1, d2, d1_pure), (z0, z1, z2) = u, d, z
    value = u0 + z0 * d0
    if u1 is None:
        return value, None, None
    first = u1 + z1 * d0 + z0 * d1
    if u2 is None:
        return value, first, None
    return value, first, u2 + z2 * d0 + 2 * _pure_second_dirs(z1, spec) * d1_pure + z0 * d2


BACKENDS = ("autograd", "torch", "triton", "auto")


def taylor_jets(model, x, first=(0, 1, 2), second=(0, 1), backend="torch", **options):
    """Value and input derivatives of ``model`` at ``x``: a tensor of shape ``(1 + len(first) + len(second), N, out)``.

    Channel 0 is the value, then ``∂/∂x_i`` for ``i`` in ``first`` (in that order), then ``∂²/∂x_i²`` for ``i`` in
    ``second``. Backends: ``"autograd"`` (nested ``torch.autograd.grad``, the reference), ``"torch"`` (forward
    Taylor propagation in torch ops), ``"triton"`` (fused kernel; ``options`` such as ``precision`` go to it) and
    ``"auto"`` (triton on CUDA, torch elsewhere). All are differentiable with respect to the model's parameters.
    An ensemble (``members=K``) takes ``x`` of shape ``(N, in)`` or ``(K, N, in)`` and gives ``(C, K, N, out)``.
    """
    if backend not in BACKENDS:
        raise PinnfastError(f"unknown jets backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    members = getattr(model, "members", None)
    per_member_points = x.dim() == 3 and members is not None and x.shape[0] == members
    if not (x.dim() == 2 or per_member_points) or x.shape[-1] != model.in_dim:
        or_per_member = f" or ({members}, N, {model.in_dim})" if members is not None else ""
        raise PinnfastError(f"x must have shape (N, {model.in_dim}){or_per_member}, got {tuple(x.shape)}")
    spec = JetSpec.build(first, second, model.in_dim)
    if backend == "auto":
        backend = "triton" if x.is_cuda else "torch"
    if backend == "autograd":
        return autograd_jets(model, x, spec)
    if backend == "triton":
        from .kernels import triton_jets  # imported here so that the CPU paths never need triton
        return triton_jets(model, x, spec, **options)
    if options:
        raise PinnfastError(f"options {sorted(options)} apply only to the triton backend")
    return model.taylor(x, spec)[spec.output_channels()]


def autograd_jets(model, x, spec):
    """Reference jets by nested reverse mode (``create_graph=True``, so they stay differentiable)."""
    members = getattr(model, "members", None)
    if members is not None and x.dim() == 2:  # one copy of the points per member: member k's derivatives only
        x = x.expand(members, *x.shape)
    x = x.detach().clone().requires_grad_(True)
    y = model(x)
    channels = [y] + [[None] * y.shape[-1] for _ in range(len(spec.first) + len(spec.second))]
    for o in range(y.shape[-1]):
        grad = torch.autograd.grad(y[..., o].sum(), x, create_graph=True)[0]
        for k, i in enumerate(spec.first):
            channels[1 + k][o] = grad[..., i]
        for k, i in enumerate(spec.second):
            second = torch.autograd.grad(grad[..., i].sum(), x, create_graph=True)[0]
            channels[1 + len(spec.first) + k][o] = second[..., i]
    return torch.stack([channels[0]] + [torch.stack(c, -1) for c in channels[1:]])
