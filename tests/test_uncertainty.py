"""The sub-box jackknife of the unknowns against a direct computation: the residual of a float64 network by
autograd, each unknown's least-squares value with one sub-box left out (unknowns set one at a time), their spread."""
import math

import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast.burgers import BurgersInverse, ExactBurgers
from pinnfast.uncertainty import subdomain_jackknife
from helpers import random_model


def _direct_jackknife(problem, points, values):
    """θ_(−b) = argmin over the points outside sub-box b of Σ r(θ)², from residuals evaluated by autograd at θ and
    at θ + e_j (the residuals here are linear in the unknowns), then √((B − 1)/B Σ (θ_(−b) − mean)²)."""
    names = list(values)

    def residual_at(theta):
        for name, value in zip(names, theta):
            getattr(problem, problem._attribute(name)).data.fill_(math.log(value) if problem.pde.unknowns[name]
                                                                  .positive else value)
        return torch.cat(problem.residuals(points, backend="autograd")).detach().numpy()

    theta = np.array([values[name] for name in names], dtype=np.float64)
    r = residual_at(theta)
    jacobian = np.stack([residual_at(theta + np.eye(len(names))[j]) - r for j in range(len(names))], 1)
    lo, hi = problem.lo.numpy(), problem.hi.numpy()
    box = ((points.numpy() - lo) / (hi - lo) >= 0.5) @ (1 << np.arange(points.shape[1]))
    box = np.tile(box, len(r) // len(points))
    estimates = []
    for left_out in range(1 << points.shape[1]):
        keep = box != left_out
        shift, *_ = np.linalg.lstsq(jacobian[keep], r[keep], rcond=None)
        estimates.append(theta - shift)
    estimates = np.array(estimates)
    n = len(estimates)
    return dict(zip(names, np.sqrt((n - 1) / n * ((estimates - estimates.mean(0)) ** 2).sum(0))))


def _burgers(network, box):
    return BurgersInverse(network, 0.05, box=box).double()


BOX = ((-1.0, 0.5, 0.0), (2.0, 1.5, 1.0))


@pytest.mark.parametrize("width,depth", [(7, 1), (12, 2)])
def test_burgers_jackknife_equals_the_direct_computation(width, depth, rng):
    network = random_model(pf.ModifiedMLP, 3, 2, width, depth, False, rng)
    network.in_scale.copy_(2 / (torch.tensor(BOX[1]) - torch.tensor(BOX[0])))
    network.in_shift.copy_(-1 - torch.tensor(BOX[0]) * network.in_scale)
    problem = _burgers(network, BOX)
    points = problem.lo + (problem.hi - problem.lo) * torch.rand(203, 3, generator=rng, dtype=torch.float64)
    nu = 0.01 + 0.1 * torch.rand((), generator=rng, dtype=torch.float64).item()
    error = subdomain_jackknife(problem, {"nu": nu}, points)["nu"]
    expected = _direct_jackknife(problem, points, {"nu": nu})["nu"]
    assert expected > 0 and error.item() == pytest.approx(expected, rel=1e-9)
    # the leave-one-out values are least-squares fits: they do not depend on where the residual is linearised
    assert subdomain_jackknife(problem, {"nu": 3 * nu}, points)["nu"].item() == pytest.approx(expected, rel=1e-9)


def test_two_unknowns_of_a_declared_problem(rng):
    """u_t + c u_x − κ u_xx on (x, t): a 2 × 2 least-squares problem per left-out sub-box."""
    pde = pf.PDE(("x", "t"), ("u",), lambda d, kappa, c: d.u_t + c * d.u_x - kappa * d.u_xx,
                 {"kappa": pf.Unknown(0.5, positive=True), "c": pf.Unknown(0.2)}, box=((0.0, 0.0), (1.0, 2.0)))
    network = random_model(pf.MLP, 2, 1, 10, 2, False, rng)
    problem = pf.PDEProblem(pde, network).double()
    points = problem.lo + (problem.hi - problem.lo) * torch.rand(157, 2, generator=rng, dtype=torch.float64)
    values = {"kappa": 0.3, "c": -0.4}
    errors = subdomain_jackknife(problem, values, points)
    expected = _direct_jackknife(problem, points, values)
    for name in values:
        assert errors[name].item() == pytest.approx(expected[name], rel=1e-8)


def test_an_exact_solution_pins_nu_everywhere():
    """Every sub-box of an exact field asks for the true ν: no spread, wherever ν is evaluated."""
    box = ((-1.0, -1.0, 0.0), (1.0, 1.0, 1.0))
    problem = _burgers(ExactBurgers(0.03, box=box), box)
    for nu in (0.03, 0.09):
        assert subdomain_jackknife(problem, {"nu": nu}, backend="autograd")["nu"].item() <= 1e-9 * 0.03


def test_a_field_without_curvature_leaves_nu_free():
    """u = 0.7 + 0.1 x, v = −0.2: Δu = Δv = 0, so the residual is the same for every ν."""
    field = pf.problems.FunctionModule(lambda x: torch.stack([0.7 + 0.1 * x[:, 0], -0.2 + 0 * x[:, 1]], 1)
                                       + 0 * x[:, :2] ** 2, 3, 2)  # the square keeps second derivatives defined
    problem = _burgers(field, BOX)
    assert subdomain_jackknife(problem, {"nu": 0.02}, backend="autograd")["nu"].item() == math.inf


def test_ensemble_members_equal_separate_networks(rng):
    members = 3
    ensemble = pf.ModifiedMLP(3, 2, 9, 2, domain=BOX, members=members).double()
    with torch.no_grad():
        for parameter in ensemble.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=rng, dtype=torch.float64) * 0.6)
    points = torch.tensor(BOX[0]) + (torch.tensor(BOX[1]) - torch.tensor(BOX[0])) * torch.rand(
        131, 3, generator=rng, dtype=torch.float64)
    values = torch.tensor([0.02, 0.05, 0.011], dtype=torch.float64)
    errors = subdomain_jackknife(_burgers(ensemble, BOX), {"nu": values}, points)["nu"]
    assert errors.shape == (members,)
    for k in range(members):
        single = subdomain_jackknife(_burgers(ensemble.member(k), BOX), {"nu": values[k]}, points)["nu"]
        assert errors[k].item() == pytest.approx(single.item(), rel=1e-10)
