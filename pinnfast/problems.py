"""The problem interface the trainer drives, and the forward problems of the paper: Helmholtz and Klein–Gordon.

A problem is an ``nn.Module`` holding the ``network`` and any learnable physical parameters (``physical``, e.g.
log ν). Each step it draws a fresh batch from the trainer's generator (``sample``) and returns the residual loss
and one loss per named term (``losses`` → ``(L_r, [L_i, ...])``); every term gets its own weight λ_i.
"""
import math

import torch
from torch import nn

from .jets import taylor_jets


def uniform(generator, n, lo, hi):
    """``n`` uniform points in the box ``[lo, hi]`` (tensors on the generator's device)."""
    return lo + (hi - lo) * torch.rand(n, lo.numel(), generator=generator, device=lo.device)


class FunctionModule(nn.Module):
    """A closed-form function ``(N, in_dim) → (N, out_dim)`` as a module, e.g. an exact solution, so that it can go
    through the ``autograd`` jets like a network."""

    def __init__(self, function, in_dim, out_dim):
        super().__init__()
        self.function, self.in_dim, self.out_dim = function, in_dim, out_dim

    def forward(self, x):
        return self.function(x)


class Problem(nn.Module):
    """Base: a network, a box, named loss terms; subclasses define ``sample`` and ``losses``, evaluating the
    network through :meth:`jets` and :meth:`value`, so that the trainer's ``backend`` reaches every term."""

    term_names = ()
    backend = "torch"  # jets backend of the losses: "torch", or "triton" (fused kernels, CUDA) set by the trainer

    def __init__(self, network, lo, hi):
        super().__init__()
        self.network = network
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float32), persistent=False)
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float32), persistent=False)

    def jets(self, x, first, second):
        return taylor_jets(self.network, x, first, second, backend=self.backend)

    def value(self, x):
        return self.jets(x, (), ())[0]

    def physical(self):
        """Learnable physical parameters (own learning rate, never part of the annealing statistic)."""
        return []

    def logged(self):
        """Extra per-step values for the metrics, as ``{name: 0-d tensor}``."""
        return {}

    def data_fit(self):
        """How well the network fits the problem's data, for the run's result (e.g. RMSE per output)."""
        return {}


class Helmholtz(Problem):
    """u_xx + u_yy + k²u = q on [−1, 1]², exact u = sin(a1 πx) sin(a2 πy); Dirichlet data on the four edges."""

    term_names = ("bc",)
    in_dim, out_dim = 2, 1

    def __init__(self, network, n_points=128, a1=1.0, a2=4.0, k=1.0):
        super().__init__(network, (-1.0, -1.0), (1.0, 1.0))
        self.n_points, self.a1, self.a2, self.k = n_points, a1, a2, k

    def exact(self, x):
        return torch.sin(self.a1 * math.pi * x[:, :1]) * torch.sin(self.a2 * math.pi * x[:, 1:2])

    def forcing(self, x):
        return (self.k ** 2 - math.pi ** 2 * (self.a1 ** 2 + self.a2 ** 2)) * self.exact(x)

    def residual(self, jets, x):
        """From jets laid out (value, ∂xx, ∂yy)."""
        return jets[1] + jets[2] + self.k ** 2 * jets[0] - self.forcing(x)

    def sample(self, generator):
        n = self.n_points
        edges = []
        for coordinate in (0, 1):  # n points on each of the four edges
            for side in (self.lo[coordinate], self.hi[coordinate]):
                points = uniform(generator, n, self.lo, self.hi)
                points[:, coordinate] = side
                edges.append(points)
        return {"collocation": uniform(generator, n, self.lo, self.hi), "boundary": torch.cat(edges)}

    def losses(self, batch):
        x = batch["collocation"]
        loss_r = self.residual(self.jets(x, (), (0, 1)), x).square().mean()
        boundary = batch["boundary"]
        return loss_r, [(self.value(boundary) - self.exact(boundary)).square().mean()]


class KleinGordon(Problem):
    """u_tt − u_xx + u³ = f on (x, t) ∈ [0, 1]², exact u = x cos(5πt) + (xt)³; initial u and u_t at t = 0
    (one term) and Dirichlet data at x = 0 and x = 1 (another term)."""

    term_names = ("ic", "bc")
    in_dim, out_dim = 2, 1

    def __init__(self, network, n_points=128):
        super().__init__(network, (0.0, 0.0), (1.0, 1.0))
        self.n_points = n_points

    @staticmethod
    def exact(x):
        position, time = x[:, :1], x[:, 1:2]
        return position * torch.cos(5 * math.pi * time) + (position * time) ** 3

    @staticmethod
    def forcing(x):
        position, time = x[:, :1], x[:, 1:2]
        u_tt = -25 * math.pi ** 2 * position * torch.cos(5 * math.pi * time) + 6 * position ** 3 * time
        u_xx = 6 * position * time ** 3
        return u_tt - u_xx + KleinGordon.exact(x) ** 3

    def residual(self, jets, x):
        """From jets laid out (value, ∂xx, ∂tt)."""
        return jets[2] - jets[1] + jets[0] ** 3 - self.forcing(x)

    def sample(self, generator):
        n = self.n_points
        initial = uniform(generator, n, self.lo, self.hi)
        initial[:, 1] = 0.0
        sides = uniform(generator, 2 * n, self.lo, self.hi)
        sides[:n, 0], sides[n:, 0] = 0.0, 1.0
        return {"collocation": uniform(generator, n, self.lo, self.hi), "initial": initial, "boundary": sides}

    def losses(self, batch):
        x = batch["collocation"]
        loss_r = self.residual(self.jets(x, (), (0, 1)), x).square().mean()
        initial = self.jets(batch["initial"], (1,), ())  # u and u_t at t = 0; exact u_t(x, 0) = 0
        loss_ic = (initial[0] - self.exact(batch["initial"])).square().mean() + initial[1].square().mean()
        boundary = batch["boundary"]
        loss_bc = (self.value(boundary) - self.exact(boundary)).square().mean()
        return loss_r, [loss_ic, loss_bc]
