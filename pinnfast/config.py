"""A run's configuration: :class:`TrainConfig`, its fields tagged by what they decide, and what it resolves to on
this machine (device, backend, compile) and builds (the problem).

Each field's ``group`` says what a resume may do with it: ``run`` fields define the run and must match its
checkpoint; ``target`` (``steps``) may be raised; ``stopping`` fields say when to write, warn and stop, and a
resume may change them. A ``run`` field's ``flag`` is its command-line option (None: no option).
"""
import dataclasses
import importlib.util
import os
import shutil

import numpy as np
import torch

from .burgers import BurgersInverse
from .data import check_spread
from .distributed import local_device
from .errors import PinnfastError
from .limits import check_viscosity
from .models import MLP, ModifiedMLP
from .pde import PDE
from .problems import Helmholtz, KleinGordon, PDEProblem

MODELS = {  # name: (network class, annealing)
    "m1": (MLP, False),
    "m2": (MLP, True),
    "m3": (ModifiedMLP, False),
    "m4": (ModifiedMLP, True),
}
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "torch", "triton")
DTYPES = ("float32", "float64")  # float64: the torch backend only (the kernels compute in float32)
TRITON_MAX_WIDTH = 128  # the fused kernels' widest network
PROBLEMS = ("burgers", "helmholtz", "klein-gordon")
# The built-in problems' (inputs, outputs, loss terms besides the residual), for the memory estimate of limits.py.
PROBLEM_SHAPES = {"burgers": (3, 2, 1), "helmholtz": (2, 1, 1), "klein-gordon": (2, 1, 2)}
# compile="auto" compiles runs whose target is at least this many steps. On the 2-core CPU a compile saves about
# 3.5 ms of a default step's 6.2 and costs about 25 s the first time (paid back after about 7000 steps), 3 s once
# torch has cached it (after about 1000): BENCHMARKS.md
COMPILE_MIN_STEPS = 5000
GROUPS = ("run", "target", "stopping")


def _run(default, flag=None):
    """A field that defines the run (a resume must match it); ``flag``: its command-line option."""
    return dataclasses.field(default=default, metadata={"group": "run", "flag": flag})


def _stopping(default):
    """A field that says when to write, warn and stop (a resume may change it)."""
    return dataclasses.field(default=default, metadata={"group": "stopping"})


def fields_in(group):
    """The names of :class:`TrainConfig`'s fields of ``group``, in order."""
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}; one of {', '.join(GROUPS)}")
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["group"] == group)


def run_flags():
    """``{flag: field}`` of the fields that define a run and have a command-line option, in field order."""
    return {f.metadata["flag"]: f.name for f in dataclasses.fields(TrainConfig)
            if f.metadata["group"] == "run" and f.metadata["flag"]}


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; saved in the checkpoint so that ``resume`` continues the same run.

    Defaults were tuned on the regime sweep of BENCHMARKS.md: a small network (width 32, 3 gate layers), 512
    collocation points and 512 observations per step, Adam at ``lr`` 3e-3 (three times the paper's 1e-3: ν reaches
    1 % in a third of the steps and smooth fields come out 2–5 % closer) decayed by ``decay_rate`` every
    ``decay_steps``. ν (as log ν) has its own learning rate and Adam β2 = 0.99, and is held at ``nu_init`` for the
    first ``nu_warmup`` steps: otherwise the large residual gradients of the untrained network fill Adam's second
    moment and ν barely moves for thousands of steps. The reported ν is the mean over the last ``average_last``
    steps after the warm-up (iterate averaging): the stochastic updates make the last iterate jitter by about
    ±0.3 %; the final iterate is reported too, as ``nu_last``.

    When the run ends: at ``steps`` (a target), or earlier — from ``min_steps`` on, every 500 steps — once ν has
    settled (it moved by at most ``DRIFT_FRACTION × tol`` over the second half of the run and the data loss no
    longer falls; ``stop_when_settled=False`` trains exactly ``steps``); ``lbfgs_steps`` > 0 adds an L-BFGS finish
    on a fixed batch. ``compile`` runs the losses (forward and backward) through ``torch.compile`` (torch backend):
    about half the time per step on a CPU, after a first compile of about half a minute on 2 cores (seconds once
    torch's on-disk cache holds it); where the compiler is missing or fails, the run goes on uncompiled, with a
    warning. ``"auto"`` (the command line's default) decides by :func:`resolve_compile`.
    ``cuda_graphs`` (CUDA, one process, triton backend) replays each kind of step as a CUDA graph
    (:mod:`pinnfast.graphs`) after the ν warm-up; Adam then runs ``capturable``, with the learning rates as device
    tensors, so its results differ from an eager run's in the last bits (a resumed graph run repeats its
    uninterrupted run).

    ``ensemble`` = K > 1 trains K independently initialised networks, each with its own ν, collocation points and
    observation batches (``bootstrap``: each from its own resample of the observations), as one batched model; ν
    is then reported as the members' mean. Every
    run reports ν's error bar ``nu_sigma``: how much the sub-boxes of the domain disagree on ν (a jackknife,
    :mod:`pinnfast.uncertainty`), with an ensemble's spread. ``tol`` is the relative accuracy asked of ν: an
    error bar or a spread larger than ``tol``, or a drift of ν between the halves of its averaging window larger
    than ``DRIFT_FRACTION × tol``, gives the warning that ν is not identified well by these data. A run whose ν
    still moves by the settle check's measure at ``steps`` (more than ``DRIFT_FRACTION × tol`` between the
    quarters of the run's second half) goes on, its target raised by half at a time, until ν settles or
    ``max_steps`` (default 3 × ``steps``) is reached (then the warning says that the cap ended the run while ν
    moved): in the regime sweep, runs that ended at the target more than 0.2 % off were all still creeping towards
    the truth. ``keep_checkpoints`` lists steps whose
    checkpoints are kept (``checkpoints/step_<n>.pt``; 0 = the initial network) for ``pinnfast diagnose``.
    """

    problem: str = _run("burgers")
    steps: int = dataclasses.field(default=10000, metadata={"group": "target"})
    model: str = _run("m4", "--model")
    seed: int = _run(0, "--seed")
    nu_init: float = _run(0.05, "--nu-init")
    width: int = _run(32, "--width")
    depth: int = _run(3, "--depth")
    n_collocation: int = _run(512, "--collocation")
    batch_size: int = _run(512, "--batch-size")
    ensemble: int = _run(1, "--ensemble")
    anneal_weighted: bool = _run(False, "--anneal-weighted")
    dtype: str = _run("float32", "--float64")
    lbfgs_steps: int = _run(0, "--lbfgs-steps")
    compile: bool | str = _run(False, "--compile")  # True, False or "auto"
    cuda_graphs: bool = _run(False, "--cuda-graphs")
    bootstrap: bool = _run(False, "--bootstrap")
    lr: float = _run(3e-3, "--lr")
    nu_lr: float = _run(1e-2, "--nu-lr")
    decay_rate: float = _run(0.9, "--decay-rate")
    decay_steps: int = _run(1000, "--decay-steps")
    nu_warmup: int = _run(200, "--nu-warmup")
    average_last: int = _run(1000, "--average-last")
    anneal_period: int = _run(10, "--anneal-period")
    anneal_alpha: float = _run(0.1, "--anneal-alpha")
    anneal_grads: str = _run("all", "--anneal-grads")
    anneal_mean: str = _run("global", "--anneal-mean")
    backend: str = _run("auto", "--backend")
    nu_beta2: float = _run(0.99)
    box: tuple = _run(None)
    checkpoint_every: int = _stopping(100)
    tol: float = _stopping(0.01)
    max_steps: int = _stopping(None)
    min_steps: int = _stopping(3000)
    stop_when_settled: bool = _stopping(True)
    keep_checkpoints: tuple = _stopping(())

    def validate(self):
        if self.model not in MODELS:
            raise PinnfastError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if not self.nu_init > 0:
            raise PinnfastError(f"--nu-init must be positive, got {self.nu_init}")
        for name in ("steps", "width", "depth", "n_collocation", "batch_size", "checkpoint_every", "decay_steps",
                     "average_last", "ensemble", "min_steps"):
            if getattr(self, name) < 1:
                raise PinnfastError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.nu_warmup < 0:
            raise PinnfastError(f"nu_warmup must be >= 0, got {self.nu_warmup}")
        if self.lbfgs_steps < 0:
            raise PinnfastError(f"lbfgs_steps must be >= 0, got {self.lbfgs_steps}")
        if self.max_steps is not None and self.max_steps < self.steps:
            raise PinnfastError(f"max_steps ({self.max_steps}) must be at least steps ({self.steps})")
        bad = [step for step in self.keep_checkpoints if not (int(step) == step and step >= 0)]
        if bad:
            raise PinnfastError(f"keep_checkpoints: steps must be integers >= 0, got {bad[0]!r}")
        if not 0 < self.tol < 1:
            raise PinnfastError(f"tol must be between 0 and 1 (a relative accuracy), got {self.tol}")
        if self.backend not in BACKENDS:
            raise PinnfastError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.dtype not in DTYPES:
            raise PinnfastError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.bootstrap and self.ensemble < 2:
            raise PinnfastError("--bootstrap resamples the observations of an ensemble's members: use it with "
                                "--ensemble K (K >= 2)")
        if self.compile not in (True, False, "auto"):
            raise PinnfastError(f"compile must be True, False or 'auto', got {self.compile!r}")
        if self.cuda_graphs and self.compile is True:
            raise PinnfastError("--cuda-graphs and --compile exclude each other: use one of them")

    @property
    def members(self):
        """The network's member count: None for a single network."""
        return self.ensemble if self.ensemble > 1 else None


def resolve_device(device):
    """``auto`` → CUDA when present, otherwise CPU with a one-line note."""
    if device not in DEVICES:
        raise PinnfastError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise PinnfastError("--device cuda asked for, but torch sees no CUDA GPU")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            print("pinnfast: no GPU found, running on the CPU")
    return local_device(torch.device(device))


def resolve_compile(config, device, world=1):
    """``compile="auto"`` → True where compiling is expected to pay: a CPU (where it halves the step; on a GPU the
    fused kernels run), one process, the torch backend's float32 Burgers network (its losses are tested to trace as
    one graph), a target of at least ``COMPILE_MIN_STEPS`` steps, and inductor's C++ compiler on the PATH; False
    otherwise. True and False stand as given."""
    if config.compile != "auto":
        return config.compile
    return (device.type == "cpu" and world == 1 and config.backend in ("auto", "torch")
            and config.problem == "burgers" and config.dtype == "float32" and config.members is None
            and config.steps >= COMPILE_MIN_STEPS and cpp_compiler_found())


def cpp_compiler_found():
    """Whether a C++ compiler that inductor would call (``cpp.cxx`` of its config: ``$CXX``, else g++, clang++ on
    macOS) is on the PATH; its config is imported here (about 2 s), only when a run may compile."""
    from torch._inductor import config as inductor

    return any(shutil.which(name) for name in inductor.cpp.cxx if name)


def resolve_backend(config, device):
    """``auto`` → the fused Triton kernels on CUDA (width <= 128, float32, triton installed; an ensemble as one
    batched launch), torch otherwise; ``triton`` where it cannot run → one clear error."""
    if config.backend == "auto":
        usable = (device.type == "cuda" and config.width <= TRITON_MAX_WIDTH and config.dtype == "float32"
                  and config.compile is not True and importlib.util.find_spec("triton") is not None)
        return "triton" if usable else "torch"
    if config.backend == "triton":
        if config.dtype != "float32":
            raise PinnfastError(f"--backend triton computes in float32; use --backend torch (or auto) with "
                                f"{config.dtype}")
        if config.compile is True:
            raise PinnfastError("--compile compiles the torch backend's losses, and the triton backend's kernels "
                                "are fused already: use --backend triton or --compile with --backend torch (or auto)")
        if config.width > TRITON_MAX_WIDTH:
            raise PinnfastError(f"--backend triton supports width <= {TRITON_MAX_WIDTH}, got {config.width}")
        if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise PinnfastError("--backend triton needs a CUDA GPU (on the CPU it runs only under the Triton "
                                "interpreter, TRITON_INTERPRET=1: slow, for tests); use --backend torch or auto")
    return config.backend


def build_problem(config, observations=None, source="observations"):
    """The problem of a run: a declared :class:`~pinnfast.pde.PDE` (``observations``), or the built-in one
    ``config.problem`` names; Burgers takes its validated observations (and, without ``config.box``, its box) from
    ``observations`` (``source`` names them in messages)."""
    network_class = MODELS[config.model][0]
    if isinstance(observations, PDE):
        network = network_class(observations.in_dim, observations.out_dim, config.width, config.depth,
                                domain=observations.box, members=config.members)
        return PDEProblem(observations, network, config.n_collocation, config.batch_size, _resampling(config))
    if config.problem not in PROBLEMS:
        raise PinnfastError(f"unknown problem {config.problem!r}; choose one of {', '.join(PROBLEMS)}, or pass a "
                            "pinnfast.PDE")
    if config.problem == "helmholtz":
        return Helmholtz(network_class(2, 1, config.width, config.depth, domain=((-1, -1), (1, 1))),
                         config.n_collocation)
    if config.problem == "klein-gordon":
        return KleinGordon(network_class(2, 1, config.width, config.depth, domain=((0, 0), (1, 1))),
                           config.n_collocation)
    if observations is None:  # a trained Burgers network for evaluation: the domain comes with its state
        return BurgersInverse(network_class(3, 2, config.width, config.depth, members=config.members),
                              config.nu_init)
    points = np.column_stack([observations[c] for c in ("x", "y", "t")])
    values = np.column_stack([observations[c] for c in ("u", "v")])
    if config.box is None:
        check_spread(observations, source)
        lo, hi = points.min(0), points.max(0)
    else:
        lo, hi = map(np.asarray, config.box)
        if not np.all(hi > lo):
            raise PinnfastError(f"the collocation box needs hi > lo in every coordinate, got lo={lo}, hi={hi}")
    check_viscosity(config.nu_init, lo, hi)  # before the network is allocated
    network = network_class(3, 2, config.width, config.depth, domain=(lo, hi), members=config.members)
    return BurgersInverse(network, config.nu_init, torch.tensor(points, dtype=torch.float32),
                          torch.tensor(values, dtype=torch.float32), (lo, hi), config.n_collocation,
                          config.batch_size, _resampling(config))


def _resampling(config):
    """The ensemble's bootstrap seed (the run's), or None: every member sees every observation."""
    return config.seed if config.bootstrap else None
