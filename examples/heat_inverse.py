"""The heat equation with unknown diffusivity κ:

    u_t = κ u_xx,  x ∈ [0, 1], t ∈ [0, 1],  u = e^(−κπ²t) sin(πx) + ½ e^(−9κπ²t) sin(3πx),

with true κ = 0.02. The data are the exact solution at 500 random points (clean, or with noise of σ · std(u));
κ is learned as log κ from 0.2, ten times the truth.

    python examples/heat_inverse.py [--noise 0.01] [--steps N] [--out DIR]
    pinnfast train --problem examples/heat_inverse.py:make_problem --out runs/heat
"""
import numpy as np

import pinnfast as pf

KAPPA = 0.02
SETTINGS = dict(width=32, depth=3, steps=5000, lr=1e-3, stop_when_settled=False)  # `python examples/heat_inverse.py` trains with these


def exact(x, t, kappa=KAPPA):
    """Two decaying sine modes: an exact solution of u_t = κ u_xx (numpy arrays)."""
    return (np.exp(-kappa * np.pi ** 2 * t) * np.sin(np.pi * x)
            + 0.5 * np.exp(-9 * kappa * np.pi ** 2 * t) * np.sin(3 * np.pi * x))


def make_problem(data=None, noise=0.0, n=500, seed=0):
    """The inverse problem on ``data`` (a file with columns x, t, u), or on ``n`` noisy samples of the exact u."""
    if data:
        columns = pf.data.load_table(data, ("x", "t", "u"))
    else:
        rng = np.random.default_rng(seed)
        x, t = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
        u = exact(x, t)
        columns = {"x": x, "t": t, "u": u + noise * u.std() * rng.standard_normal(n)}
    return pf.PDE(
        inputs=("x", "t"), outputs=("u",),
        residual=lambda d, kappa: d.u_t - kappa * d.u_xx,
        unknowns={"kappa": pf.Unknown(0.2, positive=True, true=KAPPA)},
        conditions={"d": pf.Condition({"x": columns["x"], "t": columns["t"]}, values=columns["u"])},
        box=((0.0, 0.0), (1.0, 1.0)), name="heat")


if __name__ == "__main__":
    from example_main import main  # beside this file; imported here, as the file is also loaded by path

    main(__doc__, make_problem, SETTINGS, "runs/heat_inverse", "noise level σ (default 0)")
