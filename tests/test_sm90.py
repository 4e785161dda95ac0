"""What an H100 makes of the default kernel configurations, checked on the CPU: each compiles for sm_90a with the
launcher's own tile and warps, spills nothing, fits in shared memory, and `precision` reaches the hardware."""
import importlib.util
from pathlib import Path

import pytest

from pinnfast.burgers import FIRST, SECOND
from pinnfast.jets import JetSpec
from pinnfast.kernels import jets as kernel
from pinnfast.models import ModifiedMLP

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sm90_static.py"
_spec = importlib.util.spec_from_file_location("sm90_static", SCRIPT)
sm90 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sm90)
# (width, depth, fused Burgers): the trainer's default network, and the two benchmark configurations
DEFAULTS = [(32, 3, False), (32, 3, True), (64, 4, True), (128, 6, True)]


def _compile(width, depth, burgers, precision, tile_and_warps=None):
    meta = kernel.pack_weights(ModifiedMLP(3, 2, width, depth), JetSpec(FIRST, SECOND), "cpu")["meta"]
    block, warps = tile_and_warps or kernel.launch_config(meta, burgers, precision)
    return sm90.compile_sm90(dict(meta, BURGERS=burgers, PRECISION=precision, B=block), warps)


@pytest.mark.parametrize("width,depth,burgers", DEFAULTS)
def test_default_configuration_spills_nothing(width, depth, burgers):
    result = _compile(width, depth, burgers, kernel.DEFAULT_PRECISION)
    assert result.spill_bytes == 0, f"{result.spill_bytes} B spilled per thread ({result.registers} registers)"
    assert result.shared_bytes <= sm90.H100_SHARED_BYTES


def test_precision_reaches_the_tensor_cores():
    """tf32x3 issues three tensor-core products for each one of tf32; ieee none (plain FMAs). Same tile and
    warps for all three, so that only the precision differs."""
    counts = {p: _compile(64, 4, True, p, (16, 8)).sass for p in kernel.PRECISIONS}
    tensor = {p: c["HMMA"] + c["HGMMA"] for p, c in counts.items()}
    assert tensor["tf32"] > 0 and tensor["tf32x3"] == 3 * tensor["tf32"], tensor
    assert tensor["ieee"] == 0 and counts["ieee"]["FFMA"] > counts["tf32"]["FFMA"]
