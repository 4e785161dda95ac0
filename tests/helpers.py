"""Shared test helpers: random models and points, and the check that no run starts at the answer."""
import torch

from pinnfast.data import DEFAULT_DATA_NU as SHIPPED_NU  # the true ν of the shipped example

# A tiny Burgers run (config fields): a loose tol, so that ν's jitter over these few steps neither extends the run
# nor warns; the tests of those behaviours set their own.
SMALL = dict(width=8, depth=1, n_collocation=32, batch_size=16, checkpoint_every=10, nu_warmup=5, average_last=10,
             tol=0.5)


def run_cli(argv, capsys):
    """``pinnfast`` in this process: (exit code, stdout, stderr)."""
    from pinnfast.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def start_at_the_answer(config, truths):
    """The true ν among ``truths`` that a Burgers ``config`` starts within 10 % of, or None."""
    if config.problem != "burgers":
        return None
    return next((nu for nu in sorted(truths) if abs(config.nu_init - nu) / nu < 0.10), None)


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
