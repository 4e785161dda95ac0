"""Streamed residual evaluation and the residual-field command."""
import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast import evaluate
from pinnfast.burgers import FIRST, SECOND, residuals_from_jets
from pinnfast.cli import main
from conftest import relative_error
from helpers import random_model, random_points


def _reference_fields(model, x, nu):
    jets = pf.taylor_jets(model.double(), x.double(), FIRST, SECOND, backend="autograd")
    model.float()
    return torch.cat([jets[0], residuals_from_jets(jets, nu)], 1)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_chunked_fields_match_reference(backend, rng):
    model = random_model(pf.ModifiedMLP, 3, 2, 30, 2, True, rng, dtype=torch.float32)
    x = random_points(model, 45, rng, dtype=torch.float32)
    expected = _reference_fields(model, x, 0.03)
    fields = pf.evaluate_residuals(model, x, 0.03, chunk_size=20, backend=backend, precision=None)
    assert fields.shape == (45, 4) and not fields.requires_grad
    for c in range(4):
        assert relative_error(fields[:, c], expected[:, c]) <= 1e-4
    norms = pf.evaluate_residuals(model, x, 0.03, chunk_size=16, output="squared_norm", backend=backend)
    assert torch.allclose(norms, fields[:, 2:].square().sum(1), rtol=1e-5, atol=1e-12)
    total = pf.evaluate_residuals(model, x, 0.03, chunk_size=16, output="total", backend=backend)
    assert total.shape == () and total.dtype == torch.float64
    assert abs(total.item() / expected[:, 2:].double().square().sum().item() - 1) <= 1e-4


def test_generated_points_are_streamed_in_bounded_chunks(monkeypatch):
    """Chunk bookkeeping for a large N: every point once, no chunk above chunk_size, results in place."""
    requested = []

    def source(start, stop):
        requested.append((start, stop))
        return torch.arange(start, stop, dtype=torch.float32)[:, None].expand(-1, 3)

    def fake_fields(model, x, nu, backend, options):  # the model's cost is not the point here
        return torch.stack([x[:, 0], x[:, 0], x[:, 0], 2 * x[:, 0]], 1)

    monkeypatch.setattr(evaluate, "_burgers_fields", fake_fields)
    n, chunk = 1_000_003, 1 << 17
    result = pf.evaluate_residuals(pf.MLP(3, 2, 4, 1), source, 0.1, n=n, chunk_size=chunk, output="squared_norm")
    assert requested[0][0] == 0 and requested[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(requested, requested[1:]))
    assert max(stop - start for start, stop in requested) <= chunk
    expected = 5 * torch.arange(n, dtype=torch.float32) ** 2
    assert torch.equal(result, expected)


@pytest.mark.parametrize("call,message", [
    (dict(output="mean"), "unknown output 'mean'"), (dict(chunk_size=0), "chunk_size must be an integer >= 1"),
    (dict(backend="autograd"), "unknown backend 'autograd'"),
])
def test_evaluate_errors(call, message):
    with pytest.raises(pf.PinnfastError, match=message):
        pf.evaluate_residuals(pf.MLP(3, 2, 4, 1), torch.rand(5, 3), 0.1, **call)


def test_evaluate_shape_errors():
    with pytest.raises(pf.PinnfastError, match=r"points must have shape \(N, 3\)"):
        pf.evaluate_residuals(pf.MLP(3, 2, 4, 1), torch.rand(5, 2), 0.1)
    with pytest.raises(pf.PinnfastError, match="need the total count n"):
        pf.evaluate_residuals(pf.MLP(3, 2, 4, 1), lambda a, b: torch.rand(b - a, 3), 0.1)


def test_residual_field_command(tmp_path, capsys):
    data = tmp_path / "obs.npz"
    pf.save_observations(data, pf.make_observations(0.03, 60, seed=2))
    run = tmp_path / "run"
    assert main(["infer", "--data", str(data), "--out", str(run), "--steps", "5", "--quiet"]) == 0
    out = tmp_path / "field"
    assert main(["residual-field", "--run", str(run), "--out", str(out), "--grid", "8", "--times", "0", "0.5",
                 "--exact-nu", "0.03", "--device", "cpu"]) == 0
    field = np.load(out / "field.npz")
    assert field["r_u"].shape == (2, 8, 8) and field["u_exact"].shape == (2, 8, 8)
    assert np.isfinite(field["r_v"]).all()
    lo, hi = np.min(np.load(data)["x"]), np.max(np.load(data)["x"])
    assert field["x"][0] == pytest.approx(lo, abs=1e-5) and field["x"][-1] == pytest.approx(hi, abs=1e-5)
    assert (out / "field.png").stat().st_size > 1000
    assert "rms |r|" in capsys.readouterr().out


def test_residual_field_without_run(tmp_path, capsys):
    assert main(["residual-field", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "f")]) == 2
    assert "no checkpoint; train with `pinnfast infer" in capsys.readouterr().err
