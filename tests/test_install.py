"""What "a CPU is enough" promises: the main job needs neither triton (no macOS/Windows wheels) nor the test tools,
and setup.py installs only what the main job needs unless an extra asks for more."""
import ast
import subprocess
import sys
from pathlib import Path

import pinnfast as pf

ROOT = Path(__file__).resolve().parents[1]
BLOCK = """
import sys
for name in ("triton", "pytest", "pytest_benchmark"):
    sys.modules[name] = None  # any import of these now raises ImportError
from pinnfast.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_main_job_runs_without_triton_or_test_tools(tmp_path):
    data = tmp_path / "obs.npz"
    pf.save_observations(data, pf.make_observations(0.02, 40, seed=0))
    argv = ["infer", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "3", "--width", "8",
            "--depth", "1", "--collocation", "16", "--batch-size", "16", "--quiet"]
    env = {"PATH": "/usr/bin:/bin", "TRITON_INTERPRET": "0"}
    result = subprocess.run([sys.executable, "-c", BLOCK, *argv], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "nu = " in result.stdout and (tmp_path / "run" / "result.json").exists()


def test_setup_keeps_triton_and_test_tools_in_extras():
    call = next(node for node in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    options = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires",
                                                                                     "extras_require")}
    required = " ".join(options["install_requires"])
    assert "triton" not in required and "pytest" not in required
    assert any(r.startswith("triton") for r in options["extras_require"]["triton"])
    assert {"pytest", "pytest-benchmark"} <= set(options["extras_require"]["test"])
