"""Fault injection: crafted run folders and files, a second writer, planted symlinks, kills after every write and
absurd settings. Each gives one line and exit 2 (or resumes exactly), runs no code from a run folder and leaves
nothing that blocks the next run."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import pinnfast as pf
from pinnfast.runfolder import CHECKPOINT, METRICS_CSV, RESULT, load_checkpoint
from helpers import SMALL, run_cli

ROOT = Path(pf.__file__).resolve().parents[1]
TINY = ["--width", "8", "--depth", "1", "--collocation", "32", "--batch-size", "16", "--checkpoint-every", "10",
        "--nu-warmup", "5", "--average-last", "10", "--tol", "0.5", "--quiet", "--device", "cpu"]


class Payload:
    """Unpickling this runs a shell command that creates ``marker``: what a crafted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny Burgers run and its data file."""
    folder = tmp_path_factory.mktemp("trained")
    data = folder / "obs.npz"
    pf.save_observations(data, pf.make_observations(0.02, 200, seed=3))
    assert run_cli_plain(["infer", "--data", str(data), "--out", str(folder / "run"), "--steps", "30", *TINY]) == 0
    return folder / "run", data


def run_cli_plain(argv):
    from pinnfast.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _copy_run(run, to):
    to.mkdir()
    for path in run.iterdir():
        if path.is_file():
            (to / path.name).write_bytes(path.read_bytes())
    return to


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS="1")


# ----------------------------------------------------------------- no code from a run folder
@pytest.mark.parametrize("command", ["predict", "resume", "diagnose", "residual-field"])
def test_a_pickle_payload_in_a_checkpoint_never_runs(command, trained, tmp_path, capsys):
    run, data = trained
    crafted = _copy_run(run, tmp_path / "crafted")
    marker = tmp_path / "ran"
    state = torch.load(run / CHECKPOINT, weights_only=True)
    state["nu_true"] = Payload(marker)  # hidden inside an otherwise valid run
    torch.save(state, crafted / CHECKPOINT)
    points = tmp_path / "points.npz"
    np.savez(points, x=np.zeros(3), y=np.zeros(3), t=np.full(3, 0.5))
    argv = {"predict": ["predict", "--run", str(crafted), "--points", str(points), "--out", str(tmp_path / "p.npz")],
            "resume": ["infer", "--out", str(crafted), "--resume", "--steps", "40", "--quiet"],
            "diagnose": ["diagnose", "--run", str(crafted), "--max-iter", "2"],
            "residual-field": ["residual-field", "--run", str(crafted), "--out", str(tmp_path / "f"), "--grid", "4"]}
    code, _, err = run_cli(argv[command], capsys)
    assert not marker.exists(), "code from the checkpoint ran"
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a readable pinnfast checkpoint" in err


@pytest.mark.parametrize("state, message", [
    ([1, 2, 3], "holds a list, not a dict"),
    ({"config": {}}, "not a whole pinnfast checkpoint (no step, seconds"),
    ("STEP", "its 'step' is of type str, not int"),
])
def test_a_malformed_checkpoint_is_one_line(state, message, trained, tmp_path, capsys):
    run, _ = trained
    crafted = _copy_run(run, tmp_path / "crafted")
    if state == "STEP":
        state = dict(torch.load(run / CHECKPOINT, weights_only=True), step="10")
    torch.save(state, crafted / CHECKPOINT)
    code, _, err = run_cli(["infer", "--out", str(crafted), "--resume", "--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_metrics_with_cr_line_ends_still_read(trained, tmp_path):
    run, _ = trained
    text = (run / METRICS_CSV).read_text()
    (tmp_path / METRICS_CSV).write_bytes(text.replace("\n", "\r").encode())  # text mode read \r\n as \n
    ours, theirs = pf.runfolder.metrics_table(tmp_path), pf.runfolder.metrics_table(run)
    assert ours.dtype.names == theirs.dtype.names and np.array_equal(ours["loss"], theirs["loss"])


# ----------------------------------------------------------------- one writer per folder
def test_a_second_writer_is_refused_naming_the_holder(trained, tmp_path, capsys):
    run, data = trained
    held = _copy_run(run, tmp_path / "held")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pinnfast.runfolder import locked
        with locked({str(held)!r}):
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {p.name: p.read_bytes() for p in held.iterdir() if p.is_file() and not p.name.startswith(".")}
        for argv in (["infer", "--out", str(held), "--resume", "--steps", "40", *TINY[-3:]],
                     ["infer", "--data", str(data), "--out", str(held), "--overwrite", *TINY],
                     ["diagnose", "--run", str(held), "--max-iter", "2"]):
            code, _, err = run_cli(argv, capsys)
            assert code == 2 and err.strip() == (f"pinnfast: error: {held} is in use by another pinnfast process "
                                                 f"(PID {holder.pid}); wait for it to finish or choose another --out")
        assert {p.name: p.read_bytes() for p in held.iterdir() if p.is_file() and not p.name.startswith(".")} == before
    finally:
        holder.communicate("")
    # the holder is gone, and its lock with it: the folder is free
    assert run_cli(["infer", "--out", str(held), "--resume", "--steps", "40", *TINY[-3:]], capsys)[0] == 0
    assert not any(p.name.startswith(".") for p in held.iterdir())


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, capsys):
    folder = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from pinnfast.runfolder import locked
        with locked({str(folder)!r}):
            os._exit(9)
        """)], env=_env())
    assert killed.returncode == 9 and (folder / pf.runfolder.LOCK).exists()
    with pf.runfolder.locked(folder):
        pass
    assert list(folder.iterdir()) == []  # the stale lock file is taken over, then removed


def test_planted_symlinks_are_never_followed(trained, tmp_path, capsys):
    """A symlink planted as the checkpoint's old temporary name, or as metrics.csv, never leads a write outside."""
    run, data = trained
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    planted = _copy_run(run, tmp_path / "planted")
    (planted / (CHECKPOINT + ".tmp")).symlink_to(outside)
    (planted / METRICS_CSV).rename(planted / "history.csv")
    (planted / METRICS_CSV).symlink_to(planted / "history.csv")
    code, _, err = run_cli(["infer", "--out", str(planted), "--resume", "--steps", "40", "--quiet"], capsys)
    assert code == 0, err
    assert outside.read_text() == "keep me" and not (planted / METRICS_CSV).is_symlink()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / METRICS_CSV).symlink_to(outside)  # the remains of no run: replaced, not followed
    assert run_cli(["infer", "--data", str(data), "--out", str(fresh), "--steps", "20", *TINY], capsys)[0] == 0
    assert outside.read_text() == "keep me"


def test_predict_never_overwrites_a_runs_own_files(trained, tmp_path, capsys):
    run, _ = trained
    before = (run / METRICS_CSV).read_bytes()
    points = tmp_path / "points.csv"
    points.write_text("x,y,t\n0,0,0.5\n")
    code, _, err = run_cli(["predict", "--run", str(run), "--points", str(points), "--out", str(run / METRICS_CSV)],
                           capsys)
    assert code == 2 and "is a file of the run in" in err and (run / METRICS_CSV).read_bytes() == before


# ----------------------------------------------------------------- bad input: one line, exit 2, nothing left
@pytest.mark.parametrize("columns, message", [
    (dict(u=1e307), "column u: value"),
    (dict(x=1e-310), "x spans only"),
])
def test_data_float32_cannot_hold_is_refused_naming_the_file(columns, message, tmp_path, capsys):
    observations = pf.make_observations(0.02, 50, seed=1)
    for name, factor in columns.items():
        observations[name] = observations[name] * factor
    path = tmp_path / "obs.npz"
    np.savez(path, **observations)
    code, _, err = run_cli(["infer", "--data", str(path), "--out", str(tmp_path / "run"), *TINY], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(path) in err
    assert message in err and not (tmp_path / "run").exists()


def test_too_many_kept_checkpoints_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["infer", "--out", str(tmp_path / "run"), "--keep-checkpoints", "0:100000000000:1"],
                           capsys)
    assert code == 2 and "at most 10000" in err and not (tmp_path / "run").exists()


# ----------------------------------------------------------------- every crash window resumes exactly
SMALL_RUN = ["--width", "8", "--depth", "1", "--collocation", "32", "--batch-size", "16", "--nu-warmup", "20",
             "--average-last", "50", "--quiet", "--device", "cpu"]
# An early settle at the first check (step 500): the end of a run is decided before the checkpoint that records
# it, as a raised target is (test_golden's extension case runs that decision).
CRASH_CASES = {
    "settle": ["--model", "m1", "--steps", "2000", "--min-steps", "500", "--tol", "0.9", "--lr", "1e-5", "--nu-lr",
               "1e-5", "--checkpoint-every", "250"],
}


def _same(a, b, where):
    """Equal checkpoint entries: tensors bit for bit, containers entry by entry."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{k}]")
    elif where not in ("checkpoint.seconds", "checkpoint.compile_seconds"):
        assert a == b, f"{where}: {a!r} != {b!r}"


def _untimed(result):
    return {key: value for key, value in result.items() if key not in ("seconds", "compile_seconds")}


@pytest.mark.parametrize("case", list(CRASH_CASES))
def test_a_kill_after_any_write_resumes_to_the_uninterrupted_run(case, tmp_path):
    data = tmp_path / "obs.npz"
    pf.save_observations(data, pf.make_observations(0.02, 60, seed=2))
    argv = ["infer", "--data", str(data), *SMALL_RUN, *CRASH_CASES[case]]
    driven = subprocess.run([sys.executable, str(Path(__file__).with_name("kill_after_write.py")), str(tmp_path),
                             *argv], capture_output=True, text=True, env=_env())
    assert driven.returncode == 0, driven.stderr[-2000:]
    writes = int(driven.stdout.split()[-1])
    straight = tmp_path / "straight"
    assert writes >= 4 and {p.name for p in straight.iterdir()} == {CHECKPOINT, METRICS_CSV, RESULT, "training.png"}
    expected = _untimed(json.loads((straight / RESULT).read_text()))
    for k in range(1, writes + 1):
        killed = tmp_path / f"killed_{k}"
        assert {p.name for p in killed.iterdir()} == {p.name for p in straight.iterdir()}, f"after write {k}"
        assert (killed / METRICS_CSV).read_bytes() == (straight / METRICS_CSV).read_bytes(), f"after write {k}"
        assert _untimed(json.loads((killed / RESULT).read_text())) == expected, f"after write {k}"
        _same(load_checkpoint(killed), load_checkpoint(straight), "checkpoint")


# ----------------------------------------------------------------- a declared problem's code comes from the user
HEAT = '''
import numpy as np
import pinnfast as pf


def make_problem(data=None):
    rng = np.random.default_rng(0)
    x, t = rng.random(50), rng.random(50)
    u = np.exp(-0.1 * np.pi ** 2 * t) * np.sin(np.pi * x)
    return pf.PDE(("x", "t"), ("u",), lambda d, kappa: d.u_t - kappa * d.u_xx, {"kappa": pf.Unknown(0.5)},
                  {"d": pf.Condition({"x": x, "t": t}, values=u)}, name="heat")
'''


@pytest.fixture(scope="module")
def heat_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("heat")
    (folder / "heat.py").write_text(HEAT)
    argv = ["train", "--problem", f"{folder / 'heat.py'}:make_problem", "--out", str(folder / "run"), "--steps", "20",
            *TINY]
    assert run_cli_plain(argv) == 0
    return folder


def test_a_factory_named_in_a_run_folder_is_never_imported(heat_run, tmp_path, capsys):
    crafted = _copy_run(heat_run / "run", tmp_path / "crafted")
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\ndef make_problem(data=None): pass\n")
    state = torch.load(crafted / CHECKPOINT, weights_only=True)
    state["data"]["factory"]["spec"] = f"{evil}:make_problem"
    torch.save(state, crafted / CHECKPOINT)
    points = tmp_path / "points.csv"
    points.write_text("x,y,t\n0,0,0.5\n")
    for argv in (["predict", "--run", str(crafted), "--points", str(points), "--out", str(tmp_path / "p.csv")],
                 ["residual-field", "--run", str(crafted), "--out", str(tmp_path / "f"), "--grid", "4"],
                 ["train", "--out", str(crafted), "--resume", "--steps", "30", "--quiet"]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "heat" in err and not marker.exists(), argv[0]
    assert f"--problem {evil}:make_problem" in err  # named as data, for the user to judge


def test_a_resume_needs_the_same_factory_source(heat_run, tmp_path, capsys):
    run = _copy_run(heat_run / "run", tmp_path / "run")
    changed = tmp_path / "heat.py"
    changed.write_text(HEAT.replace("kappa * d.u_xx", "kappa * d.u_xx * 1.0"))
    code, _, err = run_cli(["train", "--problem", f"{changed}:make_problem", "--out", str(run), "--resume",
                            "--steps", "30", "--quiet"], capsys)
    assert code == 2 and "its source is not the one the run" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["train", "--problem", f"{heat_run / 'heat.py'}:make_problem", "--out", str(run),
                            "--resume", "--steps", "30", "--quiet"], capsys)
    assert code == 0, err


# ----------------------------------------------------------------- checkpoints this pinnfast cannot run
@pytest.mark.parametrize("change, message", [
    (lambda config: config.update(colour="blue"), "does not know (colour)"),
    (lambda config: config.update(model="m9"), "unknown model 'm9'"),
    (lambda config: config.update(width="wide"), "its config cannot be a run's"),
])
def test_a_checkpoint_config_this_pinnfast_cannot_run_is_one_line(change, message, trained, tmp_path, capsys):
    run, _ = trained
    crafted = _copy_run(run, tmp_path / "crafted")
    state = torch.load(crafted / CHECKPOINT, weights_only=True)
    change(state["config"])
    torch.save(state, crafted / CHECKPOINT)
    for argv in (["infer", "--out", str(crafted), "--resume", "--steps", "40", "--quiet"],
                 ["diagnose", "--run", str(crafted), "--max-iter", "2"]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_a_checkpoint_whose_network_disagrees_with_its_config_is_one_line(trained, tmp_path, capsys):
    run, _ = trained
    crafted = _copy_run(run, tmp_path / "crafted")
    state = torch.load(crafted / CHECKPOINT, weights_only=True)
    state["config"]["width"] = 12
    torch.save(state, crafted / CHECKPOINT)
    for argv in (["diagnose", "--run", str(crafted), "--max-iter", "2"],
                 ["infer", "--out", str(crafted), "--resume", "--steps", "40", "--quiet"]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "does not fit" in err, err


# ----------------------------------------------------------------- settings no machine or data can run
@pytest.mark.parametrize("flags, message", [
    (["--width", "100000"], "this run needs at least"),
    (["--depth", "100000"], "this run needs at least"),
    (["--ensemble", "100000"], "this run needs at least"),
    (["--collocation", "1000000000"], "this run needs at least"),
    (["--nu-init", "1e300"], "--nu-init 1e+300 is not a viscosity these data can show"),
    (["--nu-init", "1e-320"], "is not a viscosity these data can show"),
])
def test_absurd_settings_are_one_line_and_leave_nothing(flags, message, trained, tmp_path, capsys):
    """On top of the default run (whose memory floor is about 19 MB)."""
    _, data = trained
    out = tmp_path / "run"
    code, _, err = run_cli(["infer", "--data", str(data), "--out", str(out), "--quiet", "--device", "cpu", *flags],
                           capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_an_unknown_that_collapses_is_a_warning(trained, tmp_path, capsys):
    _, data = trained
    code, _, err = run_cli(["infer", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "300",
                            "--nu-lr", "100", "--nu-warmup", "50", "--average-last", "100", "--checkpoint-every",
                            "50", "--quiet", "--device", "cpu"], capsys)
    result = json.loads((tmp_path / "run" / RESULT).read_text())
    assert code == 0 and result["nu"] < 0.05e-6, result["nu"]
    assert result["nu_warning"] and "went from its initial 0.05" in result["nu_warning"]
    assert "went from its initial 0.05" in err


def test_a_full_disk_names_the_file_and_keeps_the_last_checkpoint(trained, tmp_path, monkeypatch, capsys):
    _, data = trained
    out = tmp_path / "run"
    save, saves = torch.save, []

    def filling(state, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")
        save(state, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", filling)
    code, _, err = run_cli(["infer", "--data", str(data), "--out", str(out), "--steps", "30", *TINY], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{out / CHECKPOINT}: cannot write (" in err
    assert load_checkpoint(out)["step"] == 10 and not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    import matplotlib.figure

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    code, _, err = run_cli(["infer", "--out", str(out), "--resume", "--quiet"], capsys)
    assert code == 2 and err.strip().splitlines()[-1] == (f"pinnfast: error: {out / 'training.png'}: cannot write "
                                                          "(No space left on device)")


def test_a_resume_reads_metrics_with_cr_line_ends(trained, tmp_path, capsys):
    run, _ = trained
    copied = _copy_run(run, tmp_path / "cr")
    (copied / METRICS_CSV).write_bytes((copied / METRICS_CSV).read_bytes().replace(b"\r\n", b"\r"))
    code, _, err = run_cli(["infer", "--out", str(copied), "--resume", "--steps", "40", "--quiet"], capsys)
    assert code == 0, err
    assert pf.runfolder.metrics_table(copied)["step"].tolist() == list(range(1, 41))


def test_a_second_ctrl_c_keeps_the_resume_hint(trained, tmp_path, monkeypatch, capsys):
    from pinnfast import commands

    _, data = trained
    original = pf.Trainer.train_step

    def interrupted(self):
        if self.step == 15:
            raise KeyboardInterrupt  # the first Ctrl-C, during training
        return original(self)

    def plotting(*args):
        raise KeyboardInterrupt  # the second, while the history is plotted

    monkeypatch.setattr(pf.Trainer, "train_step", interrupted)
    monkeypatch.setattr(commands, "_plot", plotting)
    out = tmp_path / "run"
    code, _, err = run_cli(["infer", "--data", str(data), "--out", str(out), "--steps", "30", *TINY], capsys)
    assert code == 130 and err.strip().splitlines()[-1] == (
        f"pinnfast: interrupted at step 15; the last checkpoint (step 10) is in {out / CHECKPOINT}; continue with "
        f"`pinnfast infer --out {out} --resume`")


def test_numpy_values_of_older_checkpoints_still_load(trained, tmp_path, capsys):
    run, _ = trained
    older = _copy_run(run, tmp_path / "older")
    state = torch.load(older / CHECKPOINT, weights_only=True)
    state.update(nu_true=np.float64(0.02), error_samples=[[25, {"nu": np.array([0.001])}]])
    torch.save(state, older / CHECKPOINT)
    code, _, err = run_cli(["infer", "--out", str(older), "--resume", "--steps", "40", "--quiet"], capsys)
    assert code == 0, err
    assert type(torch.load(older / CHECKPOINT, weights_only=True)["nu_true"]) is float  # written back plain
