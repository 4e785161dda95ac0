"""The golden runs (tests/golden.py) against their recordings, within tolerances that another machine's BLAS
allows: the step column, the headers, the keys and every non-float value exactly, floats to ``RTOL``, the random
streams bit for bit. A resumed run equals its uninterrupted one exactly (the same launch, run twice). The two-rank
case is checked in tests/test_distributed.py, on the run that its tests share."""
import math
import re

import numpy as np
import pytest

import golden
import pinnfast as pf

RTOL = 1e-4  # of a float: a metric, a result, a tensor's sum (against its norm) or norm
SIGMA_RTOL = 1e-3  # the jackknife error bars: a least-squares fit per sub-box


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Each case's outputs, run once in this module (in ``run.folders[name]``)."""
    cache = {}

    def run(name):
        if name not in cache:
            run.folders[name] = tmp_path_factory.mktemp(name)
            cache[name] = golden.run_case(name, run.folders[name])
        return cache[name]
    run.folders = {}
    return run


def assert_matches(found, expected, where=""):
    """``found`` (a case's :func:`golden.outputs`) against ``expected`` (its recording), within the tolerances."""
    _metrics_match(found["metrics"], expected["metrics"], where)
    _close(found["result"], expected["result"], f"{where}result")
    _close(found["checkpoint"], expected["checkpoint"], f"{where}checkpoint")


def _metrics_match(found, expected, where):
    (found_header, *found_rows), (header, *rows) = found.splitlines(), expected.splitlines()
    assert found_header == header, where
    got, want = (np.array([[float(v) for v in row.split(",")] for row in table]) for table in (found_rows, rows))
    assert got.shape == want.shape, where
    names = header.split(",")
    assert np.array_equal(got[:, names.index("step")], want[:, names.index("step")]), where
    for k, name in enumerate(names):
        np.testing.assert_allclose(got[:, k], want[:, k], rtol=RTOL, atol=0, equal_nan=True, err_msg=where + name)


def _close(found, expected, where):
    if isinstance(expected, dict) and "sha256" in expected and "norm" in expected:  # a tensor
        assert (found["dtype"], found["shape"]) == (expected["dtype"], expected["shape"]), where
        if expected["dtype"] == "torch.uint8":  # a random stream's state
            assert found["sha256"] == expected["sha256"], where
        else:
            assert found["norm"] == pytest.approx(expected["norm"], rel=RTOL, abs=1e-12), where
            spread = RTOL * math.sqrt(math.prod(expected["shape"])) * expected["norm"]  # each element to RTOL
            assert found["sum"] == pytest.approx(expected["sum"], abs=spread + 1e-12), where
    elif isinstance(expected, dict):
        assert sorted(found) == sorted(expected), where
        for key in expected:
            _close(found[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(found) == len(expected), where
        for k, (have, want) in enumerate(zip(found, expected)):
            _close(have, want, f"{where}[{k}]")
    elif isinstance(expected, float) and not isinstance(found, bool):
        rel = SIGMA_RTOL if "sigma" in where or "error_samples" in where else RTOL
        assert found == pytest.approx(expected, rel=rel, abs=1e-12, nan_ok=True) or (
            math.isinf(found) and found == expected), where
    elif isinstance(expected, str) and "warning" in where:  # its numbers are rounded: compare the words
        assert _words(found) == _words(expected), where
    else:
        assert found == expected, where


def _words(text):
    return re.sub(r"[-+]?\d[\d.]*(e[-+]?\d+)?", "#", text)


@pytest.mark.parametrize("name", [name for name in golden.CASES if name not in ("two_ranks", "compiled")])
def test_a_golden_run_repeats_its_recording(name, ran):
    assert_matches(ran(name), golden.recorded(name), f"{name}: ")


@pytest.mark.skipif(not pf.trainer.cpp_compiler_found(), reason="no C++ compiler for inductor")
def test_the_compiled_golden_run_repeats_its_recording(ran):
    """Inductor's kernels for the default network's sizes (cached by then: tests/test_trainer.py compiles them)."""
    assert_matches(ran("compiled"), golden.recorded("compiled"), "compiled: ")


def test_a_resumed_run_equals_the_uninterrupted_one_exactly(ran):
    resumed, straight = ran("resumed"), ran("m4")
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["checkpoint"] == straight["checkpoint"]


def test_a_settled_run_ends_at_a_check_and_a_resume_finds_it_finished(ran):
    result = ran("early_settle")["result"]
    assert result["steps"] == result["target_steps"] == 500  # the first check (min_steps), of a 2000-step target
    resumed = pf.Trainer.resume(golden.observations(), ran.folders["early_settle"], "cpu")
    assert resumed.finished and resumed.run(progress=False)["nu"] == result["nu"]
