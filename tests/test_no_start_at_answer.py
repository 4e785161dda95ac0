"""Nothing starts at the answer: a recovery that starts ν within 10 % of the truth measures drift, not recovery.

Every Burgers run a test starts is checked by the autouse fixture ``no_start_at_the_answer`` (conftest.py); here:
the check itself, `pinnfast reproduce burgers`, the README's make-data/infer example and the default initial ν
against the shipped example."""
import shlex
from pathlib import Path

import pytest

import pinnfast as pf
from helpers import SHIPPED_NU, start_at_the_answer
from pinnfast import reproduce

README = Path(__file__).resolve().parents[1] / "README.md"


def _far(nu_true, nu_init):
    return start_at_the_answer(pf.TrainConfig(nu_init=nu_init), {nu_true}) is None


def test_the_check_catches_a_start_at_the_answer():
    assert not _far(0.05, 0.05) and not _far(0.05, 0.054) and not _far(0.05, 0.046)
    assert _far(0.05, 0.056) and _far(0.05, 0.01) and _far(0.05, 0.2)
    assert start_at_the_answer(pf.TrainConfig(problem="helmholtz", nu_init=0.05), {0.05}) is None


def test_a_test_that_starts_at_the_answer_fails(tmp_path):
    """The fixture refuses the run that the old `reproduce burgers` made: ν = 0.05 data, ν started at 0.05."""
    observations = pf.make_observations(0.05, 40, seed=0)
    with pytest.raises(AssertionError, match="within 10 % of its data's ν = 0.05"):
        pf.Trainer(observations, pf.TrainConfig(steps=1), tmp_path, "cpu")


def test_reproduce_starts_far_on_both_sides():
    starts = reproduce.BURGERS_STARTS
    assert all(_far(reproduce.BURGERS_NU, start) for start in starts)
    assert min(starts) < reproduce.BURGERS_NU < max(starts)


def test_default_start_is_far_from_the_shipped_example():
    assert pf.data.DEFAULT_DATA == f"burgers_nu{SHIPPED_NU}.npz"
    assert _far(SHIPPED_NU, pf.TrainConfig().nu_init)


def _readme_commands():
    """(command, {option: value or True}) for each `pinnfast ...` command in the README, wherever it stands."""
    for line in README.read_text().splitlines():
        command = line[line.find("pinnfast "):] if "pinnfast " in line else ""
        argv = shlex.split(command.split("#")[0].split("`")[0].split("&&")[0]) if command else []
        if len(argv) < 2 or argv[1] not in ("make-data", "infer"):
            continue
        options = {}
        for k, token in enumerate(argv):
            if token.startswith("--"):
                following = argv[k + 1] if k + 1 < len(argv) else "--"
                options[token] = True if following.startswith("--") else following
        yield argv[1], options


def test_readme_examples_start_far_from_the_truth():
    """Each `make-data --nu X --out F`, and each `infer` on F (default or --nu-init start); `infer` without
    --data runs on the shipped example."""
    truths, checked = {}, 0
    for command, options in _readme_commands():
        if command == "make-data":
            truths[options["--out"]] = float(options["--nu"])
        elif command == "infer" and "--resume" not in options:
            truth = truths.get(options.get("--data"), SHIPPED_NU if "--data" not in options else None)
            if truth is not None:
                assert _far(truth, float(options.get("--nu-init", pf.TrainConfig().nu_init))), options
                checked += 1
    assert len(truths) >= 1 and checked >= 2, "the README lost its make-data/infer examples"
