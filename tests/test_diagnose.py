"""Diagnostics of the gradient pathology: Hessian-vector products against finite differences and a dense Hessian,
Lanczos against eigvalsh, the gradient statistics against a direct computation, the imbalance column, the CLI."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import pinnfast as pf
from pinnfast import reproduce
from pinnfast.diagnose import (HessianOperator, diagnose_problem, gradient_statistics, histogram, layer_weights,
                               log_edges, top_eigenvalue)
from pinnfast.runfolder import METRICS_CSV, metrics_table
from helpers import SMALL, random_model, run_cli

# torch.func's forward mode (the dense reference Hessian) loads decompositions through torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _tiny_problem(kind, rng):
    """A float64 Burgers problem with a tiny network (random biases too) and a fixed batch."""
    observations = pf.make_observations(0.03, 40, seed=int(torch.randint(1000, (1,), generator=rng)))
    x = torch.tensor(np.column_stack([observations[c] for c in ("x", "y", "t")]))
    uv = torch.tensor(np.column_stack([observations[c] for c in ("u", "v")]))
    network = random_model(kind, 3, 2, 5, 1, True, rng)
    problem = pf.BurgersInverse(network, 0.05, x, uv, (x.min(0).values, x.max(0).values), n_collocation=12,
                                batch_size=10).double()
    return problem, problem.sample(rng)


class _TotalLoss(nn.Module):
    """L = L_r + λ L_d of a problem as a module, so that torch.func can differentiate it as a function of θ."""

    def __init__(self, problem, lam):
        super().__init__()
        self.problem, self.lam = problem, lam

    def forward(self, batch):
        loss_r, (loss_d,) = self.problem.losses(batch)
        return loss_r + self.lam * loss_d


def _dense_hessian(problem, batch, lam):
    """∇²θL of the network parameters by torch.func (forward over reverse), and θ flattened."""
    total = _TotalLoss(problem, lam)
    names = [f"problem.network.{name}" for name, _ in problem.network.named_parameters()]
    shapes = [p.shape for p in problem.network.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in problem.network.parameters()])

    def loss(flat):
        pieces = torch.split(flat, [s.numel() for s in shapes])
        return torch.func.functional_call(total, {n: p.reshape(s) for n, p, s in zip(names, pieces, shapes)},
                                          (batch,))

    return torch.func.hessian(loss)(theta), loss, theta


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
def test_hessian_vector_product_against_finite_differences_and_dense_hessian(kind, rng):
    problem, batch = _tiny_problem(kind, rng)
    lam = 3.7
    dense, loss, theta = _dense_hessian(problem, batch, lam)
    assert torch.allclose(dense, dense.T, rtol=1e-10, atol=1e-12)
    loss_r, (loss_d,) = problem.losses(batch)
    operator = HessianOperator(loss_r + lam * loss_d, problem.network.parameters())
    vector = torch.randn(operator.dim, generator=rng, dtype=torch.float64)
    product = operator(vector)
    assert operator.dim == theta.numel()
    assert torch.allclose(product, dense @ vector, rtol=1e-9, atol=1e-9 * product.abs().max())

    def gradient(flat):
        return torch.func.grad(loss)(flat)

    eps = 1e-5
    difference = (gradient(theta + eps * vector) - gradient(theta - eps * vector)) / (2 * eps)
    assert ((difference - product).norm() / product.norm()).item() < 1e-6


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
def test_lanczos_top_eigenvalue_against_eigvalsh(kind, rng):
    problem, batch = _tiny_problem(kind, rng)
    dense, _, _ = _dense_hessian(problem, batch, 1.0)
    exact = torch.linalg.eigvalsh(dense)
    loss_r, (loss_d,) = problem.losses(batch)
    operator = HessianOperator(loss_r + loss_d, problem.network.parameters())
    seed = int(torch.randint(1000, (1,), generator=rng))
    found = top_eigenvalue(operator, operator.dim, tol=1e-6, max_iter=operator.dim, seed=seed)
    assert found.converged
    assert found.value == pytest.approx(exact[-1].item(), rel=1e-6)
    assert found.residual <= 1e-6
    loose = top_eigenvalue(operator, operator.dim, tol=1e-2, max_iter=operator.dim, seed=seed)
    assert loose.iterations < operator.dim  # stopped by the tolerance, not by exhausting the space
    assert abs(loose.value - exact[-1].item()) <= loose.residual * abs(loose.value)


def test_lanczos_takes_the_largest_not_the_largest_magnitude_and_honours_the_cap(rng):
    """A symmetric matrix whose most negative eigenvalue is larger in magnitude than its largest one."""
    n = 40
    basis, _ = torch.linalg.qr(torch.randn(n, n, generator=rng, dtype=torch.float64))
    spectrum = torch.cat([torch.tensor([-50.0, 20.0], dtype=torch.float64), torch.rand(n - 2, generator=rng) * 10])
    matrix = basis @ torch.diag(spectrum) @ basis.T
    found = top_eigenvalue(lambda v: matrix @ v, n, tol=1e-8, max_iter=n)
    assert found.converged and found.value == pytest.approx(20.0, rel=1e-8)
    capped = top_eigenvalue(lambda v: matrix @ v, n, tol=1e-12, max_iter=2)
    assert not capped.converged and capped.iterations == 2
    with pytest.raises(pf.PinnfastError, match="tol"):
        top_eigenvalue(lambda v: matrix @ v, n, tol=0.0)


def test_gradient_statistics_against_direct_computation(rng):
    problem, batch = _tiny_problem(pf.ModifiedMLP, rng)
    diagnosis = diagnose_problem(problem, [2.0], batch, max_iter=3)
    params = dict(problem.network.named_parameters())
    loss_r, (loss_d,) = problem.losses(batch)
    assert diagnosis["losses"] == pytest.approx([loss_r.item(), loss_d.item()], rel=1e-12)
    direct = {}
    for name, parameter in params.items():
        grad_r, = torch.autograd.grad(loss_r, parameter, retain_graph=True)
        grad_d, = torch.autograd.grad(loss_d, parameter, retain_graph=True)
        direct[name] = (grad_r.abs().numpy().ravel(), grad_d.abs().numpy().ravel())
    assert list(diagnosis["gradients"]) == ["encoder_u", "encoder_v", "input_layer", "gates.0", "output"]
    assert list(layer_weights(problem.network)) == list(diagnosis["gradients"])
    for layer, (magnitude_r, magnitude_d) in diagnosis["gradients"].items():
        np.testing.assert_allclose(magnitude_r, direct[layer + ".weight"][0], rtol=1e-12)
        np.testing.assert_allclose(magnitude_d, direct[layer + ".weight"][1], rtol=1e-12)
    every_r = np.concatenate([r for r, _ in direct.values()])
    every_d = np.concatenate([d for _, d in direct.values()])
    assert diagnosis["imbalance"] == pytest.approx([every_r.max() / every_d.mean()], rel=1e-12)

    stats = gradient_statistics([7], problem.term_names, [diagnosis])
    edges = stats["log10_edges"]
    for k, layer in enumerate(stats["layers"]):
        for t, magnitude in enumerate(direct[layer + ".weight"]):
            for b in range(len(edges) - 1):  # a value on an inner edge belongs to the bin above
                upper = magnitude <= 10 ** edges[b + 1] if b == len(edges) - 2 else magnitude < 10 ** edges[b + 1]
                inside = (magnitude >= 10 ** edges[b]) & upper
                assert stats["counts"][0, k, t, b] == inside.sum(), (layer, t, b)
            assert stats["zeros"][0, k, t] == (magnitude == 0).sum()
            assert stats["max_abs"][0, k, t] == pytest.approx(magnitude.max(), rel=1e-12)
            assert stats["mean_abs"][0, k, t] == pytest.approx(magnitude.mean(), rel=1e-12)
            assert stats["median_abs"][0, k, t] == pytest.approx(np.median(magnitude), rel=1e-12)
    assert stats["counts"].sum() + stats["zeros"].sum() == sum(2 * direct[n + ".weight"][0].size
                                                               for n in stats["layers"])


def test_histogram_keeps_zeros_apart_and_edges_cover_all_values():
    magnitude = np.array([0.0, 0.0, 3e-7, 0.5, 1.0, 42.0])
    edges = log_edges([magnitude, np.array([2e-3])])
    assert 10 ** edges[0] <= 3e-7 and 10 ** edges[-1] >= 42.0
    counts, zeros = histogram(magnitude, edges)
    assert zeros == 2 and counts.sum() == 4


# ----------------------------------------------------------------- runs, CLI
TINY = ["--width", "8", "--depth", "1", "--collocation", "32", "--batch-size", "16", "--checkpoint-every", "10",
        "--nu-warmup", "5", "--average-last", "10", "--quiet", "--tol", "0.5"]  # as helpers.SMALL


def _trained(tmp_path, capsys, keep="0,10", steps=20, model="m4"):
    data = tmp_path / "obs.npz"
    pf.save_observations(data, pf.make_observations(0.03, 60, seed=3))
    out = tmp_path / "run"
    code, _, err = run_cli(["infer", "--data", str(data), "--out", str(out), "--steps", str(steps), "--model", model,
                            *(["--keep-checkpoints", keep] if keep else []), *TINY], capsys)
    assert code == 0, err
    return out


def test_imbalance_logged_at_every_annealing_step(tmp_path, capsys):
    out = _trained(tmp_path, capsys, keep=None, steps=25)
    table = metrics_table(out / METRICS_CSV)
    known = np.isfinite(table["imbalance_d"])
    assert table["step"][known].tolist() == [1, 11, 21]  # annealing at steps 0, 10, 20 (rows 1, 11, 21)
    assert np.all(table["imbalance_d"][known] > 0)


def test_diagnose_cli_on_a_short_run(tmp_path, capsys):
    out = _trained(tmp_path, capsys)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_0.pt", "step_10.pt"]
    code, stdout, err = run_cli(["diagnose", "--run", str(out), "--max-iter", "30"], capsys)
    assert code == 0, err
    assert stdout.startswith("step 0: σ_max = ") and "step 10: σ_max = " in stdout
    summary = json.loads((out / "diagnose.json").read_text())
    assert [s["step"] for s in summary["steps"]] == [0, 10]
    assert all(s["sigma_max"] > 0 and s["lanczos_iterations"] <= 30 for s in summary["steps"])
    with np.load(out / "diagnose.npz") as stats:
        assert stats["counts"].shape[:3] == (2, 5, 2)  # steps, layers, terms
        assert stats["terms"].tolist() == ["r", "d"]
        assert stats["layers"].tolist() == ["encoder_u", "encoder_v", "input_layer", "gates.0", "output"]
        imbalance_at_0 = stats["imbalance"][0, 0]
    assert (out / "gradients.png").stat().st_size > 1000
    # the run's seed and the diagnosis' seed are both 0, so step 0 is measured on the first training batch: the
    # float64 ratio agrees with the float32 one the training logged
    assert imbalance_at_0 == pytest.approx(metrics_table(out / METRICS_CSV)["imbalance_d"][0], rel=1e-3)
    code, stdout, err = run_cli(["diagnose", "--run", str(out), "--steps", "20", "--out", str(tmp_path / "d"),
                                 "--max-iter", "5"], capsys)  # the last checkpoint, not kept, is there too
    assert code == 0, err
    assert json.loads((tmp_path / "d" / "diagnose.json").read_text())["steps"][0]["step"] == 20


def test_reproduce_refuses_to_keep_a_step_beyond_its_runs(tmp_path, capsys):
    code, _, err = run_cli(["reproduce", "helmholtz", "--steps", "4", "--keep-checkpoints", "0,9", "--diagnose",
                            "--out", str(tmp_path), "--quiet"], capsys)
    assert code == 2 and "--keep-checkpoints 9 is beyond the 4 steps of each run" in err
    assert not any(tmp_path.iterdir())  # refused before any training


@pytest.mark.parametrize("case", ["no checkpoint", "step not kept", "bad steps"])
def test_diagnose_bad_input_gives_one_clear_message(case, tmp_path, capsys):
    if case == "no checkpoint":
        (tmp_path / "empty").mkdir()
        argv, message = ["--run", str(tmp_path / "empty")], f"{tmp_path / 'empty' / 'checkpoint.pt'}: no checkpoint"
    elif case == "step not kept":
        out = _trained(tmp_path, capsys)
        argv, message = ["--run", str(out), "--steps", "0,5"], ("step 5 was not kept (kept steps: 0, 10; the last "
                                                               "checkpoint is at step 20)")
    else:
        argv, message = ["--run", str(tmp_path), "--steps", "10:0:-1"], "argument --steps: must be steps >= 0"
    code, _, err = run_cli(["diagnose", *argv], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_run_folder_with_kept_checkpoints_is_one_run(tmp_path, capsys):
    """--overwrite removes the kept checkpoints with the run; anything else in that folder is not the run's."""
    out = _trained(tmp_path, capsys)
    (out / "checkpoints" / "notes.txt").write_text("mine")
    code, _, err = run_cli(["infer", "--data", str(tmp_path / "obs.npz"), "--out", str(out), "--steps", "2",
                            "--overwrite", *TINY], capsys)
    assert code == 2 and "checkpoints" in err and (out / "checkpoints" / "notes.txt").exists()
    (out / "checkpoints" / "notes.txt").unlink()
    code, _, err = run_cli(["infer", "--data", str(tmp_path / "obs.npz"), "--out", str(out), "--steps", "2",
                            "--overwrite", *TINY], capsys)
    assert code == 0, err
    assert not (out / "checkpoints").exists()


def test_a_run_begun_before_the_imbalance_column_resumes_without_it(tmp_path, capsys):
    out = _trained(tmp_path, capsys, keep=None, steps=10)
    csv = out / METRICS_CSV
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    column = rows[0].index("imbalance_d")
    csv.write_text("\n".join(",".join(r[:column] + r[column + 1:]) for r in rows) + "\n")
    code, _, err = run_cli(["infer", "--out", str(out), "--resume", "--steps", "20", "--quiet"], capsys)
    assert code == 0, err
    table = metrics_table(csv)
    assert "imbalance_d" not in table.dtype.names and table["step"].tolist() == list(range(1, 21))


def test_kept_checkpoints_are_the_run_at_that_step(tmp_path):
    """The checkpoint kept at step 10 of a 20-step run equals the checkpoint of a run that stopped at 10."""
    data = pf.make_observations(0.03, 60, seed=3)
    config = pf.TrainConfig(**SMALL, model="m4", steps=20, keep_checkpoints=(10,))
    pf.Trainer(data, config, tmp_path / "long").run(progress=False)
    short = pf.TrainConfig(**SMALL, model="m4", steps=10)
    pf.Trainer(data, short, tmp_path / "short").run(progress=False)
    kept = torch.load(tmp_path / "long" / "checkpoints" / "step_10.pt", weights_only=False)
    ended = torch.load(tmp_path / "short" / "checkpoint.pt", weights_only=False)
    assert kept["step"] == ended["step"] == 10
    for name, value in ended["problem"].items():
        assert torch.equal(kept["problem"][name], value), name
    assert torch.equal(kept["weights"]["lambdas"], ended["weights"]["lambdas"])


def test_reproduce_diagnose_compares_models_at_the_same_steps(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(reproduce.SETTINGS, "helmholtz", dict(reproduce.SETTINGS["helmholtz"], width=8, depth=1))
    out = tmp_path / "repro"
    code, stdout, err = run_cli(["reproduce", "helmholtz", "--models", "m1,m3", "--steps", "4", "--diagnose",
                                 "--keep-checkpoints", "0,4", "--out", str(out), "--quiet", "--device", "cpu"], capsys)
    assert code == 0, err
    diagnosed = json.loads((out / "helmholtz_diagnose.json").read_text())
    assert {label: [s["step"] for s in runs] for label, runs in diagnosed.items()} == {"m1": [0, 4], "m3": [0, 4]}
    ratios = [f"step {a['step']}: {a['sigma_max'] / b['sigma_max']:.2f}" for a, b in zip(*diagnosed.values())]
    assert f"σ_max(m1) / σ_max(m3): {', '.join(ratios)}" in (out / "helmholtz_diagnose.md").read_text()
    assert "σ_max(m1) / σ_max(m3)" in stdout
    assert (out / "helmholtz_gradients.png").stat().st_size > 1000
    assert (out / "helmholtz" / "m3" / "diagnose.npz").is_file()
    assert reproduce.quarters(40001) == (0, 10000, 20000, 30000, 40001)  # without --keep-checkpoints
