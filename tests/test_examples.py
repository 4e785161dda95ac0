"""The examples: their exact solutions are right, and each script runs for a few steps as a user would run it."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cole_hopf_quadrature_meets_the_classic_benchmark():
    """Basdevant et al. (1986): for ν = 0.01/π the steepest slope, at x = 0 and t = 1.6037/π, is |u_x| =
    152.00516; and the initial and boundary values hold."""
    burgers = _example("burgers_1d_inverse")
    t, h = 1.6037 / np.pi, 1e-6
    slope = (burgers.exact(h, t) - burgers.exact(-h, t)) / (2 * h)
    assert slope[0] == pytest.approx(-152.00516, rel=1e-6)
    x = np.linspace(-1, 1, 9)
    assert np.allclose(burgers.exact(x, 0.0), -np.sin(np.pi * x), atol=1e-15)
    assert np.abs(burgers.exact([-1.0, 1.0], [0.3, 0.9])).max() < 1e-12


def test_heat_solution_solves_the_heat_equation():
    heat = _example("heat_inverse")
    rng = np.random.default_rng(0)
    x, t, h = rng.uniform(0.1, 0.9, 50), rng.uniform(0.1, 0.9, 50), 1e-3
    u_t = (heat.exact(x, t + h) - heat.exact(x, t - h)) / (2 * h)
    u_xx = (heat.exact(x + h, t) - 2 * heat.exact(x, t) + heat.exact(x - h, t)) / h ** 2
    assert np.abs(u_t - heat.KAPPA * u_xx).max() < 1e-5 * np.abs(u_t).max()


@pytest.mark.parametrize("script,unknowns", [("burgers_1d_inverse", ("lambda1", "lambda2")),
                                             ("heat_inverse", ("kappa",))])
def test_example_runs_a_few_steps(script, unknowns, tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLES / f"{script}.py"), "--steps", "4", "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, env=dict(os.environ),
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()[-len(unknowns) - 1:]  # after the device note
    assert [line.split(" = ")[0] for line in lines[:-1]] == list(unknowns)
    assert all("error" in line for line in lines[:-1]) and lines[-1].startswith("4 steps in")
    for name in ("checkpoint.pt", "metrics.csv", "result.json", "training.png"):  # the run folder of `train`
        assert (tmp_path / "run" / name).exists(), name
