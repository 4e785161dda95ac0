"""Training: ν recovery, exact checkpoint/resume, and a clean stop on a non-finite loss."""
import json

import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast.cli import main
from pinnfast.graphs import StepGraphs
from helpers import SMALL, SHIPPED_NU, run_cli
from pinnfast.runfolder import CHECKPOINT, METRICS_CSV



def _observations():
    return pf.make_observations(0.02, 60, seed=2)


def test_every_step_is_a_reference_adam_step_on_its_gradients(tmp_path):
    """The update (fused Adam on the CPU) equals torch's single-tensor Adam on the same gradients, annealing steps
    included, whose gradients from ``autograd.grad`` are partly transposed views: torch 2.13's fused CPU Adam
    misreads those, so the trainer hands it contiguous copies."""
    trainer = pf.Trainer(_observations(), pf.TrainConfig(model="m4", steps=6, anneal_period=2, **{**SMALL, "nu_warmup": 1}),
                         tmp_path / "run", "cpu")
    mirror = {p: p.detach().clone() for p in trainer.params}
    reference = torch.optim.Adam([{**{k: v for k, v in group.items() if k not in ("params", "foreach", "fused")},
                                   "params": [mirror[p] for p in group["params"]]}
                                  for group in trainer.optimizer.param_groups], foreach=False)
    assert trainer.optimizer.defaults["fused"]
    raw = _trainer_grads(trainer)
    assert not all(g.is_contiguous() for g in raw)  # the case that needs the care arises
    update = trainer.optimizer.step

    def step_beside_the_reference():
        for group, twin in zip(trainer.optimizer.param_groups, reference.param_groups):
            twin["lr"] = group["lr"]
        for p, q in mirror.items():
            q.grad = None if p.grad is None else p.grad.clone()
        reference.step()
        return update()

    trainer.optimizer.step = step_beside_the_reference
    for _ in range(6):
        trainer.train_step()
        for p, q in mirror.items():
            torch.testing.assert_close(p.detach(), q, rtol=1e-6, atol=1e-9)


def _trainer_grads(trainer):
    """∇L_r as an annealing step gets it (``autograd.grad``), on a batch drawn without advancing the run."""
    state = trainer.generator.get_state()
    loss_r, _ = trainer.problem.losses(trainer.problem.sample(trainer.generator))
    trainer.generator.set_state(state)
    return [g for g in torch.autograd.grad(loss_r, trainer.params, allow_unused=True) if g is not None]


def _trained(tmp_path, name, steps=6, **options):
    config = pf.TrainConfig(model="m4", steps=steps, anneal_period=2, **{**SMALL, "nu_warmup": 1}, **options)
    trainer = pf.Trainer(_observations(), config, tmp_path / name, "cpu")
    for _ in range(steps):
        trainer.train_step()
    return trainer


def test_compiled_losses_train_as_the_uncompiled_ones(tmp_path, monkeypatch):
    """compile=True: the same steps (annealing ones included: several reverse passes through one compiled graph)
    from the same random stream. The compiler here is aot_eager (the traced graph run op by op): the plumbing is
    the same as inductor's, whose C++ compile takes most of a minute (measured in BENCHMARKS.md)."""
    monkeypatch.setattr(pf.step, "COMPILER", "aot_eager")
    plain, compiled = _trained(tmp_path, "plain"), _trained(tmp_path, "compiled", compile=True)
    assert compiled.stepper.losses != compiled.problem.losses and compiled.config.compile  # compiled, no fallback
    for p, q in zip(plain.params, compiled.params):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-7)
    assert torch.equal(plain.generator.get_state(), compiled.generator.get_state())


@pytest.mark.skipif(not pf.trainer.cpp_compiler_found(), reason="no C++ compiler for inductor")
def test_inductor_compiles_the_default_network_to_the_same_losses_and_gradients(tmp_path):
    """What the command line runs on a CPU by default (compile="auto"): inductor's C++ kernels for the default
    network's losses give the uncompiled losses and gradients on fresh batches, annealing passes included."""
    config = pf.TrainConfig(compile=True, steps=4, anneal_period=2, nu_warmup=1)
    trainer = pf.Trainer(_observations(), config, tmp_path / "run", "cpu")
    for _ in range(config.steps):
        trainer.train_step()
    assert trainer.config.compile and trainer.stepper.losses is not trainer.problem.losses  # compiled, no fallback
    for _ in range(2):
        batch = trainer.problem.sample(trainer.generator)
        expected, got = trainer.problem.losses(batch), trainer.stepper.losses(batch)
        for want, have in zip([expected[0], *expected[1]], [got[0], *got[1]]):
            torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-7)
            grads = [torch.autograd.grad(loss, trainer.params, allow_unused=True, retain_graph=True)
                     for loss in (want, have)]
            for g_want, g_have in zip(*grads):
                if g_want is not None:
                    torch.testing.assert_close(g_have, g_want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("options", [dict(model="m1"), dict(model="m2"), dict(model="m3"), dict(model="m4"),
                                     dict(ensemble=3, bootstrap=True), dict(dtype="float64")])
def test_the_losses_compile_as_one_graph(tmp_path, options):
    """--compile traces the losses whole: after a graph break the rest runs op by op behind guards, slower than not
    compiling at all (a break on a Python object made the compiled main job 23 ms per step, against 13 uncompiled)."""
    trainer = pf.Trainer(_observations(), pf.TrainConfig(**options, **SMALL), tmp_path / "run", "cpu")
    explained = torch._dynamo.explain(trainer.problem.losses)(trainer.problem.sample(trainer.generator))
    assert explained.graph_break_count == 0, explained.break_reasons


def test_a_failing_compiler_falls_back_to_the_uncompiled_run(tmp_path, monkeypatch):
    def broken(function, **options):
        def fails(*args):
            raise RuntimeError("no C++ compiler found")
        return fails

    plain = _trained(tmp_path, "plain")
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(pf.PinnfastWarning, match="torch.compile failed .*no C\\+\\+ compiler.*training uncompiled"):
        fallback = _trained(tmp_path, "fallback", compile=True)
    for p, q in zip(plain.params, fallback.params):
        assert torch.equal(p, q)
    assert not fallback.config.compile  # the run says what it did


def test_compile_is_for_the_torch_backend(tmp_path):
    """--backend auto with --compile is torch, even on a GPU; --backend triton with it is one clear error."""
    assert pf.trainer.resolve_backend(pf.TrainConfig(compile=True), torch.device("cuda")) == "torch"
    with pytest.raises(pf.PinnfastError, match="--compile with --backend torch"):
        pf.trainer.resolve_backend(pf.TrainConfig(compile=True, backend="triton"), torch.device("cuda"))


def test_auto_compiles_long_burgers_runs_on_the_cpu_only(monkeypatch):
    """compile="auto" (the command line's default) is True only where compiling is expected to pay; True and False
    stand as given; anything else is one clear error."""
    monkeypatch.setattr(pf.config, "cpp_compiler_found", lambda: True)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    long_run = dict(compile="auto", steps=pf.trainer.COMPILE_MIN_STEPS)
    assert pf.trainer.resolve_compile(pf.TrainConfig(**long_run), cpu) is True
    for config, device, world in [
        (pf.TrainConfig(**dict(long_run, steps=pf.trainer.COMPILE_MIN_STEPS - 1)), cpu, 1),  # too short to pay
        (pf.TrainConfig(**long_run), cuda, 1),  # the fused kernels run on a GPU
        (pf.TrainConfig(**long_run), cpu, 2),  # each process would compile on the same cores
        (pf.TrainConfig(**long_run, dtype="float64"), cpu, 1),
        (pf.TrainConfig(**long_run, ensemble=3), cpu, 1),
        (pf.TrainConfig(**long_run, problem="helmholtz"), cpu, 1),
        (pf.TrainConfig(**long_run, backend="triton"), cpu, 1),
    ]:
        assert pf.trainer.resolve_compile(config, device, world) is False, (config, device, world)
    for given in (True, False):
        assert pf.trainer.resolve_compile(pf.TrainConfig(compile=given, steps=5), cuda, 2) is given
    monkeypatch.setattr(pf.config, "cpp_compiler_found", lambda: False)  # no C++ compiler: uncompiled, no warning
    assert pf.trainer.resolve_compile(pf.TrainConfig(**long_run), cpu) is False
    with pytest.raises(pf.PinnfastError, match="compile must be True, False or 'auto', got 'yes'"):
        pf.TrainConfig(compile="yes").validate()


def test_the_command_line_compiles_by_default_where_it_pays(tmp_path, capsys, monkeypatch):
    """`infer` passes compile="auto": a long CPU run is compiled, a short one is not, and --no-compile / --compile
    decide; the checkpoint records what ran, so that a resume keeps it and refuses the other setting."""
    monkeypatch.setattr(pf.config, "cpp_compiler_found", lambda: True)
    parser = pf.cli._parser()
    data = ["--data", str(tmp_path / "obs.npz")]
    pf.save_observations(data[1], _observations())

    def resolved(*options):
        config = pf.commands.new_config(parser.parse_args(["infer", "--out", str(tmp_path / "run"), *data, *options]))
        return pf.Trainer(_observations(), config, tmp_path / "run", "cpu").config.compile

    assert resolved() is True and resolved("--no-compile") is False
    assert resolved("--steps", "20") is False and resolved("--steps", "20", "--compile") is True
    code, out, err = run_cli(["infer", "--out", str(tmp_path / "short"), *data, "--steps", "3", "--device", "cpu"],
                             capsys)
    assert code == 0 and "compiling" not in err + out
    assert torch.load(tmp_path / "short" / CHECKPOINT, weights_only=False)["config"]["compile"] is False
    assert json.loads((tmp_path / "short" / "result.json").read_text())["compile_seconds"] == 0
    monkeypatch.setattr(pf.step, "COMPILER", "aot_eager")  # inductor's C++ compile takes half a minute
    compiled = ["infer", "--out", str(tmp_path / "compiled"), "--device", "cpu"]
    code, out, err = run_cli([*compiled, *data, "--steps", "3", "--compile"], capsys)
    assert code == 0 and "pinnfast: compiling the losses with torch.compile first" in err
    assert "s of it compiling); results in" in out
    assert torch.load(tmp_path / "compiled" / CHECKPOINT, weights_only=False)["config"]["compile"] is True
    assert json.loads((tmp_path / "compiled" / "result.json").read_text())["compile_seconds"] > 0
    code, _, err = run_cli([*compiled, "--steps", "5", "--resume", "--no-compile", "--quiet"], capsys)
    assert code == 2 and "--no-compile does not match the run in" in err
    code, _, _ = run_cli([*compiled, "--steps", "5", "--resume", "--quiet"], capsys)
    assert code == 0 and torch.load(tmp_path / "compiled" / CHECKPOINT, weights_only=False)["config"]["compile"]


def test_cuda_graphs_need_a_cuda_gpu_one_process_and_no_compile(tmp_path, capsys):
    """Graph mode's refusals, each one line; that graphed steps equal eager ones is checked where CUDA is
    (tests/test_gpu_report.py, and the GPU report)."""
    with pytest.raises(pf.PinnfastError, match="--cuda-graphs needs a CUDA GPU; this run is on cpu"):
        pf.Trainer(_observations(), pf.TrainConfig(steps=5, cuda_graphs=True, **SMALL), tmp_path / "a", "cpu")
    with pytest.raises(pf.PinnfastError, match="--cuda-graphs and --compile exclude each other"):
        pf.Trainer(_observations(), pf.TrainConfig(steps=5, cuda_graphs=True, compile=True, **SMALL), tmp_path / "b",
                   "cpu")
    code, out, err = run_cli(["infer", "--out", str(tmp_path / "c"), "--steps", "5", "--device", "cpu",
                              "--cuda-graphs"], capsys)
    assert code == 2 and err.strip().splitlines() == ["pinnfast: error: --cuda-graphs needs a CUDA GPU; this run is "
                                                      "on cpu"]
    assert not (tmp_path / "c").exists()


def test_the_graphs_warm_up_leaves_the_run_where_it_was(tmp_path):
    """Before a capture the step runs eagerly and everything it changed is put back: the run goes on as if nothing
    had happened, also right after ν's hold, where the warm-up creates ν's Adam state. On the CPU, with graph mode's
    arithmetic (device learning rates; single-tensor Adam, which takes them without ``capturable``)."""
    def trainer(name):
        run = pf.Trainer(_observations(), pf.TrainConfig(model="m4", steps=20, anneal_period=3, **SMALL),
                         tmp_path / name, "cpu")
        run.config.cuda_graphs = True  # the graphs themselves need CUDA: here they are never captured
        run.stepper._device_learning_rates()
        for group in run.optimizer.param_groups:
            group["foreach"] = group["fused"] = False
        return run

    warmed, plain = trainer("warmed"), trainer("plain")
    dropped = []
    step = warmed.stepper
    graphs = StepGraphs(step._step, step._mutable_tensors, warmed.generator, lambda: dropped.append(True))
    for k in range(10):
        if k in (SMALL["nu_warmup"], SMALL["nu_warmup"] + 1):  # plain, ν without Adam state; then annealing
            graphs.warm_up(warmed.weights.due(k))
        (metrics, lr), (expected, expected_lr) = warmed.train_step(), plain.train_step()
        torch.testing.assert_close(metrics, expected, rtol=0, atol=0, equal_nan=True)  # bit for bit
        assert torch.equal(lr, expected_lr) and lr.item() == pytest.approx(step.scheduler.base_lrs[0] *
                                                                           step.gamma ** k, rel=1e-12), k
    assert all(torch.equal(p, q) for p, q in zip(warmed.params, plain.params)) and dropped == [True, True]


def test_cli_resume(tmp_path, capsys):
    data = tmp_path / "obs.npz"
    pf.save_observations(data, _observations())
    common = ["infer", "--data", str(data), "--quiet", "--model", "m3"]
    assert main(common + ["--out", str(tmp_path / "a"), "--steps", "20"]) == 0
    assert main(common + ["--out", str(tmp_path / "b"), "--steps", "10"]) == 0
    assert main(common + ["--out", str(tmp_path / "b"), "--steps", "20", "--resume"]) == 0
    a, b = (json.loads((tmp_path / d / "result.json").read_text()) for d in "ab")
    assert a["nu"] == b["nu"] and a["steps"] == b["steps"] == 20


def test_resume_without_checkpoint_is_an_error(tmp_path, capsys):
    data = tmp_path / "obs.npz"
    pf.save_observations(data, _observations())
    assert main(["infer", "--data", str(data), "--out", str(tmp_path / "none"), "--resume", "--quiet"]) == 2
    assert "checkpoint.pt: no checkpoint; train with `pinnfast infer" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    """A NaN appears at step 25: the run stops at the next host check, the step-20 checkpoint stays."""
    data = tmp_path / "obs.npz"
    pf.save_observations(data, _observations())
    original, calls = pf.BurgersInverse.losses, []

    def poisoned(self, *args, **kwargs):
        calls.append(1)
        loss_r, loss_d = original(self, *args, **kwargs)
        return (loss_r * np.nan, loss_d) if len(calls) >= 25 else (loss_r, loss_d)

    monkeypatch.setattr(pf.BurgersInverse, "losses", poisoned)
    out = tmp_path / "run"
    code = main(["infer", "--data", str(data), "--out", str(out), "--steps", "50", "--quiet",
                 "--checkpoint-every", "10"])
    err = capsys.readouterr().err
    assert code == 3
    assert "non-finite loss at step 25" in err and "last good checkpoint (step 20) is kept" in err
    assert "Traceback" not in err
    state = torch.load(out / CHECKPOINT, weights_only=False)
    assert state["step"] == 20 and torch.isfinite(state["problem"]["log_nu"])
    rows = (out / METRICS_CSV).read_text().splitlines()
    assert rows[-1].startswith("25,nan")
    assert not (out / "result.json").exists()
    assert (out / "training.png").exists()


def test_short_run_moves_nu_towards_the_truth(tmp_path):
    """The shipped example (ν = 0.02): from ν_init = 0.05 (150 % off), 600 default M4 steps get within 15 %
    (ν averaged over the last 50 steps; measured: 5 %), with ν still moving (−1 % over that window)."""
    observations = pf.load_observations(pf.data.default_data_path())
    config = pf.TrainConfig(steps=600, nu_init=0.05, average_last=50, max_steps=600)
    with pytest.warns(pf.PinnfastWarning, match="ν is not identified well by these data: .*ν was still moving"):
        result = pf.Trainer(observations, config, tmp_path, "cpu").run(progress=False)  # and it says so
    assert abs(result["nu"] - SHIPPED_NU) / SHIPPED_NU < 0.15, result["nu"]


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    data = tmp_path / "obs.npz"
    pf.save_observations(data, _observations())
    out = tmp_path / "run"
    common = ["infer", "--data", str(data), "--out", str(out), "--quiet", "--steps", "3"]
    assert main(common) == 0
    before = (out / METRICS_CSV).read_text(), (out / CHECKPOINT).read_bytes()
    assert main(common) == 2
    assert "already holds a run (checkpoint.pt); continue it with --resume or start again with --overwrite" in \
        capsys.readouterr().err
    assert ((out / METRICS_CSV).read_text(), (out / CHECKPOINT).read_bytes()) == before


def test_reported_nu_is_the_mean_over_the_last_steps(tmp_path):
    config = pf.TrainConfig(steps=25, **SMALL)
    trainer = pf.Trainer(_observations(), config, tmp_path, "cpu")
    result = trainer.run(progress=False)
    table = np.genfromtxt(tmp_path / METRICS_CSV, delimiter=",", names=True)
    assert result["nu"] == pytest.approx(table["nu"][-10:].mean(), rel=1e-12)
    assert result["nu_last"] == pytest.approx(trainer.problem.nu.item(), rel=1e-6) == table["nu"][-1]
    assert result["nu"] != result["nu_last"]


def test_run_goes_on_while_nu_moves_up_to_max_steps(tmp_path):
    """ν of a 30-step run still moves (by percents): the target grows by half the steps at a time, is saved with
    the checkpoint, and stops at max_steps; with max_steps = steps, or a loose tol, the run ends at its steps."""
    config = dict(SMALL, model="m3", steps=30, tol=0.001)
    with pytest.warns(pf.PinnfastWarning, match="ν is still moving at step 30 .* training on to step 45"):
        extended = pf.Trainer(_observations(), pf.TrainConfig(max_steps=50, **config), tmp_path / "a", "cpu")
        result = extended.run(progress=False)
    assert result["steps"] == 50 == extended.config.steps
    assert torch.load(tmp_path / "a" / CHECKPOINT, weights_only=False)["config"]["steps"] == 50
    assert len(np.loadtxt(tmp_path / "a" / METRICS_CSV, delimiter=",", skiprows=1)) == 50
    assert pf.Trainer(_observations(), pf.TrainConfig(max_steps=30, **config), tmp_path / "b",
                      "cpu").run(progress=False)["steps"] == 30
    assert pf.Trainer(_observations(), pf.TrainConfig(**dict(config, tol=0.5)), tmp_path / "c",
                      "cpu").run(progress=False)["steps"] == 30
    with pytest.raises(pf.PinnfastError, match=r"max_steps \(20\) must be at least steps \(30\)"):
        pf.TrainConfig(max_steps=20, **config).validate()


def test_float64_trains_the_same_run_in_double_precision(tmp_path, capsys):
    """dtype=float64 (--float64): every parameter in float64, the same initial network and batches, so a few steps
    follow the float32 run closely; resumed in float64; the triton backend refuses it in one line."""
    runs = {}
    for dtype in ("float32", "float64"):
        trainer = pf.Trainer(_observations(), pf.TrainConfig(**dict(SMALL, steps=8, nu_warmup=0, dtype=dtype)),
                             tmp_path / dtype, "cpu")
        trainer.run(progress=False)
        runs[dtype] = trainer
    assert all(p.dtype == torch.float64 for p in runs["float64"].problem.parameters())
    for p, q in zip(runs["float32"].problem.parameters(), runs["float64"].problem.parameters()):
        assert torch.allclose(p.double(), q, rtol=1e-3, atol=1e-5)
    resumed = pf.Trainer.resume(_observations(), tmp_path / "float64", "cpu", steps=10)
    resumed.run(progress=False)
    assert resumed.config.dtype == "float64" and all(p.dtype == torch.float64 for p in resumed.problem.parameters())
    code = main(["infer", "--out", str(tmp_path / "t"), "--steps", "2", "--float64", "--backend", "triton"])
    err = capsys.readouterr().err
    assert code == 2 and "triton computes in float32" in err and "Traceback" not in err


def test_a_run_that_the_cap_ends_while_nu_moves_says_so(tmp_path):
    """When max_steps ends a run whose ν still moves by the settle check's measure (the quarters of its second half),
    the warning says that the cap, not ν, ended it (``nu_warning``, which result.json keeps); a fixed-length run of
    the same steps, or a tol that this drift meets, does not say so."""
    config = dict(SMALL, model="m3", steps=30, max_steps=30, tol=0.001)
    note = r"--max-steps \(30\) ended the run while ν still moved \([+-][0-9.e+-]+ % between the last two quarters"
    with pytest.warns(pf.PinnfastWarning, match=note):
        capped = pf.Trainer(_observations(), pf.TrainConfig(**config), tmp_path / "capped", "cpu").run(progress=False)
    assert "--max-steps (30) ended the run" in capped["nu_warning"]
    for name, change in (("fixed", dict(stop_when_settled=False)), ("loose", dict(tol=0.9))):
        result = pf.Trainer(_observations(), pf.TrainConfig(**dict(config, **change)), tmp_path / name,
                            "cpu").run(progress=False)
        assert "--max-steps" not in (result["nu_warning"] or ""), name
        assert result["steps"] == 30 and result["nu"] == capped["nu"], name  # the same run, only the note differs


def test_a_settled_run_is_not_extended(tmp_path, monkeypatch):
    """Once the settle check has ended a run, the shorter view of the averaging window's halves does not extend it
    (at a tiny tol any drift there would): it only speaks in the warning."""
    monkeypatch.setattr(pf.trainer, "settled", lambda *args: True)
    monkeypatch.setattr(pf.stopping, "SETTLE_EVERY", 50)
    config = pf.TrainConfig(**dict(SMALL, steps=3000, min_steps=50, tol=1e-6))
    with pytest.warns(pf.PinnfastWarning, match="moving"):
        result = pf.Trainer(_observations(), config, tmp_path / "run", "cpu").run(progress=False)
    assert result["steps"] == result["target_steps"] == 50 and abs(result["nu_drift"]) > 1e-6 / 4


def test_lbfgs_finish_lowers_the_loss_and_resumes_exactly(tmp_path, monkeypatch):
    """lbfgs_steps: L-BFGS after the Adam steps on a fixed batch; the loss falls, ν is reported beside the Adam
    window's, lbfgs.csv traces it; a run cut before the finish redoes it on resume, bit for bit."""
    config = pf.TrainConfig(**dict(SMALL, steps=30, lbfgs_steps=8))
    straight = pf.Trainer(_observations(), config, tmp_path / "a", "cpu")
    result = straight.run(progress=False)
    trace = np.genfromtxt(tmp_path / "a" / "lbfgs.csv", delimiter=",", names=True)
    assert trace["loss"][-1] < trace["loss"][0] and result["lbfgs_steps"] == 8
    assert result["nu_lbfgs"] == pytest.approx(float(trace["nu"][-1]), rel=1e-6) and "nu" in result

    def cut(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(pf.Trainer, "_lbfgs_finish", cut)
    with pytest.raises(KeyboardInterrupt):
        pf.Trainer(_observations(), config, tmp_path / "b", "cpu").run(progress=False)
    monkeypatch.undo()
    resumed = pf.Trainer.resume(_observations(), tmp_path / "b", "cpu")
    assert resumed.step == 30 and not resumed.finished
    resumed.run(progress=False)
    for p, q in zip(straight.problem.parameters(), resumed.problem.parameters()):
        assert torch.equal(p, q)
    assert pf.Trainer.resume(_observations(), tmp_path / "b", "cpu").finished


def test_the_error_bar_averages_the_jackknife_over_its_window_and_resumes(tmp_path, monkeypatch):
    """ν's error bar: the root mean square of the sub-box jackknife sampled every ERROR_EVERY steps inside the
    averaging window (checked against the kept checkpoints at those steps); a run
    resumed from a checkpoint before the window reports the same bar, bit for bit."""
    from pinnfast.runfolder import load_checkpoint
    from pinnfast.uncertainty import subdomain_jackknife

    monkeypatch.setattr(pf.stopping, "ERROR_EVERY", 20)
    observations = pf.make_observations(0.03, 80, seed=3)
    config = dict(SMALL, steps=60, average_last=30, keep_checkpoints=(20, 40, 60), stop_when_settled=False)
    result = pf.Trainer(observations, pf.TrainConfig(**config), tmp_path / "a", "cpu").run(progress=False)
    assert result["nu_window"] == [31, 60]
    squares = []
    for step in (40, 60):  # the samples inside the window; the one at step 20 is not
        state = load_checkpoint(tmp_path / "a", step)
        problem = pf.config.build_problem(pf.TrainConfig(**state["config"]), observations)
        problem.load_state_dict(state["problem"])
        squares.append(subdomain_jackknife(problem, {"nu": problem.nu.detach()})["nu"].item() ** 2)
    assert result["nu_sigma"] == pytest.approx(np.sqrt(np.mean(squares)), rel=1e-9)
    first = pf.Trainer(observations, pf.TrainConfig(**dict(config, steps=20)), tmp_path / "b", "cpu")
    first.run(progress=False)
    resumed = pf.Trainer.resume(observations, tmp_path / "b", "cpu", steps=60).run(progress=False)
    assert resumed["nu_sigma"] == result["nu_sigma"]
    finished = pf.Trainer.resume(observations, tmp_path / "a", "cpu").run(progress=False)  # read back: the same
    assert finished["nu_sigma"] == result["nu_sigma"]
