"""Runs users can trust: resume keeps its run and data, a run folder is one run or empty, the reported ν says over
which steps it was averaged, Ctrl-C says how to continue, and a trained run can be loaded and used."""
import json

import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast.cli import INTERRUPTED, main
from pinnfast.runfolder import CHECKPOINT, METRICS_CSV, PLOT, RESULT
from pinnfast.trainer import Trainer
from helpers import SMALL, run_cli as _run

TINY = ["--width", "8", "--depth", "1", "--collocation", "32", "--batch-size", "16", "--checkpoint-every", "10",
        "--quiet", "--tol", "0.5"]  # tol: as helpers.SMALL


def _data(tmp_path, name="obs.npz", nu=0.03, seed=2):
    path = tmp_path / name
    pf.save_observations(path, pf.make_observations(nu, 60, seed=seed))
    return str(path)


def _train(capsys, out, steps, data=None):
    """A tiny run of ``steps`` steps in ``out``, on ``data`` (default: a fresh file beside ``out``)."""
    code, _, err = _run(["infer", "--data", data or _data(out.parent), "--out", str(out), "--steps", str(steps),
                         *TINY], capsys)
    assert code == 0, err


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _interrupt_at(monkeypatch, step):
    """Ctrl-C arrives when the trainer is about to take step ``step + 1``."""
    original = Trainer.train_step

    def train_step(self):
        if self.step == step:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)


def _interrupted_run(tmp_path, monkeypatch, capsys, data, steps=30, at=15):
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, at)
    code, _, err = _run(["infer", "--data", data, "--out", str(out), "--steps", str(steps), *TINY], capsys)
    monkeypatch.undo()
    assert code == INTERRUPTED
    return out, err


# ----------------------------------------------------------------- 1. resume keeps the run it resumes
def test_ctrl_c_says_where_the_checkpoint_is(tmp_path, monkeypatch, capsys):
    out, err = _interrupted_run(tmp_path, monkeypatch, capsys, _data(tmp_path))
    assert err.strip().splitlines()[-1] == (f"pinnfast: interrupted at step 15; the last checkpoint (step 10) is in {out / CHECKPOINT}; "
                           f"continue with `pinnfast infer --out {out} --resume`")
    assert (out / PLOT).exists() and not (out / RESULT).exists()


def test_resume_without_steps_or_data_finishes_the_run_on_its_own_data(tmp_path, monkeypatch, capsys):
    """An interrupted run on a user's file, resumed with only --out and --resume, equals the uninterrupted run —
    not a run that switched to the shipped example."""
    data = _data(tmp_path)
    straight = tmp_path / "straight"
    assert _run(["infer", "--data", data, "--out", str(straight), "--steps", "30", *TINY], capsys)[0] == 0
    out, _ = _interrupted_run(tmp_path, monkeypatch, capsys, data)
    code, stdout, _ = _run(["infer", "--out", str(out), "--resume", "--quiet"], capsys)
    assert code == 0 and "after 30 steps" in stdout
    a, b = (json.loads((folder / RESULT).read_text()) for folder in (straight, out))
    assert a["nu"] == b["nu"] and a["steps"] == b["steps"] == 30 and a["data_sha256"] == b["data_sha256"]
    assert (straight / METRICS_CSV).read_text() == (out / METRICS_CSV).read_text()


def test_resuming_a_finished_run_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 12)
    before = _snapshot(out)
    code, stdout, _ = _run(["infer", "--out", str(out), "--resume", "--quiet"], capsys)
    assert code == 0 and "the run is complete (12 of 12 steps); nothing changed" in stdout
    assert _snapshot(out) == before


def test_resume_refuses_other_data_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 10)
    before = _snapshot(out)
    other = _data(tmp_path, "other.npz", nu=0.07, seed=3)
    code, _, err = _run(["infer", "--data", other, "--out", str(out), "--steps", "20", "--resume", "--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{other} is not the data the run in {out} was trained on" in err
    assert _snapshot(out) == before
    # the shipped example is other data too: leaving --data out must not fall back to it
    code, _, err = _run(["infer", "--data", str(pf.data.default_data_path()), "--out", str(out), "--steps", "20",
                         "--resume"], capsys)
    assert code == 2 and "is not the data the run" in err


def test_resume_accepts_the_same_data_in_another_format(tmp_path, capsys):
    data = _data(tmp_path)
    out = tmp_path / "run"
    _train(capsys, out, 10, data)
    as_csv = tmp_path / "same.csv"
    pf.save_observations(as_csv, pf.load_observations(data))
    assert _run(["infer", "--data", str(as_csv), "--out", str(out), "--steps", "20", "--resume", "--quiet"],
                capsys)[0] == 0


def test_resume_when_the_data_file_is_gone(tmp_path, capsys):
    data = _data(tmp_path)
    out = tmp_path / "run"
    _train(capsys, out, 10, data)
    (tmp_path / "obs.npz").unlink()
    code, _, err = _run(["infer", "--out", str(out), "--steps", "20", "--resume"], capsys)
    assert code == 2 and "obs.npz: no such file" in err


@pytest.mark.parametrize("flag,value,stored", [("--model", "m3", "m4"), ("--seed", "5", "0"),
                                               ("--nu-init", "0.07", "0.05"), ("--width", "16", "8"),
                                               ("--collocation", "64", "32"), ("--lr", "0.002", "0.003"),
                                               ("--anneal-mean", "per-layer", "global")])
def test_resume_refuses_options_that_change_the_run(flag, value, stored, tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 10)
    before = _snapshot(out)
    code, _, err = _run(["infer", "--out", str(out), "--steps", "20", "--resume", flag, value], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    shown = float(value) if flag in ("--nu-init", "--lr") else value
    assert f"{flag} {shown} does not match the run in {out} (" in err
    assert stored in err
    assert _snapshot(out) == before


def test_resume_accepts_options_that_match(tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 10)
    assert _run(["infer", "--out", str(out), "--steps", "20", "--resume", "--model", "m4", "--width", "8",
                 "--quiet"], capsys)[0] == 0


def test_resume_refuses_fewer_steps_than_done(tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 20)
    code, _, err = _run(["infer", "--out", str(out), "--steps", "10", "--resume"], capsys)
    assert code == 2 and "--steps 10 is below the step the run in" in err and "(20)" in err


def test_python_resume_reads_the_runs_own_data_and_refuses_other(tmp_path):
    data = _data(tmp_path)
    config = pf.TrainConfig(steps=20, **SMALL)
    pf.Trainer(pf.load_observations(data), config, tmp_path / "a", "cpu", data_path=data).run(progress=False)
    resumed = pf.Trainer.resume(None, tmp_path / "a", "cpu", steps=30)
    assert resumed.step == 20 and resumed.data["path"] == str((tmp_path / "obs.npz").resolve())
    with pytest.raises(pf.PinnfastError, match="is not the data the run"):
        pf.Trainer.resume(pf.make_observations(0.07, 60, seed=9), tmp_path / "a", "cpu")


# ----------------------------------------------------------------- 2. a run folder is a run or empty
def test_a_diverged_runs_rows_never_reach_the_next_run(tmp_path, monkeypatch, capsys):
    """The reported bug: a run that diverged before its first checkpoint left metrics.csv, and the next run in the
    same folder appended to it and reported ν = 3.3e+27. Such remains (no checkpoint, no result: nothing to resume)
    neither block the folder nor reach the next run, which replaces them."""
    data = _data(tmp_path)
    out = tmp_path / "run"
    original, calls = pf.BurgersInverse.losses, []

    def exploding(self, *args, **kwargs):
        calls.append(1)
        loss_r, terms = original(self, *args, **kwargs)
        return (loss_r * np.inf if len(calls) >= 4 else loss_r), terms

    monkeypatch.setattr(pf.BurgersInverse, "losses", exploding)
    assert _run(["infer", "--data", data, "--out", str(out), "--steps", "20", *TINY], capsys)[0] == 3
    monkeypatch.undo()
    assert (out / METRICS_CSV).exists() and not (out / CHECKPOINT).exists()
    assert _run(["infer", "--data", data, "--out", str(out), "--steps", "12", *TINY], capsys)[0] == 0
    table = np.genfromtxt(out / METRICS_CSV, delimiter=",", names=True)
    assert table["step"].tolist() == list(range(1, 13)) and np.isfinite(table["loss"]).all()
    assert 0.01 < json.loads((out / RESULT).read_text())["nu"] < 0.1


def test_overwrite_never_deletes_a_users_files(tmp_path, capsys):
    """A run folder that also holds someone's file: --overwrite refuses and deletes nothing, run included."""
    out = tmp_path / "run"
    _train(capsys, out, 3)
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    code, _, err = _run(["infer", "--data", _data(tmp_path), "--out", str(out), "--steps", "3", "--overwrite",
                         *TINY], capsys)
    assert code == 2 and "holds files that are not a pinnfast run's (notes.txt); nothing was deleted" in err
    assert _snapshot(out) == before


def test_overwrite_replaces_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 3)
    assert _run(["infer", "--data", _data(tmp_path), "--out", str(out), "--steps", "5", "--overwrite", *TINY],
                capsys)[0] == 0
    assert json.loads((out / RESULT).read_text())["steps"] == 5
    assert len((out / METRICS_CSV).read_text().splitlines()) == 6


def test_resume_refuses_a_metrics_file_of_another_run(tmp_path, capsys):
    data = _data(tmp_path)
    for name in ("a", "b"):
        assert _run(["infer", "--data", data, "--out", str(tmp_path / name), "--steps", "10", *TINY], capsys)[0] == 0
    rows = (tmp_path / "b" / METRICS_CSV).read_text().splitlines()
    (tmp_path / "a" / METRICS_CSV).write_text("\n".join(rows[:1] + rows[3:]) + "\n")  # steps 1-2 missing
    code, _, err = _run(["infer", "--out", str(tmp_path / "a"), "--steps", "20", "--resume"], capsys)
    assert code == 2 and "metrics.csv does not match checkpoint.pt (at step 10)" in err


@pytest.mark.parametrize("command", ["infer", "residual-field"])
def test_out_that_is_a_file(command, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    extra = ["--run", str(tmp_path)] if command == "residual-field" else ["--steps", "2"]
    code, _, err = _run([command, "--out", str(target), *extra], capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"{target} is a file" in err


# ----------------------------------------------------------------- 4. warm-up and average, visible and honest
def test_reported_nu_averages_only_steps_after_the_warm_up(tmp_path):
    config = pf.TrainConfig(steps=30, **dict(SMALL, average_last=50))  # warm-up 5, so the window is steps 6–30
    with pytest.warns(pf.PinnfastWarning, match=r"30 steps are fewer than the ν warm-up \(5\) plus the averaging "
                                                r"window \(50\): ν is averaged over 25 steps only"):
        result = pf.Trainer(pf.make_observations(0.03, 60, seed=2), config, tmp_path, "cpu").run(progress=False)
    table = np.genfromtxt(tmp_path / METRICS_CSV, delimiter=",", names=True)
    assert (table["nu"][:5] == table["nu"][0]).all()  # frozen
    assert result["nu_window"] == [6, 30] and result["nu_warmup"] == 5
    assert result["nu"] == pytest.approx(table["nu"][5:].mean(), rel=1e-12)
    assert result["nu_std"] == pytest.approx(table["nu"][5:].std(), rel=1e-9) and result["nu_std"] > 0
    assert result["loss_d"] == table["loss_d"][-1] and result["loss"] == table["loss"][-1]


def test_result_reports_the_data_fit(tmp_path):
    observations = pf.make_observations(0.03, 60, seed=2)
    trainer = pf.Trainer(observations, pf.TrainConfig(steps=15, **SMALL), tmp_path, "cpu")
    result = trainer.run(progress=False)
    x = torch.tensor(np.column_stack([observations[c] for c in "xyt"]), dtype=torch.float32)
    with torch.no_grad():
        uv = trainer.problem.network(x).double().numpy()
    assert result["rmse_u"] == pytest.approx(np.sqrt(np.mean((uv[:, 0] - observations["u"]) ** 2)), rel=1e-5)
    assert result["rmse_v"] == pytest.approx(np.sqrt(np.mean((uv[:, 1] - observations["v"]) ** 2)), rel=1e-5)


def test_a_run_inside_the_warm_up_says_nu_never_moved(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _run(["infer", "--data", _data(tmp_path), "--out", str(out), "--steps", "12",
                              "--nu-init", "0.07", *TINY], capsys)
    assert code == 0
    assert "pinnfast: note: 12 steps end inside the ν warm-up (200 steps): ν stays at its initial value" in err
    assert "nu = 0.07: ν was held at its initial value for the whole run (warm-up of 200 steps)" in stdout
    result = json.loads((out / RESULT).read_text())
    assert result["nu_window"] is None and result["nu"] == pytest.approx(0.07, rel=1e-6)


def test_cli_message_states_the_window_and_the_truth(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _run(["infer", "--data", _data(tmp_path), "--out", str(out), "--steps", "210",
                              "--checkpoint-every", "70", "--nu-true", "0.03", *TINY], capsys)
    assert code == 0
    assert "pinnfast: note: 210 steps are fewer than the ν warm-up (200) plus the averaging window (1000): ν is " \
           "averaged over 10 steps only" in err
    result = json.loads((out / RESULT).read_text())
    assert (f"nu = {result['nu']:.6g} ± {result['nu_sigma']:.2g} (error bar from the sub-boxes of the domain; "
            f"mean over steps 201–210 after a 200-step warm-up, jitter ± {result['nu_std']:.2g}; last iterate"
            in stdout)
    assert f"true 0.03: error {100 * (result['nu'] - 0.03) / 0.03:+.2f} %" in stdout
    assert result["nu_true"] == 0.03 and result["nu_window"] == [201, 210]
    assert result["nu_error"] == pytest.approx((result["nu"] - 0.03) / 0.03)


def test_help_documents_the_warm_up_and_the_window(capsys):
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "held at --nu-init for the first 200 steps (warm-up" in text
    assert "mean ± standard deviation over the last 1000 steps after the warm-up" in text


# ----------------------------------------------------------------- 7. one-line errors and small comforts
def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"pinnfast {pf.__version__}"
    assert pf.__version__.count(".") == 2


@pytest.mark.parametrize("argv,message", [
    (["infer", "--out", "r", "--steps", "0"], "argument --steps: must be an integer >= 1, got '0'"),
    (["infer", "--out", "r", "--checkpoint-every", "-3"], "argument --checkpoint-every: must be an integer >= 1"),
    (["infer", "--out", "r", "--nu-init", "nan"], "argument --nu-init: must be a positive number, got 'nan'"),
    (["make-data", "--nu", "0", "--out", "o.npz"], "argument --nu: must be a positive number, got '0'"),
])
def test_messages_name_the_flag(argv, message, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_make_data_into_a_missing_folder(tmp_path, capsys):
    target = tmp_path / "nope" / "obs.npz"
    code, _, err = _run(["make-data", "--nu", "0.02", "--out", str(target)], capsys)
    assert code == 2 and err.strip() == f"pinnfast: error: --out {target}: folder {target.parent} does not exist"


def test_residual_field_writes_into_its_folder(tmp_path, capsys):
    run = tmp_path / "run"
    _train(capsys, run, 4)
    out = tmp_path / "field"
    assert _run(["residual-field", "--run", str(run), "--out", str(out), "--grid", "8", "--device", "cpu"],
                capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["field.npz", "field.png"]


# ----------------------------------------------------------------- 9. using a trained run
def test_load_run_and_predict(tmp_path, capsys):
    run = tmp_path / "run"
    _train(capsys, run, 12)
    loaded = pf.load_run(run)
    assert loaded.nu == json.loads((run / RESULT).read_text())["nu"] and loaded.config.width == 8
    points = {"x": np.array([0.1, -0.5, 0.3]), "y": np.array([0.2, 0.0, -0.9]), "t": np.array([0.5, 0.1, 0.9])}
    with torch.no_grad():
        expected = loaded.network(torch.tensor(np.column_stack(list(points.values())), dtype=torch.float32))
    for suffix in (".csv", ".npz"):
        source = tmp_path / f"points{suffix}"
        if suffix == ".csv":
            source.write_text("# my points\nT,x,y\n" + "".join(f"{t},{x},{y}\n" for x, y, t in
                                                              zip(points["x"], points["y"], points["t"])))
        else:
            np.savez(source, **points)
        out = tmp_path / f"pred{suffix}"
        argv = ["predict", "--run", str(run), "--points", str(source), "--out", str(out), "--device", "cpu"]
        assert _run(argv + (["--columns", "t=T"] if suffix == ".csv" else []), capsys)[0] == 0
        written = pf.data.load_table(out, pf.data.COLUMNS, min_points=1)
        np.testing.assert_allclose(written["x"], points["x"])
        np.testing.assert_allclose(np.column_stack([written["u"], written["v"]]), expected.double().numpy(),
                                   rtol=1e-6)


def test_predict_notes_points_outside_the_box(tmp_path, capsys):
    run = tmp_path / "run"
    _train(capsys, run, 2)
    source = tmp_path / "points.npz"
    np.savez(source, x=np.array([0.0, 5.0]), y=np.array([0.0, 0.0]), t=np.array([0.5, 0.5]))
    code, _, err = _run(["predict", "--run", str(run), "--points", str(source), "--out", str(tmp_path / "p.npz"),
                         "--device", "cpu"], capsys)
    assert code == 0 and "1 of 2 points lie outside the run's box" in err


def test_predict_from_a_folder_without_a_run(tmp_path, capsys):
    source = tmp_path / "points.npz"
    np.savez(source, x=np.zeros(3), y=np.zeros(3), t=np.zeros(3))
    code, _, err = _run(["predict", "--run", str(tmp_path), "--points", str(source), "--out",
                         str(tmp_path / "p.npz")], capsys)
    assert code == 2 and "checkpoint.pt: no checkpoint" in err


# ----------------------------------------------------------------- 6. the Python API checks data as the CLI does
def test_trainer_validates_observations_like_the_cli(tmp_path):
    observations = pf.make_observations(0.03, 60, seed=2)
    del observations["v"]
    with pytest.raises(pf.PinnfastError, match="^observations: missing column"):
        pf.Trainer(observations, pf.TrainConfig(steps=2, **SMALL), tmp_path / "a", "cpu")
    assert not (tmp_path / "a").exists()


def test_observations_at_one_time_name_the_file_and_the_coordinate(tmp_path, capsys):
    observations = pf.make_observations(0.03, 60, seed=2)
    observations["t"][:] = 0.5
    data = tmp_path / "one_time.csv"
    pf.save_observations(data, observations)
    code, _, err = _run(["infer", "--data", str(data), "--out", str(tmp_path / "run"), *TINY], capsys)
    assert code == 2 and f"{data}: every point has t = 0.5; the observations must span a range in x, y and t" in err


# ----------------------------------------------------------------- what a review found
def test_a_resumed_run_drops_its_old_result_until_it_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 10)
    assert (out / RESULT).exists()
    _interrupt_at(monkeypatch, 15)
    assert _run(["infer", "--out", str(out), "--steps", "20", "--resume", "--quiet"], capsys)[0] == INTERRUPTED
    assert not (out / RESULT).exists()  # it described step 10; the checkpoint and the plot have moved on
    assert pf.load_run(out).result == {}


def test_nu_true_stays_with_the_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    _interrupt_at(monkeypatch, 15)
    assert _run(["infer", "--data", _data(tmp_path), "--out", str(out), "--steps", "20", "--nu-true", "0.03",
                 *TINY], capsys)[0] == INTERRUPTED
    monkeypatch.undo()
    assert _run(["infer", "--out", str(out), "--resume", "--quiet"], capsys)[0] == 0
    result = json.loads((out / RESULT).read_text())
    assert result["nu_true"] == 0.03 and result["nu_error"] == pytest.approx((result["nu"] - 0.03) / 0.03)


def test_resume_on_another_device_type_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 10)
    state = torch.load(out / CHECKPOINT, weights_only=False)
    state["device_type"] = "cuda"  # as if trained on a GPU machine
    torch.save(state, out / CHECKPOINT)
    code, _, err = _run(["infer", "--out", str(out), "--steps", "20", "--resume", "--device", "cpu"], capsys)
    assert code == 2 and "was trained on cuda; resume it there (--device cuda)" in err


def test_checkpoint_without_a_data_record_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    _train(capsys, out, 10)
    state = torch.load(out / CHECKPOINT, weights_only=False)
    for key in ("version", "data", "device_type", "nu_true"):
        del state[key]  # what pinnfast 0.1 wrote
    torch.save(state, out / CHECKPOINT)
    code, _, err = _run(["infer", "--data", _data(tmp_path), "--out", str(out), "--steps", "20", "--resume"], capsys)
    assert code == 2 and "written by pinnfast 0.1, which did not record the run's data" in err


def test_resume_with_the_same_data_at_a_new_path_records_it(tmp_path, capsys):
    data = _data(tmp_path)
    out = tmp_path / "run"
    _train(capsys, out, 10, data)
    moved = tmp_path / "moved.npz"
    (tmp_path / "obs.npz").rename(moved)
    assert _run(["infer", "--data", str(moved), "--out", str(out), "--steps", "20", "--resume", "--quiet"],
                capsys)[0] == 0
    assert _run(["infer", "--out", str(out), "--steps", "30", "--resume", "--quiet"], capsys)[0] == 0


def test_columns_are_remembered_on_resume(tmp_path, capsys):
    observations = pf.make_observations(0.03, 60, seed=2)
    data = tmp_path / "renamed.csv"
    rows = np.column_stack([observations[c] for c in pf.data.COLUMNS])
    data.write_text("X,Y,time,U,V\n" + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows))
    out = tmp_path / "run"
    argv = ["infer", "--data", str(data), "--columns", "x=X,y=Y,t=time,u=U,v=V", "--out", str(out)]
    assert _run(argv + ["--steps", "10", *TINY], capsys)[0] == 0
    assert _run(["infer", "--out", str(out), "--steps", "20", "--resume", "--quiet"], capsys)[0] == 0
    code, _, err = _run(["infer", "--out", str(out), "--columns", "x=X", "--resume"], capsys)
    assert code == 2 and "--columns describes a --data file" in err


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    code, _, err = _run(["infer", "--out", str(tmp_path), "--resume", "--overwrite"], capsys)
    assert code == 2 and "choose one" in err


def test_forward_problem_runs_are_not_resumed_by_infer_nor_predicted(tmp_path, capsys):
    pf.Trainer(None, pf.TrainConfig(problem="helmholtz", steps=2, width=8, depth=1, n_collocation=8),
               tmp_path / "helm", "cpu").run(progress=False)
    code, _, err = _run(["infer", "--out", str(tmp_path / "helm"), "--steps", "5", "--resume"], capsys)
    assert code == 2 and "holds a helmholtz run" in err
    points = tmp_path / "points.npz"
    np.savez(points, x=np.zeros(2), y=np.zeros(2), t=np.zeros(2))
    code, _, err = _run(["predict", "--run", str(tmp_path / "helm"), "--points", str(points), "--out",
                         str(tmp_path / "p.npz"), "--device", "cpu"], capsys)
    assert code == 2 and "predict evaluates Burgers runs" in err


@pytest.mark.parametrize("argv,message", [
    (["make-data", "--nu", "0.02", "--out", "{tmp}"], "is a folder; give a file name ending in .npz or .csv"),
    (["make-data", "--nu", "0.02", "--out", "{tmp}/obs.txt"], "unknown data format '.txt'"),
    (["make-data", "--nu", "0.02", "--seed", "-1", "--out", "{tmp}/o.npz"], "argument --seed: must be an integer"),
    (["predict", "--run", "{tmp}", "--points", "{tmp}/p.npz", "--out", "{tmp}/p.npz"], "is the --points file"),
    (["infer", "--out", "{tmp}/file/run", "--steps", "2", "--width", "4", "--quiet"], "Not a directory"),
])
def test_more_one_line_errors(argv, message, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = _run([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) <= 2 and "Traceback" not in err


def test_ctrl_c_while_loading_is_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pinnfast.commands.load_observations", interrupted)
    code, _, err = _run(["infer", "--out", str(tmp_path / "run")], capsys)
    assert code == INTERRUPTED and err.strip() == "pinnfast: interrupted"


def test_pinnfast_imports_without_plotting_progress_or_triton():
    """The GPU machine may lack matplotlib and tqdm: importing the package (the GPU report does) needs neither."""
    import subprocess
    import sys
    code = ("import sys\nfor m in ('matplotlib', 'tqdm', 'triton'): sys.modules[m] = None\n"
            "import pinnfast, pinnfast.cli, pinnfast.evaluate\nprint('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_shipped_example_reports_its_error(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = _run(["infer", "--out", str(out), "--steps", "3", *TINY], capsys)
    assert code == 0 and json.loads((out / RESULT).read_text())["nu_true"] == pf.data.DEFAULT_DATA_NU


def test_tuning_options_reach_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    given = {"--lr": "0.002", "--nu-lr": "0.02", "--decay-rate": "0.8", "--decay-steps": "50", "--nu-warmup": "3",
             "--average-last": "4", "--anneal-period": "5", "--anneal-alpha": "0.5", "--anneal-grads": "weights",
             "--anneal-mean": "per-layer"}
    code, _, err = _run(["infer", "--data", _data(tmp_path), "--out", str(out), "--steps", "12", *TINY,
                         *[part for pair in given.items() for part in pair], "--anneal-weighted"], capsys)
    assert code == 0, err
    config = torch.load(out / CHECKPOINT, weights_only=False)["config"]
    assert config["anneal_weighted"] is True
    for flag, value in given.items():
        field = flag.lstrip("-").replace("-", "_")
        assert str(config[field]) == value, flag
    assert json.loads((out / RESULT).read_text())["nu_window"] == [9, 12]  # the last 4 of steps 4-12


@pytest.mark.parametrize("argv, message", [(["--decay-rate", "0"], "argument --decay-rate: must be a number in (0, 1]"),
                                           (["--nu-warmup", "-1"], "argument --nu-warmup: must be an integer >= 0"),
                                           (["--anneal-grads", "some"], "argument --anneal-grads: invalid choice")])
def test_tuning_options_are_checked(argv, message, tmp_path, capsys):
    code, _, err = _run(["infer", "--out", str(tmp_path / "run"), *argv], capsys)
    assert code == 2 and message in err and not (tmp_path / "run").exists()
