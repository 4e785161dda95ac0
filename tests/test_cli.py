"""The command line: every kind of bad input gives exit code != 0 and one clear message, no traceback."""
import json
import subprocess
import sys

import numpy as np
import pytest

import pinnfast as pf
from helpers import run_cli
from pinnfast.cli import main

GOOD = pf.make_observations(0.05, 40, seed=1)


def _run(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    return code, err


def _npz(tmp_path, name="obs.npz", **columns):
    path = tmp_path / name
    np.savez(path, **columns)
    return str(path)


def _csv(tmp_path, text, name="obs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _csv_text(columns, header=",".join(pf.data.COLUMNS)):
    rows = np.column_stack([columns[c] for c in pf.data.COLUMNS])
    return header + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n"


def _bad_inputs(tmp_path):
    """Each case builds its file only when called: (argv, expected message)."""
    few = {c: a[:9] for c, a in GOOD.items()}
    short_u = dict(GOOD, u=GOOD["u"][:-1])
    with_nan = dict(GOOD, v=np.where(np.arange(40) == 7, np.nan, GOOD["v"]))
    with_inf = dict(GOOD, t=np.where(np.arange(40) == 3, np.inf, GOOD["t"]))
    no_v = {c: a for c, a in GOOD.items() if c != "v"}
    csv_text = _csv_text(GOOD)
    return {
        "missing file": lambda: (["--data", str(tmp_path / "nope.npz")], "nope.npz: no such file"),
        "npz missing column": lambda: (["--data", _npz(tmp_path, **no_v)],
                                       "obs.npz: missing column(s) v; the file's columns are x, y, t, u"),
        "npz lengths differ": lambda: (["--data", _npz(tmp_path, **short_u)],
                                       "different lengths: x=40, y=40, t=40, u=39"),
        "npz nan": lambda: (["--data", _npz(tmp_path, **with_nan)],
                            "index 7 (0-based), column v: value nan is not finite"),
        "npz inf": lambda: (["--data", _npz(tmp_path, **with_inf)],
                            "index 3 (0-based), column t: value inf is not finite"),
        "too few points": lambda: (["--data", _npz(tmp_path, **few)], "9 points; at least 10 are needed"),
        "csv missing column": lambda: (["--data", _csv(tmp_path, csv_text.replace("x,y,t,u,v", "x,y,t,u,w"))],
                                       "obs.csv: missing column(s) v; the file's columns are x, y, t, u, w"),
        "csv not a number": lambda: (["--data", _csv(tmp_path, csv_text.replace("\n", "\n0.1,0.2,oops,0.3,0.4\n", 1))],
                                     "obs.csv: line 2, column t: 'oops' is not a number"),
        "csv nan": lambda: (["--data", _csv(tmp_path, _csv_text(with_nan))],
                             "obs.csv: line 9, column v: value nan is not finite (1 such value(s) in the column)"),
        "csv ragged": lambda: (["--data", _csv(tmp_path, csv_text + "1,2,3\n")],
                               "line 42 has 3 fields, the header has 5"),
        "unknown format": lambda: (["--data", _csv(tmp_path, "x", name="obs.txt")], "unknown data format '.txt'"),
        "nu-init zero": lambda: (["--nu-init", "0"], "argument --nu-init: must be a positive number, got '0'"),
        "nu-init negative": lambda: (["--nu-init", "-0.1"], "argument --nu-init: must be a positive number, got '-0.1'"),
        "unknown model": lambda: (["--model", "m9"], "argument --model: invalid choice: 'm9'"),
        "unknown device": lambda: (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(None)))
def test_bad_input_gives_one_clear_message(case, tmp_path, capsys):
    argv, message = _bad_inputs(tmp_path)[case]()
    out = tmp_path / "run"
    code, err = _run(["infer", "--out", str(out), "--steps", "2", "--quiet", *argv], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (out / "result.json").exists()


def test_console_script_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pinnfast.cli", "infer", "--data", str(tmp_path / "x.npz"),
                             "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"pinnfast: error: {tmp_path / 'x.npz'}: no such file"


@pytest.mark.parametrize("argv,message", [
    (["--nu", "0"], "argument --nu: must be a positive number"), (["--nu", "0.1", "--n", "5"], "--n must be at least 10"),
    (["--nu", "0.1", "--noise", "-1"], "--noise must be >= 0"),
    (["--nu", "0.1", "--box", "0,0,0,1,1"], "argument --box: must be six numbers"),
    (["--nu", "0.1", "--box", "0,0,1,1,1,1"], "t0 < t1, got '0,0,1,1,1,1'"),
    (["--nu", "0.1", "--field", "vortex"], "argument --field: invalid choice: 'vortex'"),
])
def test_make_data_errors(argv, message, tmp_path, capsys):
    code, err = _run(["make-data", "--out", str(tmp_path / "o.npz"), *argv], capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_make_data_round_trip(suffix, tmp_path, capsys):
    path = tmp_path / f"obs{suffix}"
    assert main(["make-data", "--nu", "0.03", "--n", "25", "--noise", "0.01", "--seed", "4",
                 "--out", str(path)]) == 0
    loaded = pf.load_observations(path)
    expected = pf.make_observations(0.03, 25, 0.01, seed=4)
    for column in pf.data.COLUMNS:
        np.testing.assert_allclose(loaded[column], expected[column], rtol=1e-15)


def test_make_data_field_and_box(tmp_path, capsys):
    path = tmp_path / "ch.npz"
    assert main(["make-data", "--nu", "0.01", "--n", "300", "--field", "cole-hopf", "--box", "2,-3,1,2.5,-2,3",
                 "--out", str(path)]) == 0
    loaded = pf.load_observations(path)
    expected = pf.make_observations(0.01, 300, box=((2, -3, 1), (2.5, -2, 3)), field="cole-hopf")
    for column in pf.data.COLUMNS:
        np.testing.assert_allclose(loaded[column], expected[column], rtol=1e-15)
    assert loaded["x"].min() >= 2 and loaded["x"].max() <= 2.5 and loaded["t"].min() >= 1 and loaded["t"].max() <= 3


def test_infer_writes_the_run_folder(tmp_path, capsys):
    data = tmp_path / "obs.csv"
    main(["make-data", "--nu", "0.02", "--n", "50", "--out", str(data)])
    out = tmp_path / "run"
    assert main(["infer", "--data", str(data), "--out", str(out), "--steps", "12", "--model", "m2",
                 "--nu-init", "0.07", "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 12 and result["seconds"] > 0 and result["nu"] > 0 and result["model"] == "m2"
    assert (out / "training.png").stat().st_size > 1000
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,loss,loss_r,loss_d,lambda_d,imbalance_d,nu,lr" and len(lines) == 13
    assert "nu = " in capsys.readouterr().out


def test_infer_without_matplotlib_keeps_its_results(tmp_path, capsys, monkeypatch):
    """Installed with --no-deps (the GPU machine), matplotlib may be missing: no plot, a note, the results kept."""
    monkeypatch.delitem(sys.modules, "pinnfast.plots", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ModuleNotFoundError
    out = tmp_path / "run"
    assert main(["infer", "--out", str(out), "--steps", "3", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert json.loads((out / "result.json").read_text())["steps"] == 3 and (out / "checkpoint.pt").is_file()
    assert not (out / "training.png").exists() and "matplotlib is not installed" in captured.err
    assert "nu = " in captured.out


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["infer", "--help"])
    text = capsys.readouterr().out
    for option in ("--data", "--out", "--steps", "--model", "--device", "--seed", "--nu-init", "--resume"):
        assert option in text


def test_the_program_exits_with_the_command_s_code(tmp_path):
    """``python -m pinnfast`` (the ``pinnfast`` script's ``command``: main, then a quicker shutdown) exits with
    main's code: 0 for ``--version``, 2 and the one-line error for a missing data file."""
    version = subprocess.run([sys.executable, "-m", "pinnfast", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and pf.__version__ in version.stdout
    missing = tmp_path / "missing.npz"
    bad = subprocess.run([sys.executable, "-m", "pinnfast", "infer", "--data", str(missing), "--out",
                          str(tmp_path / "run")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("pinnfast: error:")
    assert str(missing) in bad.stderr and "Traceback" not in bad.stderr
