"""Nothing starts at the answer: a recovery that starts ν within 10 % of the truth measures drift, not recovery.

Checked for every place that claims a recovery: the tests' recovery cases, `pinnfast reproduce burgers`, the
README's make-data/infer example and the default initial ν against the shipped example."""
import shlex
from pathlib import Path

import pytest

import pinnfast as pf
from helpers import RECOVERY_CASES
from pinnfast import reproduce

README = Path(__file__).resolve().parents[1] / "README.md"
SHIPPED_NU = 0.02  # the shipped example's true ν (pinnfast/data/burgers_nu0.02.npz)


def _far(nu_true, nu_init):
    return abs(nu_init - nu_true) / nu_true >= 0.10


@pytest.mark.parametrize("case", list(RECOVERY_CASES))
def test_recovery_tests_start_far_from_the_truth(case):
    assert _far(*RECOVERY_CASES[case]), case


def test_reproduce_starts_far_on_both_sides():
    starts = reproduce.BURGERS_STARTS
    assert all(_far(reproduce.BURGERS_NU, start) for start in starts)
    assert min(starts) < reproduce.BURGERS_NU < max(starts)


def test_default_start_is_far_from_the_shipped_example():
    assert pf.data.DEFAULT_DATA == f"burgers_nu{SHIPPED_NU}.npz"
    assert _far(SHIPPED_NU, pf.TrainConfig().nu_init)


def _readme_commands():
    """(command, {option: value or True}) for each `pinnfast ...` line of the README."""
    for line in README.read_text().splitlines():
        if line.startswith("pinnfast "):
            argv, options = shlex.split(line.split("#")[0]), {}
            for k, token in enumerate(argv):
                if token.startswith("--"):
                    following = argv[k + 1] if k + 1 < len(argv) else "--"
                    options[token] = True if following.startswith("--") else following
            yield argv[1], options


def test_readme_examples_start_far_from_the_truth():
    """Each `make-data --nu X --out F` example, and each `infer --data F` on it (default or --nu-init start)."""
    truths, checked = {}, 0
    for command, options in _readme_commands():
        if command == "make-data":
            truths[options["--out"]] = float(options["--nu"])
        elif command == "infer" and options.get("--data") in truths and "--resume" not in options:
            start = float(options.get("--nu-init", pf.TrainConfig().nu_init))
            assert _far(truths[options["--data"]], start), options
            checked += 1
    assert truths and checked, "the README lost its make-data/infer example"


def test_the_check_itself_catches_a_start_at_the_answer():
    assert not _far(0.05, 0.05) and not _far(0.05, 0.054) and _far(0.05, 0.01)
