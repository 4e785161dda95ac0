"""Declared problems: residuals equal hand-written ones (float64), the jet channels follow from the names used, bad
declarations get one clear message, unknowns are learned (positive ones as logs, each at its own rate), and a
PDE trains, resumes and loads like the built-in problems."""
import math

import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast.burgers import FIRST, SECOND
from pinnfast.jets import JetSpec
from conftest import relative_error
from helpers import random_model, random_points

TINY = dict(width=8, depth=1, n_collocation=16, batch_size=16, checkpoint_every=5, nu_warmup=2, average_last=5,
            tol=0.5)


def _jets(model, x, first, second):
    return pf.taylor_jets(model, x, first, second, backend="autograd")


def _burgers_by_hand(model, x, nu):
    value, u_x, u_y, u_t, u_xx, u_yy = _jets(model, x, (0, 1, 2), (0, 1))
    u, v = value[:, :1], value[:, 1:]
    r = u_t + u * u_x + v * u_y - nu * (u_xx + u_yy)  # columns: r_u, r_v
    return r[:, 0], r[:, 1]


def _helmholtz_by_hand(model, x, a1, a2, k):
    value, u_xx, u_yy = _jets(model, x, (), (0, 1))[..., 0]
    exact = torch.sin(a1 * math.pi * x[:, 0]) * torch.sin(a2 * math.pi * x[:, 1])
    return (u_xx + u_yy + k ** 2 * value - (k ** 2 - math.pi ** 2 * (a1 ** 2 + a2 ** 2)) * exact,)


def _klein_gordon_by_hand(model, x):
    value, u_xx, u_tt = _jets(model, x, (), (0, 1))[..., 0]
    p, t = x[:, 0], x[:, 1]
    f = (-25 * math.pi ** 2 * p * torch.cos(5 * math.pi * t) + 6 * p ** 3 * t - 6 * p * t ** 3
         + (p * torch.cos(5 * math.pi * t) + (p * t) ** 3) ** 3)
    return (u_tt - u_xx + value ** 3 - f,)


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
@pytest.mark.parametrize("problem", ["burgers", "helmholtz", "klein-gordon"])
def test_declared_residual_equals_hand_written(problem, kind, rng):
    """Float64, random network and points; the training path (torch jets) and the autograd jets both."""
    if problem == "burgers":
        model = random_model(kind, 3, 2, 9, 2, True, rng)
        declared = pf.BurgersInverse(model, 0.005 + 0.1 * torch.rand((), generator=rng).item()).double()
        x = random_points(model, 40, rng)
        expected = _burgers_by_hand(model, x, declared.nu.item())  # ν as learned: exp of the float32 log ν
    elif problem == "helmholtz":
        model = random_model(kind, 2, 1, 9, 2, False, rng)
        a1, a2, k = (0.5 + 3 * torch.rand(3, generator=rng, dtype=torch.float64)).tolist()
        declared = pf.Helmholtz(model, a1=a1, a2=a2, k=k).double()
        x = random_points(model, 40, rng)
        expected = _helmholtz_by_hand(model, x, a1, a2, k)
    else:
        model = random_model(kind, 2, 1, 9, 2, False, rng)
        declared = pf.KleinGordon(model).double()
        x = random_points(model, 40, rng).abs()  # in [0, 1]²
        expected = _klein_gordon_by_hand(model, x)
    for backend in ("torch", "autograd"):
        parts = declared.residuals(x, backend=backend)
        assert len(parts) == len(expected)
        for part, hand in zip(parts, expected):
            assert relative_error(part, hand) <= 1e-12, backend


def test_klein_gordon_losses_equal_hand_written(rng):
    """The conditions too: the initial term mean((u − exact)²) + mean(u_t²) and the boundary misfit."""
    model = random_model(pf.ModifiedMLP, 2, 1, 9, 2, False, rng)
    problem = pf.KleinGordon(model, n_points=24).double()
    batch = {name: points.double() for name, points in problem.sample(torch.Generator().manual_seed(3)).items()}
    loss_r, (loss_ic, loss_bc) = problem.losses(batch)
    (r,) = _klein_gordon_by_hand(model, batch["collocation"])
    value, u_t = _jets(model, batch["ic"], (1,), ())[..., 0]
    assert relative_error(loss_r, r.square().mean()) <= 1e-12
    assert relative_error(loss_ic, (value - pf.KleinGordon.exact(batch["ic"])[:, 0]).square().mean()
                          + u_t.square().mean()) <= 1e-12
    assert relative_error(loss_bc, (model(batch["bc"]) - pf.KleinGordon.exact(batch["bc"])).square().mean()) <= 1e-12


def test_jet_channels_follow_from_the_names_used():
    burgers = pf.BurgersInverse(pf.MLP(3, 2, 4, 1), 0.1)
    assert burgers.pde.residual.spec == JetSpec(FIRST, SECOND)
    kg = pf.KleinGordon(pf.MLP(2, 1, 4, 1)).pde
    assert kg.residual.spec == JetSpec((), (0, 1)) and kg.conditions["ic"].equation.spec == JetSpec((1,), ())
    heat = pf.PDE(("x", "t"), ("u",), lambda d, k: d.u_t - k * d["u_xx"], {"k": 1.0}, box=((0, 0), (1, 1)))
    assert heat.residual.spec == JetSpec((1,), (0,)) and heat.residual.takes == ("k",)


def _heat(residual=lambda d, kappa: d.u_t - kappa * d.u_xx, unknowns=None, **conditions):
    points = np.random.default_rng(0).random((30, 2))
    conditions = conditions or {"d": pf.Condition(points, values=np.sin(points[:, 0]))}
    return pf.PDE(("x", "t"), ("u",), residual, {"kappa": pf.Unknown(0.5, positive=True)} if unknowns is None
                  else unknowns, conditions)


@pytest.mark.parametrize("build,message", [
    (lambda: _heat(lambda d, kappa: d.u_t - kappa * d.u_yy), "asks for 'u_yy', but 'yy' is not an input"),
    (lambda: _heat(lambda d, kappa: d.u_t - kappa * d.u_y), "asks for 'u_y', but 'y' is not an input (the inputs"),
    (lambda: _heat(lambda d, kappa: d.u_xt - kappa), "mixed second derivatives such as u_xt are not available"),
    (lambda: _heat(lambda d, kappa: d.u_xxx - kappa), "derivatives of order 3 are not available"),
    (lambda: _heat(lambda d, kappa: d.p - kappa), "asks for 'p', but it is neither an input (x, t) nor an output"),
    (lambda: _heat(lambda d, kappa, rho: d.u_t), "takes 'rho', which is not an unknown of the problem"),
    (lambda: _heat(lambda d: d.u_t), "unknown(s) kappa appear in no residual or equation"),
    (lambda: _heat(lambda d, kappa: kappa), "must return one value per point (a tensor shaped like d.x"),
    (lambda: _heat(unknowns={"lambda_1": 1.0}, residual=lambda d, lambda_1: d.u_t), "taken by a metric column"),
    (lambda: _heat(unknowns={"kappa": pf.Unknown(0.0, positive=True)}), "init must be a positive number"),
    (lambda: _heat(d=pf.Condition(np.zeros((3, 2)))), "needs values= (targets of the outputs) or equation="),
    (lambda: _heat(d=pf.Condition(np.zeros((3, 3)), values=np.zeros(3))), "points must have shape (N, 2) for (x, t)"),
    (lambda: _heat(d=pf.Condition(pf.Faces(y="lo"), values=lambda d: d.x)), "Faces(y=...) names no input"),
    (lambda: _heat(d=pf.Condition(pf.Faces(t="lo"), values=lambda d: d.u_x)), "a function of the inputs (x, t) only"),
    (lambda: _heat(d=pf.Condition(pf.Faces(t="lo"), values=np.zeros(4))), "need values given as functions"),
    (lambda: _heat(d=pf.Condition(pf.Faces(t="lo"), equation=lambda d: d.u_t)), "give box=(lo, hi)"),
    (lambda: _heat(d=pf.Condition(np.zeros((3, 2)), values=np.zeros(3))), "every fixed point has x = 0.0"),
    (lambda: _heat(d=pf.Condition([[0, 0], [1, np.nan]], values=[0, 1])), "value nan at index (1, 1) is not finite"),
])
def test_bad_declarations_get_one_clear_message(build, message):
    with pytest.raises(pf.PinnfastError) as error:
        build()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknowns_positive_as_logs_each_at_its_own_rate(tmp_path):
    points = np.random.default_rng(1).random((40, 2))
    pde = pf.PDE(("x", "t"), ("u",), lambda d, kappa, c: d.u_t - kappa * d.u_xx + c * d.u,
                 {"kappa": pf.Unknown(0.3, positive=True, lr=0.05), "c": -0.7},
                 {"d": pf.Condition(points, values=np.cos(points[:, 0]))}, name="heat")
    trainer = pf.Trainer(pde, pf.TrainConfig(steps=3, **TINY), tmp_path, "cpu")
    problem = trainer.problem
    assert problem.log_kappa.item() == pytest.approx(math.log(0.3)) and problem.c.item() == pytest.approx(-0.7)
    assert [group["lr"] for group in trainer.optimizer.param_groups] == [trainer.config.lr, 0.05, trainer.config.nu_lr]
    assert trainer.optimizer.param_groups[1]["params"] == [problem.log_kappa]
    result = trainer.run(progress=False)
    assert result["problem"] == "heat" and result["kappa"] > 0 and {"kappa_window", "c_std"} <= set(result)
    assert result["kappa_init"] == 0.3 and "kappa_true" not in result
    assert problem.value("kappa").item() == pytest.approx(math.exp(problem.log_kappa.item()))


def _sine_heat(seed=0, n=60, kappa=0.1):
    rng = np.random.default_rng(seed)
    x, t = rng.random(n), rng.random(n)
    u = np.exp(-kappa * np.pi ** 2 * t) * np.sin(np.pi * x)
    return pf.PDE(("x", "t"), ("u",), lambda d, kappa: d.u_t - kappa * d.u_xx,
                  {"kappa": pf.Unknown(0.5, positive=True, true=kappa)},
                  {"d": pf.Condition({"x": x, "t": t}, values=u),
                   "ends": pf.Condition(pf.Faces(4, x=("lo", "hi")), values=lambda d: 0 * d.x)},
                  box=((0, 0), (1, 1)), name="sine-heat")


def test_a_declared_problem_trains_resumes_and_loads(tmp_path):
    config = dict(TINY, model="m4")
    straight = pf.Trainer(_sine_heat(), pf.TrainConfig(steps=12, **config), tmp_path / "a", "cpu")
    result = straight.run(progress=False)
    assert straight.problem.term_names == ("d", "ends") and result["kappa_true"] == 0.1
    assert result["kappa_error"] == pytest.approx(result["kappa"] / 0.1 - 1) and result["rmse_u"] > 0
    pf.Trainer(_sine_heat(), pf.TrainConfig(steps=7, **config), tmp_path / "b", "cpu").run(progress=False)
    with pytest.raises(pf.PinnfastError, match=r"pass that pinnfast.PDE again \(it was passed from Python\)"):
        pf.Trainer.resume(None, tmp_path / "b", "cpu", steps=12)
    with pytest.raises(pf.PinnfastError, match="this problem's data is not the data the run in"):
        pf.Trainer.resume(_sine_heat(seed=1), tmp_path / "b", "cpu", steps=12)
    resumed = pf.Trainer.resume(_sine_heat(), tmp_path / "b", "cpu", steps=12)
    resumed.run(progress=False)
    for (name, p), (_, q) in zip(straight.problem.named_parameters(), resumed.problem.named_parameters()):
        assert torch.equal(p, q), name
    run = pf.load_run(tmp_path / "a", pde=_sine_heat())  # no result.json (the CLI writes it): the last iterate
    assert run.unknowns == {"kappa": pytest.approx(straight.problem.value("kappa").item())} and run.nu is None
    built_in = _sine_heat()
    built_in.name = "burgers"  # a resume would take it for the built-in problem
    with pytest.raises(pf.PinnfastError, match="'burgers' is a built-in problem's; give your PDE another name"):
        pf.Trainer(built_in, pf.TrainConfig(steps=2, **config), tmp_path / "c", "cpu")


def test_declared_ensemble_has_one_unknown_per_member(tmp_path):
    trainer = pf.Trainer(_sine_heat(), pf.TrainConfig(steps=8, ensemble=3, **TINY), tmp_path, "cpu")
    batch = trainer.problem.sample(trainer.generator)
    assert batch["ends"].shape == (3, 8, 2) and batch["d"].shape == (3, 16, 2)
    loss_r, terms = trainer.problem.losses(batch)
    assert loss_r.shape == (3,) and [term.shape for term in terms] == [(3,), (3,)]
    result = trainer.run(progress=False)
    assert len(result["kappa_members"]) == 3 and result["kappa_spread"] >= 0
    with pytest.raises(pf.PinnfastError, match="helmholtz has none"):
        pf.Trainer(None, pf.TrainConfig(problem="helmholtz", ensemble=2, **TINY), tmp_path / "h", "cpu")
