"""CPU benchmarks (pytest-benchmark): jets by forward Taylor propagation vs nested autograd, and training steps.

    pytest benchmarks/test_bench_cpu.py --benchmark-only --benchmark-columns=median,iqr,rounds
"""
import pytest
import torch

import pinnfast as pf

N_POINTS = 1024


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return pf.ModifiedMLP(3, 2, 64, 4, domain=([-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]))


@pytest.fixture(scope="module")
def points():
    return torch.rand(N_POINTS, 3) * torch.tensor([2.0, 2.0, 1.0]) - torch.tensor([1.0, 1.0, 0.0])


@pytest.mark.parametrize("backend", ["torch", "autograd"])
def test_jets_forward(benchmark, model, points, backend):
    """Value, ∂x, ∂y, ∂t, ∂xx, ∂yy of W=64 L=4 M3 at 1024 points."""
    benchmark.group = "jets forward, M3 W=64 L=4, N=1024"
    benchmark(lambda: pf.taylor_jets(model, points, backend=backend).detach())


@pytest.mark.parametrize("backend", ["torch", "autograd"])
def test_jets_forward_backward(benchmark, model, points, backend):
    """Jets plus the reverse pass to the parameters (what a training step needs)."""
    benchmark.group = "jets forward+backward, M3 W=64 L=4, N=1024"

    def step():
        pf.taylor_jets(model, points, backend=backend).square().sum().backward()
        model.zero_grad(set_to_none=True)

    benchmark(step)


@pytest.mark.parametrize("width,depth,n_points", [(32, 3, 512), (64, 4, 1024)])
@pytest.mark.parametrize("model_name", ["m3", "m4"])
def test_training_step(benchmark, tmp_path, model_name, width, depth, n_points):
    """One optimiser step (m4: annealing statistics every 10th step, as in the default)."""
    benchmark.group = f"training step W={width} L={depth} Nr=Nd={n_points}"
    observations = pf.make_observations(0.02, 2000, seed=0)
    config = pf.TrainConfig(model=model_name, width=width, depth=depth, n_collocation=n_points,
                            batch_size=n_points)
    trainer = pf.Trainer(observations, config, tmp_path, "cpu")
    benchmark.pedantic(trainer.train_step, rounds=40, warmup_rounds=5)


def test_training_step_compiled(benchmark, tmp_path):
    """The default step (m4, W=32 L=3, 512 + 512 points) with ``compile=True``: the losses through torch.compile
    (its first call, a warm-up round, compiles: about half a minute on 2 cores without torch's on-disk cache)."""
    benchmark.group = "training step W=32 L=3 Nr=Nd=512"
    config = pf.TrainConfig(n_collocation=512, batch_size=512, compile=True)
    trainer = pf.Trainer(pf.make_observations(0.02, 2000, seed=0), config, tmp_path, "cpu")
    trainer.train_step()  # compiles
    assert trainer.config.compile, "torch.compile failed: this would time the uncompiled step"
    benchmark.pedantic(trainer.train_step, rounds=40, warmup_rounds=5)
