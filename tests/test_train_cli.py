"""`pinnfast train` with a user's module from a temporary folder: trains, resumes and reads --data through the
factory; bad module paths, missing factories and impossible residuals get one clear line (exit code 2)."""
import json

import numpy as np
import pytest

from helpers import run_cli

SMALL = ["--steps", "6", "--width", "8", "--depth", "1", "--collocation", "16", "--batch-size", "16",
         "--nu-warmup", "2", "--average-last", "3", "--checkpoint-every", "3", "--tol", "0.5", "--quiet",
         "--device", "cpu"]
MODULE = '''
import numpy as np
import pinnfast as pf


def make_problem(data=None):
    if data:
        columns = pf.data.load_table(data, ("x", "t", "u"))
    else:
        rng = np.random.default_rng(0)
        x, t = rng.random(50), rng.random(50)
        columns = {"x": x, "t": t, "u": np.exp(-0.1 * np.pi ** 2 * t) * np.sin(np.pi * x)}
    return pf.PDE(("x", "t"), ("u",), lambda d, kappa: d.u_t - kappa * d.SECOND,
                  {"kappa": pf.Unknown(0.5, positive=True, true=0.1)},
                  {"d": pf.Condition({"x": columns["x"], "t": columns["t"]}, values=columns["u"])}, name="heat")


def no_data():
    return make_problem()


def not_a_problem(data=None):
    return {"residual": None}
'''


def _module(folder, name, second="u_xx"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(MODULE.replace("SECOND", second))
    return folder / f"{name}.py"


def test_train_a_user_module_by_file_and_by_name(tmp_path, monkeypatch, capsys):
    path = _module(tmp_path / "mine", "heat_by_file")
    code, out, err = run_cli(["train", "--problem", f"{path}:make_problem", "--out", str(tmp_path / "a")] + SMALL,
                             capsys)
    assert code == 0, err
    assert "kappa = " in out and "true 0.1: error" in out and "after 6 steps" in out
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["problem"] == "heat" and result["steps"] == 6 and result["kappa_true"] == 0.1
    assert (tmp_path / "a" / "training.png").stat().st_size > 1000
    _module(tmp_path / "mine", "heat_by_name")
    monkeypatch.chdir(tmp_path / "mine")  # MODULE:FUNCTION imports from the current folder
    code, _, err = run_cli(["train", "--problem", "heat_by_name:make_problem", "--out", str(tmp_path / "b")] + SMALL,
                           capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "result.json").read_text())["kappa"] == result["kappa"]  # same run


def test_train_resumes_with_its_factory_and_its_data(tmp_path, monkeypatch, capsys):
    path = _module(tmp_path / "mine", "heat_resumed")
    rng = np.random.default_rng(5)
    x, t = rng.random(40), rng.random(40)
    np.savez(tmp_path / "obs.npz", x=x, t=t, u=np.sin(np.pi * x) * np.exp(-t))
    common = ["train", "--problem", f"{path}:make_problem", "--data", str(tmp_path / "obs.npz")]
    assert run_cli(common + ["--out", str(tmp_path / "a")] + SMALL, capsys)[0] == 0
    assert run_cli(common + ["--out", str(tmp_path / "b")] + SMALL[:1] + ["3"] + SMALL[2:], capsys)[0] == 0
    monkeypatch.chdir(tmp_path)  # elsewhere: the run finds its data itself; its code comes from --problem only
    code, out, err = run_cli(["train", "--out", str(tmp_path / "b"), "--resume", "--steps", "6", "--quiet"], capsys)
    assert code == 2 and f"give its factory again, as it began: --problem {path}:make_problem" in err
    code, out, err = run_cli(["train", "--problem", f"{path}:make_problem", "--out", str(tmp_path / "b"), "--resume",
                              "--steps", "6", "--quiet"], capsys)
    assert code == 0, err
    a, b = (json.loads((tmp_path / d / "result.json").read_text()) for d in "ab")
    assert a["kappa"] == b["kappa"] and b["steps"] == 6 and b["data"] == str(tmp_path / "obs.npz")
    code, _, err = run_cli(["infer", "--out", str(tmp_path / "b"), "--resume", "--steps", "9"], capsys)
    assert code == 2 and "holds a heat run (from `pinnfast train`" in err


@pytest.mark.parametrize("case,message", [
    ("no colon", "expected MODULE:FUNCTION or FILE.py:FUNCTION"),
    ("no module", "no module 'no_such_module_here' in"),
    ("no file", "no file"),
    ("no factory", "has no function 'make_problm' (its functions: make_problem, no_data, not_a_problem)"),
    ("not a PDE", "not_a_problem() returned dict, not a pinnfast.PDE"),
    ("no data argument", "no_data() takes no data argument, so --data"),
    ("impossible residual", "the residual asks for 'u_yy', but 'yy' is not an input (the inputs are x, t)"),
    ("no problem", "--problem is needed"),
    ("built-in run", "`train --resume` continues runs of problems declared with pinnfast.PDE"),
])
def test_bad_problem_gets_one_clear_line(case, message, tmp_path, monkeypatch, capsys):
    path = _module(tmp_path, "heat_bad", second="u_yy" if case == "impossible residual" else "u_xx")
    monkeypatch.chdir(tmp_path)
    problem = {"no colon": "heat_bad", "no module": "no_such_module_here:make_problem",
               "no file": "missing/heat.py:make_problem", "no factory": f"{path}:make_problm",
               "not a PDE": f"{path}:not_a_problem", "no data argument": f"{path}:no_data",
               "impossible residual": f"{path}:make_problem"}.get(case)
    argv = ["train", "--out", str(tmp_path / "run")] + (["--problem", problem] if problem else [])
    if case == "no data argument":
        argv += ["--data", str(tmp_path / "obs.npz")]
    if case == "built-in run":
        assert run_cli(["reproduce", "helmholtz", "--models", "m1", "--steps", "2", "--out", str(tmp_path / "r"),
                        "--quiet", "--device", "cpu"], capsys)[0] == 0
        argv = ["train", "--out", str(tmp_path / "r" / "helmholtz" / "m1"), "--resume"]
    code, out, err = run_cli(argv + ["--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
