"""Ensembles: K networks as one batched model equal K separate models (values, jets, losses, gradients, the
annealing statistic), train, resume, report ν as mean ± spread, and warn when the data do not identify ν."""
import json

import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast.burgers import FIRST, SECOND
from pinnfast.report import nu_message
from pinnfast.runfolder import METRICS_CSV, RESULT, metrics_table
from conftest import relative_error
from helpers import SMALL, run_cli

K = 3


def _ensemble(kind, rng, width=9, depth=2):
    box = (torch.tensor([-1.0, 0.5, 0.0]), torch.tensor([2.0, 1.5, 1.0]))
    model = kind(3, 2, width, depth, domain=box, members=K).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=rng, dtype=torch.float64) * (0.3 if "bias" in name else 0.6))
    return model


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
@pytest.mark.parametrize("shared_points", [True, False])
def test_batched_jets_equal_separate_models(kind, shared_points, rng):
    model = _ensemble(kind, rng)
    x = torch.rand(K, 13, 3, generator=rng, dtype=torch.float64) * torch.tensor([3.0, 1.0, 1.0]) - torch.tensor(
        [1.0, -0.5, 0.0])
    x = x[0] if shared_points else x
    jets = pf.taylor_jets(model, x, FIRST, SECOND)
    assert jets.shape == (6, K, 13, 2)
    for k in range(K):
        single = model.member(k)
        points = x if shared_points else x[k]
        assert relative_error(jets[:, k], pf.taylor_jets(single, points, FIRST, SECOND, backend="autograd")) <= 1e-12
    assert relative_error(jets, pf.taylor_jets(model, x, FIRST, SECOND, backend="autograd")) <= 1e-12


def test_burgers_losses_and_gradients_equal_separate_problems(rng):
    network = _ensemble(pf.ModifiedMLP, rng)
    observed_x = torch.rand(40, 3, generator=rng, dtype=torch.float64)
    observed_uv = torch.rand(40, 2, generator=rng, dtype=torch.float64)
    ensemble = pf.BurgersInverse(network, 0.03, observed_x, observed_uv, n_collocation=16, batch_size=8).double()
    with torch.no_grad():
        ensemble.log_nu.copy_(torch.log(torch.tensor([0.01, 0.03, 0.07])))
    batch = ensemble.sample(torch.Generator().manual_seed(1))
    assert batch["collocation"].shape == (K, 16, 3) and batch["d"].shape == (K, 8, 3)  # "d": the data term
    loss_r, (loss_d,) = ensemble.losses(batch)
    (loss_r.sum() + 2.0 * loss_d.sum()).backward()
    for k in range(K):
        single = pf.BurgersInverse(network.member(k), 1.0, observed_x, observed_uv).double()  # its data term "d"
        with torch.no_grad():
            single.log_nu.copy_(ensemble.log_nu[k])
        r, (d,) = single.losses({name: value[k] for name, value in batch.items()})
        assert relative_error(loss_r[k], r) <= 1e-12 and relative_error(loss_d[k], d) <= 1e-12
        (r + 2.0 * d).backward()
        for (name, p), (_, q) in zip(ensemble.named_parameters(), single.named_parameters()):
            assert relative_error(p.grad[k].reshape(q.shape), q.grad) <= 1e-12, name


def test_members_see_every_observation_or_with_bootstrap_their_own_resample():
    observations = pf.make_observations(0.03, 50, seed=2)
    every = set(map(tuple, torch.tensor(np.column_stack([observations[c] for c in "xyt"]),
                                        dtype=torch.float32).tolist()))
    problem = pf.trainer.build_problem(pf.TrainConfig(ensemble=K, **SMALL), observations)
    assert problem.observed_x.shape == (K, 50, 3)
    assert all(set(map(tuple, problem.observed_x[k].tolist())) == every for k in range(K))
    problem = pf.trainer.build_problem(pf.TrainConfig(ensemble=K, bootstrap=True, **SMALL), observations)
    assert problem.observed_x.shape == (K, 50, 3)
    rows = [set(map(tuple, problem.observed_x[k].tolist())) for k in range(K)]
    assert all(r <= every and len(r) < 50 for r in rows) and len({frozenset(r) for r in rows}) == K
    with pytest.raises(pf.PinnfastError, match="--bootstrap resamples the observations of an ensemble"):
        pf.TrainConfig(bootstrap=True).validate()


def test_an_ensemble_saved_before_the_bootstrap_option_resumes_resampling():
    def saved(config):
        return pf.checkpoint.upgrade({"config": config, "generator": None})["config"]["bootstrap"]

    assert saved({"ensemble": 4}) and not saved({"ensemble": 1}) and not saved({"ensemble": 4, "bootstrap": False})


@pytest.mark.parametrize("mean", ["global", "per-layer"])
def test_annealing_statistic_per_member(mean, rng):
    model = _ensemble(pf.ModifiedMLP, rng)
    names = [name for name, _ in model.named_parameters()]
    grad_r = [torch.randn(p.shape, generator=rng, dtype=torch.float64) for p in model.parameters()]
    grad_d = [torch.randn(p.shape, generator=rng, dtype=torch.float64) * 1e-2 for p in model.parameters()]
    ensemble = pf.Annealing(1, mean=mean, grads="weights", members=K)
    chosen = ensemble.selected(list(zip(names, model.parameters())))
    statistic = ensemble.statistic([grad_r[i] for i in chosen], [[grad_d[i] for i in chosen]])
    assert statistic.shape == (1, K)
    for k in range(K):
        single = pf.Annealing(1, mean=mean, grads="weights")
        expected = single.statistic([grad_r[i][k] for i in chosen], [[grad_d[i][k] for i in chosen]])
        assert relative_error(statistic[:, k], expected) <= 1e-12


@pytest.mark.parametrize("model", ["m3", "m4"])  # fixed weights and annealing, one λ per member
def test_ensemble_run_reports_mean_and_spread_and_resumes(model, tmp_path):
    observations = pf.make_observations(0.03, 60, seed=2)
    config = pf.TrainConfig(model=model, steps=40, ensemble=K, **SMALL)
    straight = pf.Trainer(observations, config, tmp_path / "a", "cpu")
    result = straight.run(progress=False)
    table = metrics_table(tmp_path / "a")
    members = np.stack([table[f"nu_{k}"] for k in range(K)])
    assert np.allclose(table["nu"], members.mean(0), rtol=1e-6)
    window = table[table["step"] > config.nu_warmup][-config.average_last:]
    expected = [float(window[f"nu_{k}"].mean()) for k in range(K)]
    assert result["nu_members"] == pytest.approx(expected, rel=1e-12)
    assert result["nu"] == pytest.approx(np.mean(expected), rel=1e-9)
    assert result["nu_spread"] == pytest.approx(np.std(expected, ddof=1), rel=1e-9) and result["nu_spread"] > 0
    assert straight.weights.lambdas.shape == (1, K)
    message = nu_message(result)
    assert result["nu_sigma"] >= result["nu_spread"]  # the spread combined with the members' sub-box error
    assert (f"{result['nu']:.6g} ± {result['nu_sigma']:.2g} (error bar: the {K} ensemble members' spread ± "
            f"{result['nu_spread']:.2g}") in message

    first = pf.Trainer(observations, pf.TrainConfig(model=model, steps=20, ensemble=K, **SMALL), tmp_path / "b",
                       "cpu")
    first.run(progress=False)
    resumed = pf.Trainer.resume(observations, tmp_path / "b", "cpu", steps=40)
    resumed.run(progress=False)
    for (name, p), (_, q) in zip(straight.problem.named_parameters(), resumed.problem.named_parameters()):
        assert torch.equal(p, q), name
    assert (tmp_path / "a" / METRICS_CSV).read_text() == (tmp_path / "b" / METRICS_CSV).read_text()


def test_ensemble_cli_predict_and_residual_field(tmp_path, capsys):
    data = tmp_path / "obs.npz"
    pf.save_observations(data, pf.make_observations(0.03, 60, seed=2))
    run = tmp_path / "run"
    code, out, err = run_cli(["infer", "--data", str(data), "--out", str(run), "--quiet", "--steps", "30",
                              "--ensemble", str(K), "--width", "8", "--depth", "1", "--collocation", "32"], capsys)
    assert code == 0, err
    assert json.loads((run / RESULT).read_text())["nu_members"] == pytest.approx([0.05] * K)  # still in warm-up
    assert run_cli(["infer", "--data", str(data), "--out", str(run), "--resume", "--ensemble", "2"], capsys)[0] == 2
    points = tmp_path / "points.csv"
    points.write_text("x,y,t\n0.1,0.2,0.3\n-0.5,0.4,0.9\n")
    assert run_cli(["predict", "--run", str(run), "--points", str(points), "--out", str(tmp_path / "uv.csv"),
                    "--device", "cpu"], capsys)[0] == 0
    loaded = pf.load_run(run)
    xyt = torch.tensor([[0.1, 0.2, 0.3], [-0.5, 0.4, 0.9]])
    predicted = np.loadtxt(tmp_path / "uv.csv", delimiter=",", skiprows=1)[:, 3:]
    assert np.allclose(predicted, loaded.network(xyt).mean(0).detach().numpy(), rtol=1e-5, atol=1e-6)
    code, _, err = run_cli(["residual-field", "--run", str(run), "--out", str(tmp_path / "f"), "--grid", "4"],
                           capsys)
    assert code == 2 and "--member 0 to 2" in err
    code, _, err = run_cli(["residual-field", "--run", str(run), "--out", str(tmp_path / "f"), "--grid", "4",
                            "--member", "1"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "f" / "field.npz")["nu"] == pytest.approx(loaded.problem.nu[1].item(), rel=1e-6)
    code, _, err = run_cli(["residual-field", "--run", str(run), "--out", str(tmp_path / "f"), "--member", "3"],
                           capsys)
    assert code == 2 and "member 3 does not exist: this network has members 0 to 2" in err
    (run / RESULT).unlink()  # an interrupted run has no result: ν is the members' last iterates' mean
    assert pf.load_run(run).nu == pytest.approx(loaded.problem.nu.mean().item(), rel=1e-6)


def _constant_field():
    rng = np.random.default_rng(0)
    points = rng.random((300, 3))
    return {"x": points[:, 0], "y": points[:, 1], "t": points[:, 2], "u": np.full(300, 0.7), "v": np.full(300, -0.2)}


def test_warning_fires_on_uninformative_data(tmp_path):
    """A constant field satisfies Burgers for every ν: the members keep whatever ν they wander to."""
    constant = _constant_field()
    config = pf.TrainConfig(model="m3", steps=150, ensemble=4, width=8, depth=1, n_collocation=32, batch_size=32,
                            nu_warmup=20, average_last=100, nu_lr=0.05, checkpoint_every=50, max_steps=150)
    with pytest.warns(pf.PinnfastWarning, match=r"ν is not identified well by these data: its error bar is ±.* "
                                                r"\(the 4 ensemble members disagree by"):
        result = pf.Trainer(constant, config, tmp_path, "cpu").run(progress=False)
    assert result["nu_warning"].startswith("ν is not identified well")


def test_one_network_warns_on_uninformative_data(tmp_path):
    """Without an ensemble, the error bar says it: a constant field has no curvature, so the sub-boxes of the
    domain ask for wildly different ν."""
    config = pf.TrainConfig(model="m3", steps=150, width=8, depth=1, n_collocation=32, batch_size=32, nu_warmup=20,
                            average_last=100, checkpoint_every=50, max_steps=150)
    with pytest.warns(pf.PinnfastWarning, match="ν is not identified well by these data: its error bar is ±"):
        result = pf.Trainer(_constant_field(), config, tmp_path, "cpu").run(progress=False)
    assert result["nu_sigma"] > 10 * config.tol * result["nu"], result["nu_sigma"]
