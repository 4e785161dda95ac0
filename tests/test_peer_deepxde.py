"""The DeepXDE comparison script: its skip without DeepXDE, its reading of a pinnfast run and its table."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import run_cli

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peer_deepxde.py"
SPEC = importlib.util.spec_from_file_location("peer_deepxde", SCRIPT)
peer = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(peer)


def test_without_deepxde_one_skip_line_and_exit_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "deepxde", None)  # import deepxde now fails, as where it is not installed
    assert peer.main(["--work", str(tmp_path / "work")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines() == [peer.SKIP] and "pip install deepxde" in peer.SKIP
    assert not (tmp_path / "work").exists()  # nothing ran


@pytest.mark.parametrize("installed", [True, False])
def test_bad_data_is_one_error_line(installed, tmp_path, capsys, monkeypatch):
    if not installed:
        monkeypatch.setitem(sys.modules, "deepxde", None)
    bad = tmp_path / "obs.csv"
    bad.write_text("x,y,t,u\n0,0,0,1\n")
    assert peer.main(["--data", str(bad), "--nu-true", "0.02", "--work", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "obs.csv" in err[0] and "v" in err[0]


def _direct_time_to(log, nu_true, tol):
    """The reference: the first sample within tol, and the earliest sample from which all later ones are within."""
    inside = [abs(nu - nu_true) <= tol * nu_true for _, _, nu in log]
    first = [s for (_, s, _), ok in zip(log, inside) if ok]
    held = [log[i][1] for i in range(len(log)) if all(inside[i:])]
    return (first[0] if first else None), (held[0] if held else None)


def test_time_to_first_and_held_match_a_direct_count(rng):
    generator = np.random.default_rng(rng.initial_seed())  # fresh logs each run, replayable from the printed seed
    for _ in range(200):
        n = int(generator.integers(1, 40))
        seconds = np.cumsum(generator.uniform(0.1, 2.0, n))
        nu = 0.02 * (1 + generator.choice([-1, 1], n) * generator.uniform(0, 0.03, n) * generator.uniform(0, 1, n))
        log = [[k, float(s), float(v)] for k, (s, v) in enumerate(zip(seconds, nu))]
        for tol in (0.01, 0.001):
            assert peer.time_to(log, 0.02, tol) == _direct_time_to(log, 0.02, tol)
    # in, out, in again for good: first and held differ
    log = [[0, 0.0, 0.05], [1, 1.0, 0.0201], [2, 2.0, 0.021], [3, 3.0, 0.01995], [4, 4.0, 0.0201]]
    assert peer.time_to(log, 0.02, 0.01) == (1.0, 3.0)
    assert peer.time_to(log, 0.02, 0.001) == (None, None)


def test_record_of_a_pinnfast_run_and_the_table(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _, err = run_cli(["infer", "--out", str(run_dir), "--steps", "40", "--width", "8", "--depth", "1",
                            "--collocation", "32", "--batch-size", "16", "--checkpoint-every", "10", "--nu-warmup",
                            "5", "--average-last", "10", "--tol", "0.5", "--quiet"], capsys)
    assert code == 0, err
    result = json.loads((run_dir / "result.json").read_text())
    metrics = np.genfromtxt(run_dir / "metrics.csv", delimiter=",", names=True)
    ours = peer.pinnfast_record(run_dir, 0.05, log_every=10)
    assert ours["steps"] == result["steps"] == 40 and ours["seconds"] == result["seconds"]
    assert [s for s, _, _ in ours["log"]] == [0, 10, 20, 30, 40]
    assert ours["log"][0][1:] == [0.0, 0.05]
    for step, seconds, nu in ours["log"][1:]:
        assert nu == metrics["nu"][step - 1]
        assert np.isclose(seconds, step * result["seconds"] / 40)
    assert ours["nu"] == result["nu"] and ours["nu_how"] == "mean over steps 31–40"
    # a compiled run spends its compile in its first step: the steps after it share the rest of the time
    (run_dir / "result.json").write_text(json.dumps(dict(result, compile_seconds=0.75 * result["seconds"])))
    compiled = peer.pinnfast_record(run_dir, 0.05, log_every=10)
    for step, seconds, _ in compiled["log"][1:]:
        assert np.isclose(seconds, result["seconds"] * (0.75 + 0.25 * step / 40))

    (run_dir / "result.json").unlink()  # as when stopped at the cap: read from the checkpoint, last iterate
    stopped = peer.pinnfast_record(run_dir, 0.05, log_every=10)
    assert stopped["steps"] == 40 and stopped["nu"] == metrics["nu"][-1] and "last iterate" in stopped["nu_how"]

    # a DeepXDE log that comes within 1 % at 20 s, leaves at 30 s, is back for good at 40 s, and never within 0.1 %
    peer_log = [[0, 0.0, 0.05], [100, 10.0, 0.03], [200, 20.0, 0.02015], [300, 30.0, 0.0197], [400, 40.0, 0.0199],
                [500, 50.0, 0.01995]]
    theirs = dict(tool="DeepXDE 9.9", steps=125, seconds=50.0, wall=55.0, log=peer_log, nu=0.01995,
                  nu_how="last iterate", capped=True)
    # pinnfast's record made to last 50 s too, within 1 % from 10 s and 0.1 % from 20 s on
    ours = dict(ours, steps=50, seconds=50.0, wall=52.0, capped=False,
                log=[[0, 0.0, 0.05], [10, 10.0, 0.0201], [20, 20.0, 0.02001], [30, 30.0, 0.01999], [40, 40.0, 0.02],
                     [50, 50.0, 0.02]])
    rows = _rows(peer.comparison_table(theirs, ours, 0.02))
    assert rows["ms per step (a compile left out)"] == ["400.0", "1000.0", "0.4× |"]
    assert rows["steps; training s (a compile included); wall s (start-up included)"][:2] == ["125; 50 (cap); 55",
                                                                                              "50; 50; 52"]
    assert rows["ν error at 10 s"][:2] == ["+50.00 %", "+0.50 %"]
    assert rows["time to 1 %: first"] == ["20 s", "10 s", "2.0× |"]
    assert rows["time to 1 %: held to the end"] == ["40 s", "10 s", "4.0× |"]
    assert rows["time to 0.1 %: held to the end"] == ["not reached", "20 s", "> 2.5× |"]
    rows = _rows(peer.comparison_table(theirs, dict(ours, compile_seconds=20.0), 0.02))  # pinnfast compiled first
    assert rows["ms per step (a compile left out)"][1] == "600.0"
    assert rows["steps; training s (a compile included); wall s (start-up included)"][1] == \
        "50; 50 (20 s of it compiling); 52"
    # within only at the last sample: not "held", and no ratio from it
    ours["log"][-2][2] = 0.0203
    rows = _rows(peer.comparison_table(theirs, ours, 0.02))
    assert rows["time to 1 %: held to the end"] == ["40 s", "not held (within over the last 0 s only)", " |"]


def _rows(table):
    """A markdown table's rows by their first cell: the other cells."""
    return {row.split(" | ")[0].lstrip("| "): row.split(" | ")[1:] for row in table[2:]}
