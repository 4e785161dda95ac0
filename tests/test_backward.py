"""The backward kernel's stages against float64 autograd of the reference jets, under the interpreter.

Fresh random models, points and upstream gradients per check; the per-program partial gradients and the stash
poisoned with NaN before every call (each program must write all of its partials before it adds to them, every
stage must read only what an earlier stage wrote); widths that are not powers of two; N not a multiple of the
tile; several tiles per persistent program; stages on tiles of their own; chunks of points.
"""
import itertools

import pytest
import torch

import pinnfast as pf
from pinnfast.burgers import FIRST, SECOND, burgers_residuals
from pinnfast.jets import JetSpec
from pinnfast.kernels import backward
from conftest import relative_error
from helpers import SMALL, random_model, random_points, run_cli

SPECS = [((0, 1, 2), (0, 1)), ((0,), (0,)), ((1,), (0, 1)), ((), (0,)), ((1, 0), ()), ((0, 1, 2, 3), (3, 1, 2, 0)),
         ((), ())]
CASES = [  # (kind, width, depth, in_dim, out_dim): every width with every depth, the kinds alternating
    (kind, width, depth, in_dim, out_dim)
    for kind, (width, depth), in_dim, out_dim in zip(
        itertools.cycle([pf.ModifiedMLP, pf.MLP]), itertools.product([16, 50, 64, 100, 128], [1, 3, 6]),
        itertools.cycle([2, 3, 4]), itertools.cycle([2, 1, 3, 4]))
]
N_POINTS = 37  # 3 programs × tiles of 4 or 8 points: several tiles per program and a partial last one


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch):
    """Partial gradients and the stash filled with NaN before the launches: what is read must have been written."""
    partials, stash = backward.new_partials, backward.new_stash
    monkeypatch.setattr(backward, "new_partials",
                        lambda *args: {k: v.fill_(float("nan")) for k, v in partials(*args).items()})
    monkeypatch.setattr(backward, "new_stash", lambda *args: stash(*args).fill_(float("nan")))


def _spec_for(in_dim, index):
    valid = [s for s in SPECS if all(i < in_dim for i in s[0] + s[1])]
    return JetSpec(*valid[index % len(valid)])


def _float64_copy(model):
    copy = type(model)(model.in_dim, model.out_dim, model.width, model.depth)
    copy.load_state_dict(model.state_dict())
    return copy.double()


@pytest.mark.parametrize("case_index", range(len(CASES)))
def test_jets_backward_matches_autograd(case_index, rng):
    kind, width, depth, in_dim, out_dim = CASES[case_index]
    spec = _spec_for(in_dim, case_index)
    model = random_model(kind, in_dim, out_dim, width, depth, case_index % 3 != 0, rng, dtype=torch.float32)
    x = random_points(model, N_POINTS, rng, dtype=torch.float32)
    upstream = torch.randn(spec.n_outputs, N_POINTS, out_dim, generator=rng)
    reference = _float64_copy(model)
    jets = pf.taylor_jets(reference, x.double(), spec.first, spec.second, backend="autograd")
    expected = torch.autograd.grad(jets, list(reference.parameters()), upstream.double())
    magnitudes = _jets_magnitudes(model, x, spec, upstream)
    sums = backward.launch_backward(model, x, spec, "ieee", grad_out=upstream, block=(4, 8)[case_index % 2],
                                    programs=3)
    actual = backward.model_gradients(model, sums)
    for name, got, want, magnitude in zip([n for n, _ in model.named_parameters()], actual, expected, magnitudes):
        assert _round_off(got, want, magnitude) <= 1e-4, name


def _summed_magnitudes(terms, parameters):
    """Σ over points of |∇ of each point's term| (float64): the scale a float32 sum over the points is accurate to.

    A gradient that is a near-cancelling sum (a bias under random upstream values) is only known to that scale's
    relative precision, not to its own.
    """
    total = [torch.zeros_like(p) for p in parameters]
    for term in terms:
        for acc, grad in zip(total, torch.autograd.grad(term, parameters, retain_graph=True)):
            acc += grad.abs()
    return total


def _jets_magnitudes(model, x, spec, upstream):
    reference = _float64_copy(model)
    jets = pf.taylor_jets(reference, x.double(), spec.first, spec.second, backend="autograd")
    return _summed_magnitudes((jets * upstream.double()).sum((0, 2)), list(reference.parameters()))


def _round_off(actual, expected, magnitude):
    """The error relative to the summed magnitudes (the gradient itself where nothing cancels)."""
    return ((actual.double() - expected.double()).norm() / magnitude.norm()).item()


@pytest.mark.parametrize("kind,width,depth", [(pf.ModifiedMLP, 50, 3), (pf.MLP, 100, 1), (pf.ModifiedMLP, 128, 6),
                                              (pf.ModifiedMLP, 16, 1)])
def test_fused_burgers_loss_and_its_gradients(kind, width, depth, rng):
    """L_r = mean(r_u²) + mean(r_v²), ∂L_r/∂θ and ∂L_r/∂ν (through ν = exp(log ν), as the trainer learns it)."""
    model = random_model(kind, 3, 2, width, depth, True, rng, dtype=torch.float32)
    x = random_points(model, N_POINTS, rng, dtype=torch.float32)
    nu_true = 0.005 + 0.1 * torch.rand((), generator=rng, dtype=torch.float64)
    reference = _float64_copy(model)
    log_nu64 = nu_true.log().requires_grad_(True)
    residual, _ = burgers_residuals(reference, x.double(), log_nu64.exp(), backend="autograd")
    expected_loss = residual.square().mean(0).sum()
    unknowns = [*reference.parameters(), log_nu64]
    expected = torch.autograd.grad(expected_loss, unknowns, retain_graph=True)
    magnitudes = _summed_magnitudes(residual.square().sum(1) / N_POINTS, unknowns)
    log_nu = nu_true.float().log().requires_grad_(True)
    loss = pf.kernels.burgers_loss(model, x, log_nu.exp(), precision="ieee", programs=3)
    assert relative_error(loss, expected_loss) <= 1e-5
    loss.backward()
    for (name, p), want, magnitude in zip(model.named_parameters(), expected, magnitudes):
        assert _round_off(p.grad, want, magnitude) <= 1e-4, name
    assert _round_off(log_nu.grad, expected[-1], magnitudes[-1]) <= 1e-4


def test_gradients_are_bit_identical_on_repeat(rng):
    """Per-program partials in a fixed order, no atomics: the same call twice gives the same bits."""
    model = random_model(pf.ModifiedMLP, 3, 2, 50, 2, True, rng, dtype=torch.float32)
    x = random_points(model, 61, rng, dtype=torch.float32)
    first, second = (torch.autograd.grad(pf.kernels.burgers_loss(model, x, 0.02, precision="ieee", programs=3),
                                         list(model.parameters())) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_program_count_changes_only_the_round_off(rng):
    model = random_model(pf.MLP, 2, 1, 20, 2, True, rng, dtype=torch.float32)
    x = random_points(model, 45, rng, dtype=torch.float32)
    upstream = torch.randn(4, 45, 1, generator=rng)
    spec = JetSpec((0, 1), (0,))
    one, many = (backward.model_gradients(model, backward.launch_backward(
        model, x, spec, "ieee", grad_out=upstream, block=4, programs=p)) for p in (1, 5))
    for a, b, magnitude in zip(one, many, _jets_magnitudes(model, x, spec, upstream)):
        assert _round_off(a, b, magnitude) <= 1e-6


TILES_OF_THEIR_OWN = {"forward_layer": (4, 4), "output_layer": (16, 4), "hidden_layer": (8, 4),
                      "weight_gradient": (32, 4), "input_layer": (4, 4)}


def _tiles_of_their_own(monkeypatch):
    """Each stage of the backward on another tile: each reads quads of the stash that other tiles wrote."""
    monkeypatch.setattr(backward, "backward_launch_config", lambda meta, burgers, precision, stage:
                        TILES_OF_THEIR_OWN[stage])


@pytest.mark.parametrize("kind,chunk", [(pf.MLP, None), (pf.ModifiedMLP, 13), (pf.MLP, 13)])
def test_stages_with_tiles_of_their_own_in_chunks(kind, chunk, monkeypatch, rng):
    """Every stage on its own tile, the points in one chunk or in chunks of 13 and a partial one (the partials
    zeroed by the first chunk's launches, the stash reused): the gradients of float64 autograd."""
    _tiles_of_their_own(monkeypatch)
    model = random_model(kind, 3, 2, 16, 2, True, rng, dtype=torch.float32)
    x = random_points(model, 45, rng, dtype=torch.float32)
    spec = JetSpec((0, 1), (0,))
    upstream = torch.randn(spec.n_outputs, 45, 2, generator=rng)
    meta = backward.packed_weights(model, spec, x.device)["meta"]
    assert backward.chunk_points(meta, 45, 1, chunk) == (chunk or 45)
    reference = _float64_copy(model)
    jets = pf.taylor_jets(reference, x.double(), spec.first, spec.second, backend="autograd")
    expected = torch.autograd.grad(jets, list(reference.parameters()), upstream.double())
    actual = backward.model_gradients(model, backward.launch_backward(model, x, spec, "ieee", grad_out=upstream,
                                                                      programs=2, chunk=chunk))
    for name, got, want, magnitude in zip([n for n, _ in model.named_parameters()], actual, expected,
                                          _jets_magnitudes(model, x, spec, upstream)):
        assert _round_off(got, want, magnitude) <= 1e-4, name


def test_ensemble_burgers_loss_in_chunks_with_tiles_of_their_own(rng, monkeypatch):
    """An ensemble's Burgers loss, every stage on its own tile, in chunks of 13 points (two and a partial one): each
    member's loss, ∂L/∂ν and gradients as one chunk on one tile gives them, to round-off."""
    members = 2
    model = _ensemble_model(pf.ModifiedMLP, members, 16, 1, rng)
    x = torch.stack([random_points(model.member(0), 33, rng, dtype=torch.float32) for _ in range(members)])
    nu = 0.005 + 0.1 * torch.rand(members, generator=rng)
    whole = backward.launch_backward(model, x, backward.BURGERS_SPEC, "ieee", nu=nu, block=4, programs=2)
    _tiles_of_their_own(monkeypatch)
    chunked = backward.launch_backward(model, x, backward.BURGERS_SPEC, "ieee", nu=nu, programs=2, chunk=13)
    for name in whole:
        scale = whole[name].abs().max().item()
        torch.testing.assert_close(chunked[name], whole[name], rtol=1e-5, atol=1e-6 * scale, msg=name)


def test_triton_backend_trains_like_the_torch_backend(rng):
    """A few Adam steps on the Burgers loss: the fused loss and the torch jets path stay together."""
    start = random_model(pf.ModifiedMLP, 3, 2, 20, 2, True, rng, dtype=torch.float32)
    points = [random_points(start, 24, rng, dtype=torch.float32) for _ in range(5)]
    params = {}
    for backend in ("torch", "triton"):
        model = _float64_copy(start).float()
        log_nu = torch.tensor(-3.0, requires_grad=True)
        optimizer = torch.optim.Adam([*model.parameters(), log_nu], lr=1e-3)
        for x in points:
            if backend == "triton":
                loss = pf.kernels.burgers_loss(model, x, log_nu.exp(), precision="ieee")
            else:
                loss = burgers_residuals(model, x, log_nu.exp())[0].square().mean(0).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        params[backend] = torch.cat([p.detach().flatten() for p in model.parameters()] + [log_nu.detach()[None]])
    assert (params["triton"] - params["torch"]).abs().max() <= 1e-5  # 5 steps of lr 1e-3 move them ~5e-3


def test_burgers_loss_refuses_what_it_cannot_do():
    with pytest.raises(pf.PinnfastError, match="at least one collocation point"):
        pf.kernels.burgers_loss(pf.ModifiedMLP(3, 2, 16, 1), torch.empty(0, 3), 0.1)
    with pytest.raises(pf.PinnfastError, match=r"Burgers needs a model \(x, y, t\) -> \(u, v\)"):
        pf.kernels.burgers_loss(pf.ModifiedMLP(2, 1, 16, 1), torch.rand(4, 2), 0.1)
    with pytest.raises(pf.PinnfastError, match=r"one value per ensemble member \(2\), got shape \(\)"):
        pf.kernels.burgers_loss(pf.ModifiedMLP(3, 2, 16, 1, members=2), torch.rand(4, 3), 0.1)
    with pytest.raises(pf.PinnfastError, match=r"points must have shape \(N, 3\) or \(2, N, 3\), got \(3, 4, 3\)"):
        pf.kernels.burgers_loss(pf.ModifiedMLP(3, 2, 16, 1, members=2), torch.rand(3, 4, 3), torch.ones(2))


@pytest.mark.parametrize("kind,shared", [(pf.ModifiedMLP, True), (pf.MLP, False)])
def test_ensemble_jets_and_gradients_equal_each_member_alone(kind, shared, rng):
    """An ensemble of 3 on the member axis of the grid: jets and parameter gradients (per-member partials poisoned)
    equal float64 autograd of each member as a network of its own, points shared or one set per member."""
    members, spec = 3, JetSpec((0, 2), (1, 2))
    model = _ensemble_model(kind, members, 20, 2, rng)
    x = random_points(model.member(0), N_POINTS, rng, dtype=torch.float32)
    x = x if shared else torch.stack([random_points(model.member(0), N_POINTS, rng, dtype=torch.float32)
                                      for _ in range(members)])
    upstream = torch.randn(spec.n_outputs, members, N_POINTS, 2, generator=rng)
    jets = pf.taylor_jets(model, x, spec.first, spec.second, backend="triton", precision="ieee")
    grads = torch.autograd.grad(jets, list(model.parameters()), upstream)
    for k in range(members):
        single = _float64_copy(model.member(k))
        points = (x if shared else x[k]).double()
        expected_jets = pf.taylor_jets(single, points, spec.first, spec.second, backend="autograd")
        assert relative_error(jets[:, k], expected_jets) <= 1e-5
        expected = torch.autograd.grad(expected_jets, list(single.parameters()), upstream[:, k].double())
        magnitudes = _jets_magnitudes(model.member(k), points.float(), spec, upstream[:, k])
        for (name, _), got, want, magnitude in zip(model.named_parameters(), grads, expected, magnitudes):
            assert _round_off(got[k].reshape(want.shape), want, magnitude) <= 1e-4, (k, name)


def test_ensemble_burgers_fields_are_each_members_fields(rng):
    """(u, v, r_u, r_v) of an ensemble, (K, N, 4) from one launch, each member on its points with its ν."""
    members = 2
    model = _ensemble_model(pf.ModifiedMLP, members, 20, 2, rng)
    x = torch.stack([random_points(model.member(0), N_POINTS, rng, dtype=torch.float32) for _ in range(members)])
    nu = 0.005 + 0.1 * torch.rand(members, generator=rng)
    out = torch.full((members, N_POINTS, 4), float("nan"))
    pf.kernels.burgers_fields(model, x, nu, precision="ieee", out=out)
    for k in range(members):
        residual, value = burgers_residuals(_float64_copy(model.member(k)), x[k].double(), nu[k].double(),
                                            backend="autograd")
        assert relative_error(out[k], torch.cat([value, residual], 1)) <= 1e-5
    with pytest.raises(pf.PinnfastError, match=r"one value per ensemble member \(2\)"):
        pf.kernels.burgers_fields(model, x, 0.02)


def test_ensemble_burgers_loss_is_each_members_loss(rng):
    """K losses, each on its member's points with its own ν; gradients to the parameters and to every ν."""
    members = 2
    model = _ensemble_model(pf.ModifiedMLP, members, 24, 2, rng)
    x = torch.stack([random_points(model.member(0), N_POINTS, rng, dtype=torch.float32) for _ in range(members)])
    log_nu = (0.005 + 0.1 * torch.rand(members, generator=rng)).log().requires_grad_(True)
    losses = pf.kernels.burgers_loss(model, x, log_nu.exp()[:, None], precision="ieee", programs=3)
    assert losses.shape == (members,)
    weights = torch.rand(members, generator=rng) + 0.5  # each member's loss with its own upstream gradient
    (losses * weights).sum().backward()
    for k in range(members):
        single = _float64_copy(model.member(k))
        log_nu64 = log_nu[k].detach().double().requires_grad_(True)
        residual, _ = burgers_residuals(single, x[k].double(), log_nu64.exp(), backend="autograd")
        loss = residual.square().mean(0).sum()
        assert relative_error(losses[k], loss) <= 1e-5
        unknowns = [*single.parameters(), log_nu64]
        expected = torch.autograd.grad(weights[k].double() * loss, unknowns, retain_graph=True)
        magnitudes = _summed_magnitudes(weights[k].double() * residual.square().sum(1) / N_POINTS, unknowns)
        for (name, p), want, magnitude in zip(model.named_parameters(), expected, magnitudes):
            assert _round_off(p.grad[k].reshape(want.shape), want, magnitude) <= 1e-4, (k, name)
        assert _round_off(log_nu.grad[k], expected[-1], magnitudes[-1]) <= 1e-4


def _ensemble_model(kind, members, width, depth, rng):
    """An ensemble whose members differ in every weight and bias (random biases, not the zero init)."""
    model = kind(3, 2, width, depth, domain=([-1.0, 0.5, 0.0], [2.0, 1.5, 3.0]), members=members)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=rng) * 0.5)
    return model


@pytest.mark.parametrize("model", ["m4", "m1"])
def test_trainer_on_the_triton_backend_follows_the_torch_backend(model, tmp_path):
    """Same seed, same batches: 11 steps (two annealing updates for m4) on the fused kernels and on torch ops end
    with the same network, ν and λ up to float32 round-off; resume continues a triton run exactly."""
    observations = pf.make_observations(0.02, 60, seed=2)
    config = dict(SMALL, model=model, width=12, steps=11, nu_warmup=2, average_last=5)
    runs = {backend: pf.Trainer(observations, pf.TrainConfig(backend=backend, **config), tmp_path / backend, "cpu")
            for backend in ("torch", "triton")}
    for run in runs.values():
        run.run(progress=False)
    assert runs["triton"].result()["backend"] == "triton" and runs["torch"].result()["backend"] == "torch"
    for (name, p), (_, q) in zip(runs["triton"].problem.named_parameters(), runs["torch"].problem.named_parameters()):
        assert (p - q).abs().max() <= 2e-5, name
    assert torch.allclose(runs["triton"].weights.lambdas, runs["torch"].weights.lambdas, rtol=1e-4)
    resumed = pf.Trainer.resume(observations, tmp_path / "triton", "cpu", steps=14)
    resumed.run(progress=False)
    straight = pf.Trainer(observations, pf.TrainConfig(backend="triton", **dict(config, steps=14)), tmp_path / "s",
                          "cpu")
    straight.run(progress=False)
    for (name, p), (_, q) in zip(straight.problem.named_parameters(), resumed.problem.named_parameters()):
        assert torch.equal(p, q), name


def test_an_ensemble_trains_on_the_triton_backend_as_on_torch(tmp_path):
    """K = 2 members as one batched launch per loss: 4 steps (annealing at 0 and 2, per member) end with the
    same networks and ν values as the torch backend's batched ops, up to float32 round-off."""
    observations = pf.make_observations(0.02, 60, seed=2)
    config = dict(SMALL, model="m4", width=12, ensemble=2, anneal_period=2, nu_warmup=1)
    runs = {backend: pf.Trainer(observations, pf.TrainConfig(backend=backend, **config), tmp_path / backend, "cpu")
            for backend in ("torch", "triton")}
    for run in runs.values():
        for _ in range(4):
            run.train_step()
    assert runs["triton"].backend == "triton"
    for (name, p), (_, q) in zip(runs["triton"].problem.named_parameters(), runs["torch"].problem.named_parameters()):
        assert (p - q).abs().max() <= 2e-5, name
    assert not torch.equal(runs["triton"].problem.log_nu[0], runs["triton"].problem.log_nu[1])  # members apart
    assert torch.allclose(runs["triton"].weights.lambdas, runs["torch"].weights.lambdas, rtol=1e-4)


@pytest.mark.parametrize("extra,message", [
    (["--float64"], "--backend triton computes in float32"),
    (["--width", "200"], "supports width <= 128"),
])
def test_cli_backend_triton_where_it_cannot_run(extra, message, tmp_path, capsys):
    code, _, err = run_cli(["infer", "--quiet", "--nu-init", "0.05", "--steps", "2", "--backend", "triton",
                            "--out", str(tmp_path / "run"), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_backend_triton_on_a_cpu_without_the_interpreter(monkeypatch, tmp_path):
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(pf.PinnfastError, match="--backend triton needs a CUDA GPU"):
        pf.Trainer(pf.make_observations(0.02, 60, seed=2), pf.TrainConfig(backend="triton", **SMALL), tmp_path, "cpu")
