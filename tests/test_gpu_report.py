"""The GPU report script stays runnable: a smoke run of its whole logic on the CPU interpreter, tiny sizes."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pinnfast.kernels.backward import STAGES

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_report.py"


def _benchmark_module(name):
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_report_smoke_run(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1", OUT=str(tmp_path))
    # two worker processes: the spawned pool that checks and compiles side by side on the GPU machine
    result = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--workers", "2"], capture_output=True, text=True, env=env,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu_report.json").read_text())
    assert not [r for r in rows if r["kind"] == "error"], rows
    checks = [r for r in rows if r["kind"] == "check"]
    assert checks and all(r["passed"] and not r["unwritten"] for r in checks)
    # the interpreter multiplies by the host's tf32 weight planes: tf32x3 (both planes) stays at fp32 accuracy
    assert all(r["meets_fp32_tolerance"] == (r["precision"] != "tf32") for r in checks)
    impls = {r["impl"] for r in rows if r["kind"] == "residual_eval" and "ms" in r}
    assert {"triton_ieee", "triton_tf32x3", "triton_tf32", "torch_taylor_eager", "torch_eager_autograd"} <= impls
    grads = [r for r in rows if r["kind"] == "grad_check"]
    assert {r["precision"] for r in grads} == {"ieee", "tf32x3", "tf32"} and all(r["passed"] for r in grads)
    steps = {r["impl"] for r in rows if r["kind"] == "train_step_anneal" and "ms" in r}
    assert steps == {"pinnfast_triton", "pinnfast_torch"}
    ensemble = [r for r in rows if r["kind"] == "ensemble_check"]
    assert [r["precision"] for r in ensemble] == ["ieee"] and ensemble[0]["passed"]  # all three on a GPU
    assert {r["members"] for r in rows if r["kind"] == "ensemble_step" and "ms" in r} == {1, 2}  # 1 and 8 on a GPU
    assert [r for r in rows if r["kind"] == "stream" and r["finite"]]
    [stages] = [r for r in rows if r["kind"] == "backward_stages"]  # every stage launched and timed
    assert set(stages["stages_ms"]) == set(STAGES) and all(ms > 0 for ms in stages["stages_ms"].values())
    assert result.stdout.rstrip().splitlines()[-1].startswith("streamed N=")


def test_a_wrong_kernel_fails_the_report_and_keeps_the_json(tmp_path, monkeypatch, capsys):
    """--quick checks correctness only; a kernel that writes wrong values makes the report exit 1 with the rows."""
    report = _benchmark_module("gpu_report")
    original = report.kernel.launch

    def wrong(model, x, spec, out, *args, **kwargs):
        return original(model, x, spec, out, *args, **kwargs).mul_(1.5)

    monkeypatch.setattr(report.kernel, "launch", wrong)
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["gpu_report.py", "--smoke", "--quick"])
    with pytest.raises(SystemExit) as stop:
        report.main()
    assert stop.value.code == 1
    rows = json.loads((tmp_path / "gpu_report.json").read_text())
    checks = [r for r in rows if r["kind"] == "check"]
    assert checks and not any(r["passed"] for r in checks)
    assert not [r for r in rows if r["kind"] == "residual_eval"]  # --quick: no timings


def test_tune_backward_takes_the_fastest_tile_whose_gradients_agree():
    """tune_backward.py's table: per workload the fastest uniform (tile, warps), for every stage, never one whose
    gradients differ; nothing where the static table's own tiles (tile None) were fastest."""
    tune = _benchmark_module("tune_backward")
    rows = [dict(workload="burgers_loss", width=64, depth=4, N=16384, burgers=True, tile=t, warps=w,
                 programs_per_sm=1, ms=ms, differs=d)
            for t, w, ms, d in [(None, None, 0.9, 0.0), (4, 8, 1.2, 1e-7), (8, 8, 0.4, 3e-7), (8, 4, 0.1, 0.5)]]
    rows += [dict(workload="data_jets", width=32, depth=3, N=512, burgers=False, tile=t, warps=w, programs_per_sm=2,
                  ms=ms, differs=0.0) for t, w, ms in [(None, None, 0.04), (4, 4, 0.05)]]
    table = tune.fastest(rows)
    assert table == {stage: {(True, True, 64, 2, 1, 3, 2, "tf32x3"): (8, 8)} for stage in tune.backward.STAGES}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_steps_equal_the_eager_steps_and_resume_exactly():
    [row] = _benchmark_module("gpu_report").check_cuda_graphs("cuda")
    assert row["passed"], row
