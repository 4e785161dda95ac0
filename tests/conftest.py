"""Test set-up: Triton kernels run under the interpreter on CPU tensors, and every check draws fresh inputs."""
import os
import random

os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede any triton import

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def rng(request):
    """A torch generator with a fresh seed per test; the seed is printed so that a failure can be replayed."""
    seed = int(os.environ.get("PINNFAST_TEST_SEED", random.SystemRandom().randrange(2**31)))
    print(f"{request.node.name}: seed {seed} (PINNFAST_TEST_SEED={seed} replays it)")
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()
