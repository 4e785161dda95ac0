"""Test set-up: Triton kernels run under the interpreter on CPU tensors, and every check draws fresh inputs."""
import os
import random
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede any triton import

import pytest  # noqa: E402
import torch  # noqa: E402

import pinnfast  # noqa: E402
from pinnfast import burgers, checkpoint, commands, data, reproduce, trainer  # noqa: E402
from helpers import SHIPPED_NU, start_at_the_answer  # noqa: E402


@pytest.fixture
def rng(request):
    """A torch generator with a fresh seed per test; the seed is printed so that a failure can be replayed."""
    seed = int(os.environ.get("PINNFAST_TEST_SEED", random.SystemRandom().randrange(2**31)))
    print(f"{request.node.name}: seed {seed} (PINNFAST_TEST_SEED={seed} replays it)")
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


@pytest.fixture(autouse=True)
def no_start_at_the_answer(monkeypatch):
    """Nothing starts at the answer: any Burgers run a test starts (Python or CLI, in this process) fails if ν
    starts within 10 % of the ν of data made or loaded in that test, so a recovery test cannot measure drift."""
    truths = set()

    def making(nu, *args, **kwargs):
        truths.add(float(nu))
        return burgers.make_observations(nu, *args, **kwargs)

    def loading(path, *args, **kwargs):
        if Path(path).resolve() == data.default_data_path().resolve():
            truths.add(SHIPPED_NU)
        return data.load_observations(path, *args, **kwargs)

    for module in (pinnfast, commands, reproduce):
        monkeypatch.setattr(module, "make_observations", making)
    for module in (pinnfast, commands, checkpoint):
        monkeypatch.setattr(module, "load_observations", loading)
    original = trainer.Trainer.__init__

    def init(self, observations, config, *args, **kwargs):
        near = start_at_the_answer(config, truths)
        assert near is None, f"a Burgers run starts at ν = {config.nu_init}, within 10 % of its data's ν = {near}"
        original(self, observations, config, *args, **kwargs)

    monkeypatch.setattr(trainer.Trainer, "__init__", init)
