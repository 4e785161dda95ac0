"""1D viscous Burgers with two unknown coefficients, the classic PINN inverse benchmark (Raissi, Perdikaris &
Karniadakis 2019, J. Comput. Phys. 378):

    u_t + λ1 u u_x − λ2 u_xx = 0,  x ∈ [−1, 1], t ∈ [0, 1],  u(x, 0) = −sin(πx),  u(±1, t) = 0,

with true λ1 = 1 and λ2 = 0.01/π. The data are the exact solution at 2000 random points, computed from the
Cole–Hopf formula by quadrature, clean or with 1 % noise (σ = 0.01 · std(u)); λ1 starts at 0 and λ2 at 0.02.

    python examples/burgers_1d_inverse.py [--noise 0.01] [--steps N] [--out DIR]
    pinnfast train --problem examples/burgers_1d_inverse.py:make_problem --out runs/burgers1d
    pinnfast train --problem examples/burgers_1d_inverse.py:noisy --out runs/burgers1d-noisy
    pinnfast train --problem examples/burgers_1d_inverse.py:make_problem --data my.npz --out runs/mine  # x, t, u
"""
import numpy as np

import pinnfast as pf

NU = 0.01 / np.pi  # the true λ2
SETTINGS = dict(width=32, depth=3, steps=10000, lr=1e-3, stop_when_settled=False)  # `python examples/burgers_1d_inverse.py` trains with these


def exact(x, t, nu=NU, nodes=2001):
    """Cole–Hopf: u = −∫ sin(π(x−η)) f(x−η) G dη / ∫ f(x−η) G dη with f(y) = exp(−cos(πy) / (2πν)) and
    G = exp(−η² / (4νt)), by the trapezoid rule over the η where the integrand matters, in log space (its
    exponents reach 1/(2πν) = 50)."""
    x, t = (np.array(a, dtype=float) for a in np.broadcast_arrays(np.atleast_1d(x), np.atleast_1d(t)))
    u = -np.sin(np.pi * x)  # t = 0
    later = t > 0
    xs, ts = x[later][:, None], t[later][:, None]
    eta = np.linspace(-1.0, 1.0, nodes) * np.sqrt(4 * nu * ts * (1 / (np.pi * nu) + 40))  # beyond: < e^-40
    y = xs - eta
    exponent = -eta ** 2 / (4 * nu * ts) - np.cos(np.pi * y) / (2 * np.pi * nu)
    weight = np.exp(exponent - exponent.max(1, keepdims=True))
    u[later] = -(np.sin(np.pi * y) * weight).sum(1) / weight.sum(1)
    return u


def observations(n=2000, noise=0.0, seed=0):
    """``n`` uniform random points of [−1, 1] × [0, 1] with the exact u, plus Gaussian noise of noise · std(u)."""
    rng = np.random.default_rng(seed)
    x, t = rng.uniform(-1, 1, n), rng.uniform(0, 1, n)
    u = exact(x, t)
    return {"x": x, "t": t, "u": u + noise * u.std() * rng.standard_normal(n)}


def make_problem(data=None, noise=0.0):
    """The inverse problem on ``data`` (a file with columns x, t, u), or on the exact solution's observations."""
    columns = pf.data.load_table(data, ("x", "t", "u")) if data else observations(noise=noise)
    return pf.PDE(
        inputs=("x", "t"), outputs=("u",),
        residual=lambda d, lambda1, lambda2: d.u_t + lambda1 * d.u * d.u_x - lambda2 * d.u_xx,
        unknowns={"lambda1": pf.Unknown(0.0, true=1.0), "lambda2": pf.Unknown(0.02, positive=True, true=NU)},
        conditions={"d": pf.Condition({"x": columns["x"], "t": columns["t"]}, values=columns["u"])},
        box=((-1.0, 0.0), (1.0, 1.0)), name="burgers-1d")


def noisy(data=None):
    """The same with 1 % noise on the generated observations."""
    return make_problem(data, noise=0.01)


if __name__ == "__main__":
    from example_main import main  # beside this file; imported here, as the file is also loaded by path

    main(__doc__, make_problem, SETTINGS, "runs/burgers_1d_inverse", "noise level σ (default 0; the benchmark: 0.01)")
