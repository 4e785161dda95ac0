"""What an H100 makes of the default kernel configurations, checked on the CPU: each compiles for sm_90a with the
launcher's own tile and warps, spills nothing, fits in shared memory, and `precision` reaches the hardware. The
backward kernel's five stages (for the Burgers loss and for the data loss's value backward) are held to that for the
trainer's default network and the two benchmark networks, M3 and the MLP.

The compiles run in a subprocess without TRITON_INTERPRET (under the interpreter a kernel cannot be compiled)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sm90_static.py"
# (width, depth, fused Burgers): the trainer's default network, and the two benchmark configurations.
DEFAULTS = [(32, 3, False), (32, 3, True), (64, 4, True), (128, 6, True)]
COMPILE = """
import concurrent.futures, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("sm90_static", sys.argv[1])
sm90 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sm90)
from pinnfast import models
from pinnfast.burgers import FIRST, SECOND
from pinnfast.jets import VALUE_ONLY, JetSpec
from pinnfast.kernels import backward, jets as kernel

def compiled(width, depth, burgers, precision, tile_and_warps=None, spec=JetSpec(FIRST, SECOND), stage=None,
             model="ModifiedMLP"):
    meta = kernel.pack_weights(getattr(models, model)(3, 2, width, depth), spec, "cpu")["meta"]
    block, warps = tile_and_warps or (kernel.backward_launch_config(meta, burgers, precision, stage) if stage
                                      else kernel.launch_config(meta, burgers, precision))
    constexprs = (backward.stage_constexprs(meta, burgers, precision, stage) if stage
                  else dict(meta, BURGERS=burgers, PRECISION=precision))
    r = sm90.compile_sm90(dict(constexprs, B=block), warps,
                          backward.mlp_jets_backward_kernel if stage else kernel.mlp_jets_kernel)
    return dict(spill=r.spill_bytes, shared=r.shared_bytes, fits_shared=r.shared_bytes <= sm90.H100_SHARED_BYTES,
                tensor=r.sass["HMMA"] + r.sass["HGMMA"], ffma=r.sass["FFMA"])

def backward_case(case):
    model, width, depth, loss, stage = case
    return compiled(width, depth, loss == "burgers_loss", kernel.DEFAULT_PRECISION, stage=stage, model=model,
                    spec=JetSpec(FIRST, SECOND) if loss == "burgers_loss" else VALUE_ONLY)

if __name__ == "__main__":
    networks = json.loads(sys.argv[2])
    cases = [(model, width, depth, loss, stage) for model in ("ModifiedMLP", "MLP") for width, depth, _ in networks[1:]
             for loss in ("burgers_loss", "value_backward") for stage in backward.STAGES]
    with concurrent.futures.ProcessPoolExecutor(2) as pool:  # the compiles side by side: CI has two cores
        backwards = dict(zip(map(str, cases), pool.map(backward_case, cases)))
    defaults = {str(case): compiled(*case, kernel.DEFAULT_PRECISION) for case in networks}
    precisions = {p: compiled(64, 4, True, p, (16, 4)) for p in kernel.PRECISIONS}
    print(json.dumps(dict(defaults=defaults, precisions=precisions, backwards=backwards)))
"""

@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", COMPILE, str(SCRIPT), json.dumps(DEFAULTS)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _fits(result, where=""):
    assert result["spill"] == 0, f"{where}{result['spill']} B spilled per thread"
    assert result["fits_shared"], f"{where}{result['shared']} B of shared memory"


@pytest.mark.parametrize("case", DEFAULTS)
def test_default_configuration_spills_nothing(case, compiled):
    _fits(compiled["defaults"][str(list(case))])


@pytest.mark.parametrize("network", [(width, depth) for width, depth, _ in DEFAULTS[1:]])
@pytest.mark.parametrize("loss", ["burgers_loss", "value_backward"])
@pytest.mark.parametrize("model", ["ModifiedMLP", "MLP"])
def test_backward_spills_nothing(model, network, loss, compiled):
    """Every stage of the trainer's two backward passes (its residual loss, its data loss) for the default network
    (width 32, depth 3) and the benchmark networks (64 × 4, 128 × 6), M3 and the MLP, at the backward table's tile
    and warps."""
    for stage in ("forward_layer", "output_layer", "hidden_layer", "weight_gradient", "input_layer"):
        _fits(compiled["backwards"][str((model, *network, loss, stage))], f"{stage}: ")


def test_precision_reaches_the_tensor_cores(compiled):
    """tf32x3 issues three tensor-core products for each one of tf32; ieee none (plain FMAs). Same tile and
    warps for all three, so that only the precision differs."""
    counts = compiled["precisions"]
    assert counts["tf32"]["tensor"] > 0 and counts["tf32x3"]["tensor"] == 3 * counts["tf32"]["tensor"], counts
    assert counts["ieee"]["tensor"] == 0 and counts["ieee"]["ffma"] > counts["tf32"]["ffma"]
