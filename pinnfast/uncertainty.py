"""How well the trained network pins each unknown: a jackknife over the sub-boxes of the domain.

The unknowns θ enter the residual; with the network fixed, the least-squares value of θ over a set of points is
θ − (JᵀJ)⁻¹ Jᵀ r (one Gauss–Newton step from θ, exact when the residual is linear in θ, as Burgers' is in ν), where
r is the residual and J = ∂r/∂θ at those points. Where the network's derivatives are wrong, different parts of the
box ask for different θ: the spread of the leave-one-sub-box-out values (the box halved along every input, 2^d
sub-boxes, the residual's equations pooled within each) is the jackknife's standard error of θ. It measures the
network's systematic error that no step-to-step jitter shows; BENCHMARKS.md checks its coverage on the regime sweep.
"""
import math

import torch

from .problems import uniform

POINTS_PER_GROUP = 1024  # collocation points per sub-box: enough that the points' own sampling error is negligible
SEED = 12345  # the points are the same for every call on the same box


def subdomain_jackknife(problem, values, points=None, backend="torch"):
    """The jackknife standard error of each unknown, ``{name: (K,) float64 tensor or 0-d}``, at ``values``
    (``{name: value}``, 0-d, or ``(K,)`` per member of an ensemble), from ``points`` in the problem's box (default:
    ``POINTS_PER_GROUP`` per sub-box, the same on every call), with jets by ``backend`` (torch: a few thousand
    points, once in a while, gain nothing from the fused kernels; ``autograd`` for a closed-form field). An unknown
    that the residual does not pin at all (e.g. a field without curvature leaves ν free) gets ``inf``."""
    names = list(problem.pde.unknowns)
    dim, device = problem.in_dim, problem.lo.device
    n_groups = 1 << dim
    if points is None:
        generator = torch.Generator().manual_seed(SEED)
        points = uniform(generator, n_groups * POINTS_PER_GROUP, problem.lo.cpu(), problem.hi.cpu())
    x = points.to(device, problem.lo.dtype)
    upper = ((x - problem.lo) / (problem.hi - problem.lo) >= 0.5).long()
    box = (upper << torch.arange(dim, device=device)).sum(-1)  # the sub-box of each point: 0 … 2^d − 1
    residual = problem.pde.residual
    derivatives = problem.derivatives(x, residual.spec, residual.user, backend)  # (the trainer calls in no_grad)
    base, shape = ((), (len(x),)) if problem.members is None else ((problem.members, 1), (problem.members, len(x)))
    # one copy of each unknown per point: a residual uses its unknowns point by point, so the gradient of one
    # equation's sum with respect to the copies is ∂r/∂θ at every point (reverse mode: nothing to set up)
    theta = [torch.as_tensor(values[name], dtype=x.dtype, device=device).reshape(base).expand(shape).clone()
             .requires_grad_(True) for name in names]
    with torch.enable_grad():
        parts = residual(derivatives, dict(zip(names, theta)))
        jacobian = torch.stack([torch.stack(_per_point_gradients(part, theta), -2) for part in parts], -2)
    r = torch.stack(parts, -2).detach()  # (…, parts, N); the jacobian (…, unknowns, parts, N)
    group = box.repeat(r.shape[-2])  # the parts flattened in order: each point's sub-box, once per equation
    r, jacobian = r.double().flatten(-2), jacobian.double().flatten(-2)  # (…, P·N), (…, U, P·N)
    lead = r.shape[:-1]
    normal = torch.zeros(*lead, n_groups, len(names), len(names), dtype=torch.float64, device=device)
    gradient = torch.zeros(*lead, n_groups, len(names), dtype=torch.float64, device=device)
    normal.index_add_(len(lead), group, torch.einsum("...in,...jn->...nij", jacobian, jacobian))
    gradient.index_add_(len(lead), group, torch.einsum("...in,...n->...ni", jacobian, r))
    left_out_normal = normal.sum(-3, keepdim=True) - normal
    left_out_gradient = gradient.sum(-2, keepdim=True) - gradient
    try:
        shifts = torch.linalg.solve(left_out_normal, left_out_gradient)  # (…, groups, U): θ − θ_(−g)
        error = ((n_groups - 1) / n_groups * (shifts - shifts.mean(-2, keepdim=True)).square().sum(-2)).sqrt()
    except RuntimeError:  # singular: some unknown leaves the residual unchanged
        error = torch.full((*lead, len(names)), math.inf, dtype=torch.float64)
    error = torch.where(torch.isfinite(error), error, torch.full_like(error, math.inf)).cpu()
    return {name: error[..., j] for j, name in enumerate(names)}


def _per_point_gradients(part, theta):
    """∂part/∂θ_j at every point for each per-point copy θ_j (zeros where the part does not use it)."""
    if not part.requires_grad:
        return [torch.zeros_like(t) for t in theta]
    grads = torch.autograd.grad(part.sum(), theta, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(theta, grads)]
