"""2D coupled Burgers equation: residuals from jets, the learnable viscosity, and Fletcher's exact solution.

    r_u = u_t + u u_x + v u_y − ν (u_xx + u_yy)
    r_v = v_t + u v_x + v v_y − ν (v_xx + v_yy)
Inputs are ordered (x, y, t) and outputs (u, v).
"""
import math

import numpy as np
import torch
from torch import nn

from .errors import PinnfastError
from .jets import taylor_jets
from .problems import FunctionModule, Problem, uniform

# Jet channels used for Burgers: first = (∂x, ∂y, ∂t), second = (∂xx, ∂yy).
FIRST, SECOND = (0, 1, 2), (0, 1)


def residuals_from_jets(jets, nu):
    """``(r_u, r_v)`` as an ``(N, 2)`` tensor from jets of shape ``(6, N, 2)`` laid out as FIRST, SECOND."""
    value, d_x, d_y, d_t, d_xx, d_yy = jets
    u, v = value[:, 0:1], value[:, 1:2]
    return d_t + u * d_x + v * d_y - nu * (d_xx + d_yy)


def burgers_residuals(model, x, nu, backend="torch", **options):
    """Residuals ``(N, 2)`` of ``model`` at points ``x`` (columns x, y, t), and the jets' value ``(N, 2)``."""
    jets = taylor_jets(model, x, FIRST, SECOND, backend=backend, **options)
    return residuals_from_jets(jets, nu), jets[0]


class BurgersInverse(Problem):
    """Burgers with unknown viscosity: a network for (u, v), ν learned as ``log ν`` (stays positive), and the
    observations. Each batch: ``n_collocation`` uniform points in the box and ``batch_size`` observations
    (all of them when there are fewer)."""

    term_names = ("d",)
    in_dim, out_dim = 3, 2

    def __init__(self, network, nu_init, observed_x=None, observed_uv=None, box=None, n_collocation=512,
                 batch_size=512):
        box = box if box is not None else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        super().__init__(network, box[0], box[1])
        if not nu_init > 0 or not math.isfinite(nu_init):
            raise PinnfastError(f"the initial viscosity must be a positive number, got {nu_init}")
        self.log_nu = nn.Parameter(torch.tensor(math.log(nu_init)))
        self.register_buffer("observed_x", observed_x, persistent=False)
        self.register_buffer("observed_uv", observed_uv, persistent=False)
        self.n_collocation, self.batch_size = n_collocation, batch_size

    @property
    def nu(self):
        return self.log_nu.exp()

    def physical(self):
        return [self.log_nu]

    def logged(self):
        return {"nu": self.nu.detach()}

    def sample(self, generator):
        collocation = uniform(generator, self.n_collocation, self.lo, self.hi)
        n_obs = self.observed_x.shape[0]
        if self.batch_size >= n_obs:
            return {"collocation": collocation, "x": self.observed_x, "uv": self.observed_uv}
        index = torch.randint(n_obs, (self.batch_size,), generator=generator, device=self.observed_x.device)
        return {"collocation": collocation, "x": self.observed_x[index], "uv": self.observed_uv[index]}

    def data_fit(self, chunk=1 << 16):
        """Root-mean-square misfit of u and v over all observations (chunked: observation sets may be large)."""
        if self.observed_x is None:
            return {}
        squares = sum((self.network(x) - uv).square().sum(0) for x, uv in
                      zip(self.observed_x.split(chunk), self.observed_uv.split(chunk)))
        rmse = (squares / self.observed_x.shape[0]).sqrt().tolist()
        return {"rmse_u": rmse[0], "rmse_v": rmse[1]}

    def losses(self, batch):
        """``L_r = mean(r_u²) + mean(r_v²)`` at the collocation points and ``L_d = mean(|uv − uv_obs|²)``."""
        residual, _ = burgers_residuals(self.network, batch["collocation"], self.nu)
        loss_r = residual.square().mean(0).sum()
        loss_d = (self.network(batch["x"]) - batch["uv"]).square().sum(1).mean()
        return loss_r, [loss_d]


def exact_solution(x, y, t, nu):
    """Fletcher's travelling wave: ``u = 3/4 − 1/(4(1+E))``, ``v = 3/4 + 1/(4(1+E))``, ``E = exp((−4x+4y−t)/(32ν))``.

    Works on numpy arrays or torch tensors; ``1/(1+E)`` is evaluated as a sigmoid so large ``|E|`` cannot overflow.
    """
    arg = (-4 * x + 4 * y - t) / (32 * nu)
    s = torch.sigmoid(-arg) if torch.is_tensor(arg) else 0.5 * (1 + np.tanh(-arg / 2))
    return 0.75 - 0.25 * s, 0.75 + 0.25 * s


class ExactBurgers(FunctionModule):
    """The exact solution as a module ``(N, 3) → (N, 2)``, so it can go through the ``autograd`` jets."""

    def __init__(self, nu):
        super().__init__(self._solution, 3, 2)
        self.nu = nu

    def _solution(self, points):
        u, v = exact_solution(points[:, 0], points[:, 1], points[:, 2], self.nu)
        return torch.stack([u, v], 1)


DEMO_BOX = ((-1.0, -1.0, 0.0), (1.0, 1.0, 1.0))


def make_observations(nu, n, noise=0.0, seed=0, box=DEMO_BOX):
    """``n`` uniform random points in ``box`` with exact (u, v) plus Gaussian noise of ``noise`` × std(u, v).

    The default box, x, y ∈ [−1, 1] and t ∈ [0, 1], holds the whole front for ν from 0.01 to 0.1, so that the
    curvature that identifies ν is in the data.
    """
    if not nu > 0:
        raise PinnfastError(f"--nu must be positive, got {nu}")
    if n < 10:
        raise PinnfastError(f"--n must be at least 10, got {n}")
    if not noise >= 0:
        raise PinnfastError(f"--noise must be >= 0, got {noise}")
    rng = np.random.default_rng(seed)
    lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
    points = lo + (hi - lo) * rng.random((n, 3))
    u, v = exact_solution(points[:, 0], points[:, 1], points[:, 2], nu)
    u = u + noise * u.std() * rng.standard_normal(n)
    v = v + noise * v.std() * rng.standard_normal(n)
    return {"x": points[:, 0], "y": points[:, 1], "t": points[:, 2], "u": u, "v": v}
