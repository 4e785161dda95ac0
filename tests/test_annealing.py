"""Algorithm 1: the annealing statistic against a direct computation, for every convention."""
import pytest
import torch

import pinnfast as pf


def _named_params(model):
    return list(model.named_parameters())


def _random_grads(model, generator):
    return [torch.randn(p.shape, generator=generator, dtype=torch.float64) * (1 + k)
            for k, p in enumerate(model.parameters())]


@pytest.mark.parametrize("grads", ["all", "weights"])
@pytest.mark.parametrize("mean", ["global", "per-layer"])
@pytest.mark.parametrize("weighted", [False, True])
def test_statistic_matches_direct_computation(grads, mean, weighted, rng):
    model = pf.ModifiedMLP(3, 2, 7, 2)
    annealing = pf.Annealing(1, grads=grads, mean=mean, weighted=weighted)
    annealing.lambdas.fill_(2.5)
    grad_r, grad_d = _random_grads(model, rng), _random_grads(model, rng)
    names = [name for name, _ in _named_params(model)]
    chosen = [k for k, name in enumerate(names)
              if grads == "all" or (name.endswith("weight") and not name.startswith("encoder"))]
    flat_r = torch.cat([grad_r[k].flatten() for k in chosen]).abs()
    if mean == "global":
        mean_d = torch.cat([grad_d[k].flatten() for k in chosen]).abs().mean()
    else:
        mean_d = sum(grad_d[k].abs().mean() for k in chosen) / len(chosen)
    expected = flat_r.max() / (mean_d * (2.5 if weighted else 1.0))
    selected = annealing.selected(_named_params(model))
    assert selected == chosen
    statistic = annealing.statistic([grad_r[k] for k in selected], [[grad_d[k] for k in selected]])
    assert torch.allclose(statistic, expected.reshape(1), rtol=1e-12)
    annealing.update([grad_r[k] for k in selected], [[grad_d[k] for k in selected]])
    expected_lambda = 0.9 * 2.5 + 0.1 * statistic
    assert torch.allclose(annealing.lambdas.double(), expected_lambda, rtol=1e-6)


def test_weights_set_is_the_trunk_weight_matrices():
    names = [name for name, _ in _named_params(pf.ModifiedMLP(3, 2, 5, 3))]
    annealing = pf.Annealing(1, grads="weights")
    chosen = [names[k] for k in annealing.selected(_named_params(pf.ModifiedMLP(3, 2, 5, 3)))]
    assert chosen == ["input_layer.weight", "gates.0.weight", "gates.1.weight", "gates.2.weight", "output.weight"]


@pytest.mark.parametrize("weighted,fixed_point", [(False, 9.0), (True, 3.0)])
def test_fixed_points(weighted, fixed_point):
    """With a constant gradient ratio of 9, λ → 9 for the paper's formula and λ → 3 (λ² = 9) weighted."""
    annealing = pf.Annealing(1, alpha=0.5, weighted=weighted)
    grad_r, grad_d = [torch.full((4,), 9.0)], [[torch.ones(4)]]
    for _ in range(200):
        annealing.update(grad_r, grad_d)
    assert annealing.lambdas.item() == pytest.approx(fixed_point, rel=1e-5)


def test_period_and_fixed_weights():
    annealing = pf.Annealing(2, period=10)
    assert [s for s in range(35) if annealing.due(s)] == [0, 10, 20, 30]
    fixed = pf.FixedWeights(2)
    assert not any(fixed.due(s) for s in range(35)) and fixed.lambdas.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("option,message", [
    (dict(grads="biases"), "grads must be one of"), (dict(mean="median"), "mean must be one of"),
    (dict(period=0), "period must be an integer"), (dict(alpha=0.0), "alpha must be in"),
])
def test_option_errors(option, message):
    with pytest.raises(pf.PinnfastError, match=message):
        pf.Annealing(1, **option)
