"""Burgers residuals: the exact solution satisfies them through the jets; the residual formula is shared."""
import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast.burgers import FIRST, SECOND, residuals_from_jets
from conftest import relative_error
from helpers import random_model, random_points


@pytest.mark.parametrize("field, box", [("wave", pf.burgers.DEMO_BOX),
                                        ("cole-hopf", ((2.0, -3.0, 1.0), (2.5, -2.0, 2.0)))])
@pytest.mark.parametrize("nu", [0.01, 0.03, 0.1])
def test_exact_solution_has_zero_residual(nu, field, box, rng):
    lo, hi = torch.tensor(box, dtype=torch.float64)
    points = lo + (hi - lo) * torch.rand(200, 3, generator=rng, dtype=torch.float64)
    jets = pf.taylor_jets(pf.ExactBurgers(nu, field, box), points, FIRST, SECOND, backend="autograd")
    residual = residuals_from_jets(jets, nu)
    scale = jets[1:].abs().max() * (1 + nu * jets[4:].abs().max())
    assert residual.abs().max() <= 1e-12 * scale
    # and a wrong viscosity leaves a residual: the check is sensitive
    assert residuals_from_jets(jets, 1.5 * nu).abs().max() > 1e-3


def test_exact_solution_numpy_and_torch_agree(rng):
    points = torch.rand(50, 3, generator=rng, dtype=torch.float64) * 4 - 2
    u_t, v_t = pf.exact_solution(points[:, 0], points[:, 1], points[:, 2], 0.02)
    u_n, v_n = pf.exact_solution(*points.numpy().T, 0.02)
    assert np.allclose(u_t.numpy(), u_n, rtol=1e-14) and np.allclose(v_t.numpy(), v_n, rtol=1e-14)
    assert np.allclose(u_n + v_n, 1.5)


def test_network_residuals_match_autograd_reference(rng):
    model = random_model(pf.ModifiedMLP, 3, 2, 24, 3, True, rng)
    x = random_points(model, 40, rng)
    nu = torch.tensor(0.037, dtype=torch.float64)
    residual, value = pf.burgers_residuals(model, x, nu, backend="torch")
    u, v = model(x).unbind(1)
    x_ref = x.clone().requires_grad_(True)
    out = model(x_ref)
    expected = []
    for c in range(2):
        grad = torch.autograd.grad(out[:, c].sum(), x_ref, create_graph=True)[0]
        lap = sum(torch.autograd.grad(grad[:, i].sum(), x_ref, retain_graph=True)[0][:, i] for i in (0, 1))
        expected.append(grad[:, 2] + u * grad[:, 0] + v * grad[:, 1] - nu * lap)
    assert relative_error(residual, torch.stack(expected, 1)) <= 1e-10
    assert torch.equal(value, model(x))


def test_cole_hopf_field_has_two_fronts_in_its_box():
    """The fronts pass through the box wherever it is: all three states 0, m_1, m_2 are present."""
    data = pf.make_observations(0.01, 4000, box=((5.0, 5.0, 2.0), (6.0, 6.0, 3.0)), field="cole-hopf")
    states = np.array([(0.0, 0.0), *pf.burgers.COLE_HOPF_STATES])
    nearest = np.linalg.norm(np.stack([data["u"], data["v"]], 1)[:, None] - states[None], axis=2).argmin(1)
    assert np.bincount(nearest, minlength=3).min() > 200


def test_observations_have_requested_noise():
    clean = pf.make_observations(0.05, 5000, noise=0.0, seed=3)
    noisy = pf.make_observations(0.05, 5000, noise=0.01, seed=3)
    assert np.array_equal(clean["x"], noisy["x"])
    ratio = np.std(noisy["u"] - clean["u"]) / np.std(clean["u"])
    assert 0.009 < ratio < 0.011


def test_nu_init_must_be_positive():
    with pytest.raises(pf.PinnfastError, match="must be a positive number"):
        pf.BurgersInverse(pf.MLP(3, 2, 4, 1), 0.0)
