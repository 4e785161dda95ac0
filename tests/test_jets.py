"""The torch Taylor jets against the nested-autograd reference (float64), and the jets API contract."""
import pytest
import torch

import pinnfast as pf
from conftest import relative_error
from helpers import random_model, random_points

SPECS = [((0, 1, 2), (0, 1)), ((1,), (0, 1)), ((), (0,)), ((0, 1), ()), ((2, 0), (2,))]


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
@pytest.mark.parametrize("width,depth,in_dim", [(1, 1, 3), (7, 6, 3), (16, 2, 4), (50, 3, 3), (33, 4, 3),
                                                (64, 1, 4)])
@pytest.mark.parametrize("with_domain", [False, True])
def test_torch_jets_match_autograd(kind, width, depth, in_dim, with_domain, rng):
    model = random_model(kind, in_dim, 2, width, depth, with_domain, rng)
    x = random_points(model, 29, rng)
    for first, second in SPECS:
        expected = pf.taylor_jets(model, x, first, second, backend="autograd")
        actual = pf.taylor_jets(model, x, first, second, backend="torch")
        assert actual.shape == (1 + len(first) + len(second), 29, 2)
        assert relative_error(actual, expected) <= 1e-10, (first, second)


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
@pytest.mark.parametrize("in_dim", [2, 4])
def test_jets_in_two_and_four_dims(kind, in_dim, rng):
    model = random_model(kind, in_dim, 3, 10, 2, True, rng)
    x = random_points(model, 17, rng)
    first, second = tuple(range(in_dim)), tuple(range(in_dim))
    expected = pf.taylor_jets(model, x, first, second, backend="autograd")
    assert relative_error(pf.taylor_jets(model, x, first, second, backend="torch"), expected) <= 1e-10


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
def test_jets_are_differentiable_in_the_parameters(kind, rng):
    """The parameter gradients of a loss on the jets agree between the two backends."""
    model = random_model(kind, 3, 2, 12, 3, True, rng)
    x = random_points(model, 23, rng)
    weights = torch.randn(6, 23, 2, generator=rng, dtype=torch.float64)
    grads = {}
    for backend in ("autograd", "torch"):
        loss = (pf.taylor_jets(model, x, backend=backend) * weights).square().sum()
        grads[backend] = torch.autograd.grad(loss, list(model.parameters()))
    for g_torch, g_ref in zip(grads["torch"], grads["autograd"]):
        assert relative_error(g_torch, g_ref) <= 1e-10


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
def test_float32_jets(kind, rng):
    model = random_model(kind, 3, 2, 20, 2, True, rng)
    x = random_points(model, 31, rng)
    expected = pf.taylor_jets(model, x, backend="autograd")
    actual = pf.taylor_jets(model.float(), x.float(), backend="torch")
    assert actual.dtype == torch.float32
    assert relative_error(actual, expected) <= 1e-4


def test_forward_is_the_value_channel(rng):
    model = random_model(pf.ModifiedMLP, 3, 2, 9, 2, True, rng)
    x = random_points(model, 11, rng)
    assert torch.equal(model(x), pf.taylor_jets(model, x, backend="torch")[0])


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
def test_forward_takes_leading_axes_of_points_as_nn_linear_does(kind, rng):
    """Points (B, N, in) give (B, N, out), each slice its own (M3's input layers run batched on an axis of their
    own, which must not meet the points' leading axes)."""
    model = random_model(kind, 3, 2, 9, 2, True, rng)
    x = torch.stack([random_points(model, 7, rng) for _ in range(3)])
    expected = torch.stack([model(points) for points in x])
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)


def test_domain_normalisation_maps_box_to_unit_cube():
    model = pf.MLP(2, 1, 4, 1, domain=([0.0, -2.0], [4.0, 2.0]))
    corners = torch.tensor([[0.0, -2.0], [4.0, 2.0], [2.0, 0.0]])
    normalised = corners * model.in_scale + model.in_shift
    assert torch.allclose(normalised, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))


@pytest.mark.parametrize("call,message", [
    (dict(backend="jax"), "unknown jets backend 'jax'"),
    (dict(first=(0, 0)), "repeats a direction"),
    (dict(second=(3,)), "direction 3 is not an input index"),
    (dict(backend="torch", precision="ieee"), "apply only to the triton backend"),
])
def test_jets_argument_errors(call, message):
    model = pf.MLP(3, 2, 4, 1)
    with pytest.raises(pf.PinnfastError, match=message):
        pf.taylor_jets(model, torch.rand(5, 3), **call)


def test_jets_reject_wrong_input_shape():
    with pytest.raises(pf.PinnfastError, match=r"x must have shape \(N, 3\)"):
        pf.taylor_jets(pf.MLP(3, 2, 4, 1), torch.rand(5, 2))


@pytest.mark.parametrize("bad", [dict(width=0), dict(depth=0), dict(width=2.5)])
def test_model_shape_errors(bad):
    args = dict(in_dim=3, out_dim=2, width=4, depth=1) | bad
    with pytest.raises(pf.PinnfastError, match="must be an integer >= 1"):
        pf.ModifiedMLP(**args)


def test_domain_errors():
    with pytest.raises(pf.PinnfastError, match="hi > lo"):
        pf.MLP(2, 1, 4, 1, domain=([0.0, 1.0], [1.0, 1.0]))
