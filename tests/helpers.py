"""Shared test helpers: random models and points, and the ν-recovery cases the tests run."""
import torch

# Every test that checks ν recovery takes its (true ν, initial ν) from here, so that one test can check that none
# of them starts at the answer (tests/test_no_start_at_answer.py).
RECOVERY_CASES = {"short run on the shipped example": (0.02, 0.05)}


def random_model(kind, in_dim, out_dim, width, depth, with_domain, generator, dtype=torch.float64):
    """A model with random (non-zero) biases too, optionally with a random domain box."""
    domain = None
    if with_domain:
        lo = torch.rand(in_dim, generator=generator) * 4 - 2
        domain = (lo, lo + 0.5 + torch.rand(in_dim, generator=generator) * 3)
    model = kind(in_dim, out_dim, width, depth, domain=domain)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return model.to(dtype)


def random_points(model, n, generator, dtype=torch.float64):
    """Points spread over the model's domain (or [-1, 1] without one)."""
    unit = torch.rand(n, model.in_dim, generator=generator, dtype=torch.float64) * 2 - 1
    return ((unit - model.in_shift.double()) / model.in_scale.double()).to(dtype)
