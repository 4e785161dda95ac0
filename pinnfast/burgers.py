"""2D coupled Burgers equation: residuals from jets, the learnable viscosity, and Fletcher's exact solution.

    r_u = u_t + u u_x + v u_y − ν (u_xx + u_yy)
    r_v = v_t + u v_x + v v_y − ν (v_xx + v_yy)
Inputs are ordered (x, y, t) and outputs (u, v).
"""
import numpy as np
import torch

from .errors import PinnfastError
from .jets import JetSpec, taylor_jets
from .pde import PDE, Channels, Condition, Unknown, at_points
from .problems import FunctionModule, PDEProblem

# Jet channels used for Burgers: first = (∂x, ∂y, ∂t), second = (∂xx, ∂yy); the declared residual asks for these.
FIRST, SECOND = (0, 1, 2), (0, 1)
INPUTS, OUTPUTS = ("x", "y", "t"), ("u", "v")
CHANNELS = Channels(INPUTS, OUTPUTS)


def burgers_residual(d, nu):
    """``(r_u, r_v)`` on named derivatives: the one definition of the Burgers residual (docs/math.md)."""
    return (d.u_t + d.u * d.u_x + d.v * d.u_y - nu * (d.u_xx + d.u_yy),
            d.v_t + d.u * d.v_x + d.v * d.v_y - nu * (d.v_xx + d.v_yy))


def residuals_from_jets(jets, nu):
    """``(r_u, r_v)`` as an ``(N, 2)`` tensor from jets of shape ``(6, N, 2)`` laid out as FIRST, SECOND."""
    return torch.stack(burgers_residual(at_points(CHANNELS, None, jets, JetSpec(FIRST, SECOND)), nu), -1)


def burgers_residuals(model, x, nu, backend="torch", **options):
    """Residuals ``(N, 2)`` of ``model`` at points ``x`` (columns x, y, t), and the jets' value ``(N, 2)``."""
    jets = taylor_jets(model, x, FIRST, SECOND, backend=backend, **options)
    return residuals_from_jets(jets, nu), jets[0]


class BurgersInverse(PDEProblem):
    """Burgers with unknown viscosity, declared as a :class:`~pinnfast.pde.PDE`: a network for (u, v), ν learned as
    ``log ν`` (stays positive), and the observations as the data term ``d``. Each batch: ``n_collocation``
    uniform points in the box and ``batch_size`` observations (all of them when there are fewer).

    An ensemble network (``members=K``) gets one ν per member, its own collocation points and observation batches
    (of all the observations, or with ``bootstrap`` = a seed of its own resample), so that the members' spread of ν
    measures how far training leaves ν undetermined. Losses are then per member, shape ``(K,)``. Without
    observations the problem only evaluates a trained network."""

    def __init__(self, network, nu_init, observed_x=None, observed_uv=None, box=None, n_collocation=512,
                 batch_size=512, bootstrap=None):
        box = box if box is not None else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        data = {} if observed_x is None else {"d": Condition(observed_x, values=observed_uv)}
        pde = PDE(INPUTS, OUTPUTS, burgers_residual, unknowns={"nu": Unknown(nu_init, positive=True)},
                  conditions=data, box=box, name="burgers")
        super().__init__(pde, network, n_collocation, batch_size, bootstrap)

    @property
    def nu(self):
        return self.value("nu")

    @property
    def observed_x(self):
        return getattr(self, "points_d", None)

    @property
    def observed_uv(self):
        return getattr(self, "values_d", None)

    def residual_loss(self, x, unknowns):
        """On the triton backend, ``L_r`` and its gradients to the network and ν come from the backward kernel's
        stages, in the forward."""
        if self.backend != "triton":
            return super().residual_loss(x, unknowns)
        from .kernels import burgers_loss

        return burgers_loss(self.network, x, unknowns["nu"])


def exact_solution(x, y, t, nu):
    """Fletcher's travelling wave: ``u = 3/4 − 1/(4(1+E))``, ``v = 3/4 + 1/(4(1+E))``, ``E = exp((−4x+4y−t)/(32ν))``.

    Works on numpy arrays or torch tensors; ``1/(1+E)`` is evaluated as a sigmoid so large ``|E|`` cannot overflow.
    """
    arg = (-4 * x + 4 * y - t) / (32 * nu)
    s = torch.sigmoid(-arg) if torch.is_tensor(arg) else 0.5 * (1 + np.tanh(-arg / 2))
    return 0.75 - 0.25 * s, 0.75 + 0.25 * s


# Cole–Hopf: u = −2ν ∂x log φ, v = −2ν ∂y log φ solve Burgers whenever φ_t = ν Δφ. With
# φ = 1 + Σ_j exp(a_j), a_j = (−m_j · (x − c) + |m_j|² (t − c_t) / 2) / (2ν), the velocity is the
# softmax-weighted mix of the states 0, m_1, m_2: two fronts of width ~2ν/|m_j| that pass through the centre c
# at t = c_t.
COLE_HOPF_STATES = ((0.25, 0.1), (-0.1, 0.25))


def cole_hopf_solution(x, y, t, nu, center=(0.0, 0.0, 0.5)):
    """A two-front 2D Cole–Hopf field centred on ``center`` (numpy arrays or torch tensors); exact for Burgers."""
    lib = torch if torch.is_tensor(x) else np
    exponents = [0 * x] + [(-(mx * (x - center[0]) + my * (y - center[1])) + (mx * mx + my * my) * (t - center[2]) / 2)
                           / (2 * nu) for mx, my in COLE_HOPF_STATES]
    a = lib.stack(exponents)
    w = lib.exp(a - lib.amax(a, 0))  # a softmax over the states, safe for the large exponents of a small ν
    w = w / w.sum(0)
    u = sum(w[1 + j] * mx for j, (mx, _) in enumerate(COLE_HOPF_STATES))
    v = sum(w[1 + j] * my for j, (_, my) in enumerate(COLE_HOPF_STATES))
    return u, v


FIELDS = ("wave", "cole-hopf")


def exact_field(field, x, y, t, nu, box):
    """(u, v) of an exact solution by name: Fletcher's ``wave`` or the ``cole-hopf`` fronts centred in ``box``."""
    if field == "wave":
        return exact_solution(x, y, t, nu)
    if field == "cole-hopf":
        return cole_hopf_solution(x, y, t, nu, [(lo + hi) / 2 for lo, hi in zip(*box)])
    raise PinnfastError(f"unknown field {field!r}; choose one of {', '.join(FIELDS)}")


class ExactBurgers(FunctionModule):
    """An exact solution as a module ``(N, 3) → (N, 2)``, so it can go through the ``autograd`` jets."""

    def __init__(self, nu, field="wave", box=None):
        super().__init__(self._solution, 3, 2)
        self.nu, self.field, self.box = nu, field, DEMO_BOX if box is None else box

    def _solution(self, points):
        u, v = exact_field(self.field, points[:, 0], points[:, 1], points[:, 2], self.nu, self.box)
        return torch.stack([u, v], 1)


DEMO_BOX = ((-1.0, -1.0, 0.0), (1.0, 1.0, 1.0))


def make_observations(nu, n, noise=0.0, seed=0, box=DEMO_BOX, field="wave"):
    """``n`` uniform random points in ``box`` with exact (u, v) plus Gaussian noise of ``noise`` × std(u, v).

    The default box, x, y ∈ [−1, 1] and t ∈ [0, 1], holds the whole front for ν from 0.01 to 0.1, so that the
    curvature that identifies ν is in the data. ``field``: ``wave`` (Fletcher) or ``cole-hopf`` (two fronts
    through the box centre).
    """
    if not nu > 0:
        raise PinnfastError(f"--nu must be positive, got {nu}")
    if n < 10:
        raise PinnfastError(f"--n must be at least 10, got {n}")
    if not noise >= 0:
        raise PinnfastError(f"--noise must be >= 0, got {noise}")
    lo, hi = np.asarray(box[0], float), np.asarray(box[1], float)
    if lo.shape != (3,) or hi.shape != (3,) or not np.all(hi > lo):
        raise PinnfastError(f"--box needs lo and hi for x, y, t with hi > lo, got lo={lo.tolist()}, hi={hi.tolist()}")
    rng = np.random.default_rng(seed)
    points = lo + (hi - lo) * rng.random((n, 3))
    u, v = exact_field(field, points[:, 0], points[:, 1], points[:, 2], nu, (lo, hi))
    u = u + noise * u.std() * rng.standard_normal(n)
    v = v + noise * v.std() * rng.standard_normal(n)
    return {"x": points[:, 0], "y": points[:, 1], "t": points[:, 2], "u": u, "v": v}
