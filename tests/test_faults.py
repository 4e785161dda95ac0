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
    (tmp_path / METRICS_CSV).write_bytes(text.replace("\n", "\r").encode())
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
