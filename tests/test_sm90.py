"""What an H100 makes of the default kernel configurations, checked on the CPU: each compiles for sm_90a with the
launcher's own tile and warps, spills nothing, fits in shared memory, and `precision` reaches the hardware. The
fused backward (the Burgers loss and the data loss's value backward) is held to that at the trainer's default width;
at 64 and 128 it still spills (BENCHMARKS.md).

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
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("sm90_static", sys.argv[1])
sm90 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sm90)
from pinnfast.burgers import FIRST, SECOND
from pinnfast.jets import VALUE_ONLY, JetSpec
from pinnfast.kernels import backward, jets as kernel
from pinnfast.models import ModifiedMLP

def compiled(width, depth, burgers, precision, tile_and_warps=None, spec=JetSpec(FIRST, SECOND), fused_backward=False):
    meta = kernel.pack_weights(ModifiedMLP(3, 2, width, depth), spec, "cpu")["meta"]
    launch_config = kernel.backward_launch_config if fused_backward else kernel.launch_config
    block, warps = tile_and_warps or launch_config(meta, burgers, precision)
    fn = backward.mlp_jets_backward_kernel if fused_backward else kernel.mlp_jets_kernel
    r = sm90.compile_sm90(dict(meta, BURGERS=burgers, PRECISION=precision, B=block), warps, fn)
    return dict(spill=r.spill_bytes, shared=r.shared_bytes, fits_shared=r.shared_bytes <= sm90.H100_SHARED_BYTES,
                tensor=r.sass["HMMA"] + r.sass["HGMMA"], ffma=r.sass["FFMA"])

defaults = {str(case): compiled(*case, kernel.DEFAULT_PRECISION) for case in json.loads(sys.argv[2])}
precisions = {p: compiled(64, 4, True, p, (16, 4)) for p in kernel.PRECISIONS}
backwards = {"burgers_loss": compiled(32, 3, True, kernel.DEFAULT_PRECISION, fused_backward=True),
             "value_backward": compiled(32, 3, False, kernel.DEFAULT_PRECISION, spec=VALUE_ONLY, fused_backward=True)}
print(json.dumps(dict(defaults=defaults, precisions=precisions, backwards=backwards)))
"""


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", COMPILE, str(SCRIPT), json.dumps(DEFAULTS)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _fits(result):
    assert result["spill"] == 0, f"{result['spill']} B spilled per thread"
    assert result["fits_shared"], f"{result['shared']} B of shared memory"


@pytest.mark.parametrize("case", DEFAULTS)
def test_default_configuration_spills_nothing(case, compiled):
    _fits(compiled["defaults"][str(list(case))])


@pytest.mark.parametrize("kernel", ["burgers_loss", "value_backward"])
def test_fused_backward_at_the_default_width_spills_nothing(kernel, compiled):
    """The trainer's two fused backward launches (its residual loss, its data loss) for the default network (M3,
    width 32, depth 3), at the backward launch table's tile and warps."""
    _fits(compiled["backwards"][kernel])


def test_precision_reaches_the_tensor_cores(compiled):
    """tf32x3 issues three tensor-core products for each one of tf32; ieee none (plain FMAs). Same tile and
    warps for all three, so that only the precision differs."""
    counts = compiled["precisions"]
    assert counts["tf32"]["tensor"] > 0 and counts["tf32x3"]["tensor"] == 3 * counts["tf32"]["tensor"], counts
    assert counts["ieee"]["tensor"] == 0 and counts["ieee"]["ffma"] > counts["tf32"]["ffma"]
