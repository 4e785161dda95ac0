"""Every Triton kernel against the float64 autograd reference, under the interpreter on CPU tensors.

Fresh random models and points per check, outputs poisoned with NaN before the launch, widths that are not
powers of two, and N that is not a multiple of the tile.
"""
import itertools

import pytest
import torch

import pinnfast as pf
from pinnfast.burgers import FIRST, SECOND, residuals_from_jets
from pinnfast.jets import JetSpec
from pinnfast.kernels import jets as kernel
from conftest import relative_error
from helpers import random_model, random_points

SPECS = [((0, 1, 2), (0, 1)), ((0,), (0,)), ((1,), (0, 1)), ((), (0,)), ((1, 0), ()), ((0, 1, 2, 3), (3, 1, 2, 0))]
CASES = [  # (width, depth, in_dim, out_dim): every width with every depth; in/out dims and specs cycle
    (width, depth, in_dim, out_dim)
    for (width, depth), in_dim, out_dim in zip(itertools.product([16, 50, 64, 100, 128], [1, 3, 6]),
                                               itertools.cycle([2, 3, 4, 1]), itertools.cycle([2, 1, 3, 4]))
]
N_POINTS = 37  # not a multiple of the 16-point tile


def _spec_for(in_dim, index):
    valid = [s for s in SPECS if all(i < in_dim for i in s[0] + s[1])]
    first, second = valid[index % len(valid)]
    return JetSpec(first, second)


def _check_channels(actual, expected, spec):
    """Relative error per channel: ≤ 1e-5 for value and first derivatives, ≤ 1e-4 for second derivatives."""
    n_first = 1 + len(spec.first)
    for c in range(actual.shape[0]):
        bound = 1e-5 if c < n_first else 1e-4
        assert relative_error(actual[c], expected[c]) <= bound, f"channel {c}"


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
@pytest.mark.parametrize("case_index", range(len(CASES)))
def test_jets_kernel_matches_autograd(kind, case_index, rng):
    width, depth, in_dim, out_dim = CASES[case_index]
    spec = _spec_for(in_dim, case_index)
    model = random_model(kind, in_dim, out_dim, width, depth, case_index % 2 == 0, rng, dtype=torch.float32)
    x = random_points(model, N_POINTS, rng, dtype=torch.float32)
    expected = pf.taylor_jets(model.double(), x.double(), spec.first, spec.second, backend="autograd")
    model.float()
    out = torch.full((spec.n_outputs, N_POINTS, out_dim), float("nan"))
    kernel.launch(model, x, spec, out, out.new_zeros(1), False, "ieee", 16)
    assert not out.isnan().any(), "the kernel left part of the output unwritten"
    _check_channels(out, expected, spec)
    # The public path picks its tile from the launch table: another launch, whose dots of other shapes may round
    # differently (under the interpreter, numpy's BLAS with OPENBLAS_CORETYPE=Haswell does), so it is held to the
    # reference too, not to the bits of the launch above.
    _check_channels(pf.taylor_jets(model, x, spec.first, spec.second, backend="triton", precision="ieee"), expected,
                    spec)


@pytest.mark.parametrize("kind,width,depth", [(pf.ModifiedMLP, 50, 3), (pf.MLP, 100, 1), (pf.ModifiedMLP, 128, 6)])
def test_fused_burgers_kernel_matches_reference_residuals(kind, width, depth, rng):
    model = random_model(kind, 3, 2, width, depth, True, rng, dtype=torch.float32)
    x = random_points(model, N_POINTS, rng, dtype=torch.float32)
    nu = 0.005 + 0.1 * torch.rand((), generator=rng).item()
    jets = pf.taylor_jets(model.double(), x.double(), FIRST, SECOND, backend="autograd")
    model.float()
    expected = torch.cat([jets[0], residuals_from_jets(jets, nu)], 1)
    out = torch.full((N_POINTS, 4), float("nan"))
    kernel.burgers_fields(model, x, nu, precision="ieee", out=out)
    assert not out.isnan().any()
    for c in range(4):
        assert relative_error(out[:, c], expected[:, c]) <= 1e-4, f"column {c}"


def test_round_tf32_is_cvt_rna(rng):
    """Nearest tf32 (10 mantissa bits), ties away from zero; high + low parts give back fp32 accuracy."""
    x = torch.randn(10000, generator=rng) * 10.0 ** torch.randint(-20, 20, (10000,), generator=rng)
    high = kernel.round_tf32(x)
    assert not (high.view(torch.int32) & 0x1FFF).any()
    assert ((high - x).abs() <= 2.0 ** -11 * x.abs()).all()
    assert ((high + kernel.round_tf32(x - high) - x).abs() <= 2.0 ** -21 * x.abs()).all()
    ties = torch.tensor([1 + 2.0 ** -11, -(1 + 2.0 ** -11), 1 + 3 * 2.0 ** -11])  # halfway between tf32 neighbours
    assert kernel.round_tf32(ties).tolist() == [1 + 2.0 ** -10, -(1 + 2.0 ** -10), 1 + 4 * 2.0 ** -11]


@pytest.mark.parametrize("precision, bound", [("tf32x3", 1e-4), ("tf32", 3e-2)])
def test_tensor_core_precisions_use_the_host_split_weights(precision, bound, rng):
    """Under the interpreter the tf32 modes multiply by the host's tf32 weight planes (fp32 products): tf32x3
    (high + low planes) stays at fp32 accuracy, tf32 (high plane only) is coarse, as on the GPU."""
    model = random_model(pf.ModifiedMLP, 3, 2, 50, 3, True, rng, dtype=torch.float32)
    x = random_points(model, N_POINTS, rng, dtype=torch.float32)
    jets = pf.taylor_jets(model.double(), x.double(), FIRST, SECOND, backend="autograd")
    model.float()
    out = torch.full((N_POINTS, 4), float("nan"))
    kernel.burgers_fields(model, x, 0.03, precision=precision, out=out)
    errors = [relative_error(out[:, c], jets[0][:, c]) for c in range(2)]
    assert max(errors) <= bound and (precision == "tf32x3" or max(errors) > 1e-5), errors


@pytest.mark.parametrize("kind", [pf.MLP, pf.ModifiedMLP])
def test_triton_jets_are_differentiable(kind, rng):
    model = random_model(kind, 3, 2, 20, 2, True, rng, dtype=torch.float32)
    x = random_points(model, N_POINTS, rng, dtype=torch.float32).requires_grad_(True)
    weights = torch.randn(6, N_POINTS, 2, generator=rng)
    grads = {}
    for backend in ("torch", "triton"):
        loss = (pf.taylor_jets(model, x, backend=backend) * weights).sum()
        grads[backend] = torch.autograd.grad(loss, [x, *model.parameters()])
    for g_triton, g_torch in zip(grads["triton"], grads["torch"]):
        assert relative_error(g_triton, g_torch) <= 1e-5


def test_auto_backend_is_torch_on_cpu(rng):
    model = random_model(pf.ModifiedMLP, 3, 2, 10, 2, True, rng, dtype=torch.float32)
    x = random_points(model, 9, rng, dtype=torch.float32)
    assert torch.equal(pf.taylor_jets(model, x, backend="auto"), pf.taylor_jets(model, x, backend="torch"))


def test_triton_on_cpu_without_interpreter_says_how(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(pf.PinnfastError, match="set TRITON_INTERPRET=1 before importing triton"):
        pf.taylor_jets(pf.MLP(3, 2, 16, 1), torch.rand(4, 3), backend="triton")


@pytest.mark.parametrize("model,x,message", [
    (pf.MLP(3, 2, 16, 1).double(), torch.rand(4, 3, dtype=torch.float64), "computes in float32"),
    (pf.MLP(3, 2, 129, 1), torch.rand(4, 3), "width <= 128"),
    (pf.MLP(5, 2, 16, 1), torch.rand(4, 5), "in_dim <= 4"),
    (pf.ExactBurgers(0.1), torch.rand(4, 3), "supports pinnfast.MLP and pinnfast.ModifiedMLP"),
])
def test_unsupported_inputs(model, x, message):
    with pytest.raises(pf.PinnfastError, match=message):
        pf.taylor_jets(model, x, backend="triton")


def test_unknown_precision():
    with pytest.raises(pf.PinnfastError, match="unknown precision 'fp16'"):
        pf.taylor_jets(pf.MLP(3, 2, 16, 1), torch.rand(4, 3), backend="triton", precision="fp16")


@pytest.mark.parametrize("kind,width,block,burgers", [(pf.ModifiedMLP, 50, 4, True), (pf.MLP, 100, 8, True),
                                                       (pf.ModifiedMLP, 100, 32, False), (pf.MLP, 20, 4, False)])
def test_every_tile_size(kind, width, block, burgers, rng):
    """Tiles of 4 to 32 points (37 points leave a partial last tile), widths padded to 64 and 128."""
    model = random_model(kind, 3, 2, width, 2, True, rng, dtype=torch.float32)
    x = random_points(model, N_POINTS, rng, dtype=torch.float32)
    spec = JetSpec(FIRST, SECOND)
    jets = pf.taylor_jets(model.double(), x.double(), FIRST, SECOND, backend="autograd")
    model.float()
    if burgers:
        expected = torch.cat([jets[0], residuals_from_jets(jets, 0.03)], 1).T
        out = torch.full((N_POINTS, 4), float("nan"))
        kernel.launch(model, x, spec, out, torch.tensor([0.03]), True, "ieee", block)
        out = out.T
    else:
        expected, out = jets, torch.full((spec.n_outputs, N_POINTS, 2), float("nan"))
        kernel.launch(model, x, spec, out, out.new_zeros(1), False, "ieee", block)
    assert not out.isnan().any()
    for c in range(out.shape[0]):
        assert relative_error(out[c], expected[c]) <= (1e-5 if c < 4 and not burgers else 1e-4), f"channel {c}"


@pytest.mark.parametrize("width,n_points", [(5, 5), (20, 32), (32, 16), (12, 0)])
def test_small_and_padded_widths_and_tile_edges(width, n_points, rng):
    """Widths below 16 and padded to 32, N below the tile, an exact multiple of it, and N = 0."""
    model = random_model(pf.ModifiedMLP, 4, 2, width, 2, True, rng, dtype=torch.float32)
    spec = JetSpec((0, 1, 2, 3), (0, 1, 2, 3))  # channel groups of four directions
    x = random_points(model, n_points, rng, dtype=torch.float32)
    expected = pf.taylor_jets(model.double(), x.double(), spec.first, spec.second, backend="autograd")
    model.float()
    out = torch.full((spec.n_outputs, n_points, 2), float("nan"))
    kernel.launch(model, x, spec, out, out.new_zeros(1), False, "ieee", 16)
    assert not out.isnan().any()
    if n_points:
        _check_channels(out, expected, spec)


def test_weights_are_packed_once_per_parameter_version(rng, monkeypatch):
    model = random_model(pf.ModifiedMLP, 3, 2, 16, 1, False, rng, dtype=torch.float32)
    x = random_points(model, 20, rng, dtype=torch.float32)
    calls = []
    original = kernel.pack_weights
    monkeypatch.setattr(kernel, "pack_weights", lambda *a: calls.append(1) or original(*a))
    first = pf.taylor_jets(model, x, backend="triton")
    assert torch.equal(pf.taylor_jets(model, x, backend="triton"), first) and len(calls) == 1
    with torch.no_grad():
        model.output.bias.add_(1.0)  # an optimiser step changes the weights in place
    moved = pf.taylor_jets(model, x, backend="triton")
    assert len(calls) == 2 and torch.allclose(moved[0], first[0] + 1.0)


def test_backward_refuses_weights_changed_in_place(rng):
    model = random_model(pf.MLP, 3, 2, 16, 1, False, rng, dtype=torch.float32)
    jets = pf.taylor_jets(model, random_points(model, 20, rng, dtype=torch.float32), backend="triton")
    with torch.no_grad():
        model.output.weight.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified in place between the jets and their backward"):
        jets.sum().backward()


def test_gradients_without_input_grad(rng):
    """x that does not require grad: only the parameters get gradients, equal to the torch path's."""
    model = random_model(pf.ModifiedMLP, 3, 2, 16, 2, True, rng, dtype=torch.float32)
    x = random_points(model, 20, rng, dtype=torch.float32)
    grads = [torch.autograd.grad(pf.taylor_jets(model, x, backend=b).square().sum(), list(model.parameters()))
             for b in ("torch", "triton")]
    for g_triton, g_torch in zip(*grads[::-1]):
        assert relative_error(g_triton, g_torch) <= 1e-5
    assert x.grad is None


@pytest.mark.parametrize("call,message", [
    (lambda m: kernel.burgers_fields(m, torch.rand(4, 2), 0.1), r"points must have shape \(N, 3\)"),
    (lambda m: kernel.burgers_fields(m, torch.rand(4, 3), 0.1, out=torch.empty(4, 3)), r"shape \(4, 4\)"),
    (lambda m: kernel.burgers_fields(m, torch.rand(4, 3), 0.1, out=torch.empty(4, 4, dtype=torch.float64)),
     "contiguous float32"),
    (lambda m: kernel.burgers_fields(m, torch.rand(4, 3), 0.1, out=torch.empty(4, 8)[:, ::2]), "non-contiguous"),
    (lambda m: kernel.burgers_fields(m, torch.rand(4, 3), 0.1, block=24), "block must be one of 4, 8, 16, 32"),
])
def test_bad_launch_arguments(call, message):
    with pytest.raises(pf.PinnfastError, match=message):
        call(pf.ModifiedMLP(3, 2, 16, 1))


def test_launch_config_comes_from_the_table(monkeypatch):
    meta = kernel.pack_weights(pf.ModifiedMLP(3, 2, 64, 4), JetSpec(FIRST, SECOND), "cpu")["meta"]
    monkeypatch.setitem(kernel.LAUNCH_TABLE, kernel.launch_key(meta, True, "tf32x3"), (32, 4))
    assert kernel.launch_config(meta, True, "tf32x3") == (32, 4)
    fewer = kernel.pack_weights(pf.ModifiedMLP(3, 2, 64, 4), JetSpec((2,), (0,)), "cpu")["meta"]  # NSP 1, NOP 1
    assert kernel.launch_config(fewer, True, "tf32x3") == (32, 4)  # a superset's entry
