"""Training: M1–M4 on any :class:`~pinnfast.problems.Problem`, Adam with exponential decay, checkpoints, resume.

The problem is a user's :class:`~pinnfast.pde.PDE`, or one built in by name: the 2D Burgers inverse problem (the
default), or the paper's forward problems ``helmholtz`` and ``klein-gordon``. Each step the problem draws a fresh
batch (collocation, boundary, observation points) from one seeded generator, so a run resumed from a checkpoint
repeats the uninterrupted run exactly.
Under torchrun the run is data-parallel (:mod:`pinnfast.distributed`): each rank draws its own batch from its own
stream, gradients are averaged over the ranks, and rank 0 writes the run folder.
Metrics stay on the device and reach the host (CSV, NaN check, checkpoint) every ``checkpoint_every`` steps; with
annealing (M2, M4) they include the imbalance ratio max|∇L_r| / mean|∇L_i| at every annealing step (nan between).
Checkpoints at the ``keep_checkpoints`` steps are kept apart, for ``pinnfast diagnose``.
"""
import contextlib
import dataclasses
import importlib.util
import math
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ._version import __version__
from .annealing import Annealing, FixedWeights
from .burgers import BurgersInverse
from .data import check_spread, load_observations, observations_sha256, validate_observations
from .distributed import Ranks, local_device
from .errors import PinnfastError, PinnfastWarning
from .graphs import StepGraphs
from .models import MLP, ModifiedMLP, domain_box
from .pde import PDE, from_factory, symbol
from .problems import Helmholtz, KleinGordon, PDEProblem
from .runfolder import (CHECKPOINT, RESULT, append_metrics, claim_empty, cut_metrics_at, load_checkpoint,
                        metrics_header, metrics_table, read_result, save_checkpoint)
from .uncertainty import subdomain_jackknife

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
DRIFT_FRACTION = 0.25  # ν "still moves" when its drift (between two spans of steps) exceeds this fraction of tol
LBFGS_COLLOCATION = 4  # the L-BFGS batch: this many times n_collocation points, fixed
LBFGS_CSV = "lbfgs.csv"
SETTLE_EVERY = 500  # steps between the checks of whether a run has settled (each reads the metrics back)
ERROR_EVERY = 250  # steps between samples of ν's sub-box jackknife error (the error bar averages its window's)
LOSS_SETTLED = 0.9  # a data loss still falls when its median over the run's last quarter is below this × the one before
PROBLEMS = ("burgers", "helmholtz", "klein-gordon")
COMPILER = "inductor"  # torch.compile's backend for compile=True: fused C++ (CPU) or Triton (GPU) kernels
# compile="auto" compiles runs whose target is at least this many steps. On the 2-core CPU a compile saves about
# 3.5 ms of a default step's 6.2 and costs about 25 s the first time (paid back after about 7000 steps), 3 s once
# torch has cached it (after about 1000): BENCHMARKS.md
COMPILE_MIN_STEPS = 5000


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

    problem: str = "burgers"
    model: str = "m4"
    width: int = 32
    depth: int = 3
    steps: int = 10000
    lr: float = 3e-3
    nu_lr: float = 1e-2
    nu_beta2: float = 0.99
    nu_warmup: int = 200
    decay_rate: float = 0.9
    decay_steps: int = 1000
    n_collocation: int = 512
    batch_size: int = 512
    nu_init: float = 0.05
    seed: int = 0
    box: tuple = None
    anneal_period: int = 10
    anneal_alpha: float = 0.1
    anneal_grads: str = "all"
    anneal_mean: str = "global"
    anneal_weighted: bool = False
    checkpoint_every: int = 100
    average_last: int = 1000
    ensemble: int = 1
    tol: float = 0.01
    max_steps: int = None
    backend: str = "auto"
    keep_checkpoints: tuple = ()
    dtype: str = "float32"
    stop_when_settled: bool = True
    min_steps: int = 3000
    lbfgs_steps: int = 0
    compile: bool | str = False  # True, False or "auto"
    cuda_graphs: bool = False
    bootstrap: bool = False

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

    @classmethod
    def saved(cls, fields):
        """The config a checkpoint saved; fields added since then take their defaults, except ``bootstrap``: an
        ensemble saved before the option resampled its observations."""
        return cls(**{"bootstrap": fields.get("ensemble", 1) > 1, **fields})

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


class TrainingDiverged(PinnfastError):
    """A non-finite loss: training stopped, the last good checkpoint is kept."""


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
    network = network_class(3, 2, config.width, config.depth, domain=(lo, hi), members=config.members)
    return BurgersInverse(network, config.nu_init, torch.tensor(points, dtype=torch.float32),
                          torch.tensor(values, dtype=torch.float32), (lo, hi), config.n_collocation,
                          config.batch_size, _resampling(config))


def _resampling(config):
    """The ensemble's bootstrap seed (the run's), or None: every member sees every observation."""
    return config.seed if config.bootstrap else None


class Trainer:
    """Trains a problem and writes a run folder: a :class:`~pinnfast.pde.PDE` passed as ``observations``, or the
    built-in ``config.problem`` (Burgers: from observations ``{"x", "y", "t", "u", "v"}``).

    ``data_path`` (and the ``columns`` mapping it was read with) is recorded in the checkpoint with a hash of the
    observations (a PDE's: of its conditions' points and values), so that a resume finds the run's own data and
    refuses any other. A new run needs a missing or empty ``out_dir``; ``overwrite`` removes a previous run first.
    ``nu_true`` (synthetic data) adds the error of ν to the result (a PDE's unknowns: their ``true`` values); it
    is kept with the run but does not change the training.
    """

    def __init__(self, observations, config, out_dir, device="auto", *, data_path=None, columns=None,
                 overwrite=False, nu_true=None):
        config = dataclasses.replace(config)  # the run's own copy: its target may grow (max_steps)
        declared = isinstance(observations, PDE)
        if declared:
            if observations.name in PROBLEMS:  # a resume would take it for the built-in one
                raise PinnfastError(f"the name {observations.name!r} is a built-in problem's; give your PDE another "
                                    "name")
            config.problem = observations.name
        config.validate()
        if config.max_steps is None:
            config.max_steps = 3 * config.steps  # fixed now: the target grows when ν is still moving
        self.config, self.out_dir, self.device = config, Path(out_dir), resolve_device(device)
        self.overwrite, self.nu_true = overwrite, nu_true
        self.ranks = Ranks()
        config.compile = resolve_compile(config, self.device, self.ranks.world)
        torch.manual_seed(config.seed)
        source = str(data_path) if data_path is not None else "observations"
        self.data = None
        path = None if data_path is None else str(Path(data_path).resolve())
        if declared:
            self.data = {"path": path, "columns": columns, "sha256": observations.data_sha256(),
                         "factory": observations.factory}
        elif config.problem == "burgers":  # checked as the CLI checks a file, whoever passes them
            observations = validate_observations(observations, source)
            self.data = {"path": path, "columns": columns, "sha256": observations_sha256(observations)}
        self.problem = build_problem(config, observations, source).to(self.device, getattr(torch, config.dtype))
        self.problem.backend = self.backend = resolve_backend(config, self.device)
        self._losses = None if config.compile else self.problem.losses  # compiled at the first step
        self.named_params = list(self.problem.network.named_parameters())
        self.physical = self.problem.physical()
        if config.members is not None and not self.physical:
            raise PinnfastError(f"an ensemble (ensemble={config.ensemble}) measures how well the data determine "
                                f"learned unknowns; {config.problem} has none")
        self.unknowns = self.problem.pde.unknowns
        self.params = [p for _, p in self.named_params] + self.physical
        groups = [{"params": [p for _, p in self.named_params], "lr": config.lr}]
        groups += [dict(group, betas=(0.9, config.nu_beta2)) for group in self.problem.physical_groups(config.nu_lr)]
        # A new run on the CPU: fused=True, one pass over every tensor, 0.13 ms per update of the default network
        # against 0.48 for foreach (one operation per kind over every tensor). torch 2.13's fused CPU Adam reads a
        # gradient as if it were contiguous, so an annealing step hands it contiguous ones (autograd.grad gives
        # transposed views for some weights). On a GPU foreach, as the GPU runs measured it (capturable for the
        # CUDA graphs). A resumed run keeps the setting its checkpoint's optimiser state was saved with.
        fused = self.device.type == "cpu"
        self.optimizer = torch.optim.Adam(groups, foreach=not fused, fused=fused, capturable=config.cuda_graphs)
        self.gamma = config.decay_rate ** (1.0 / config.decay_steps)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, self.gamma)  # eager runs
        n_terms = len(self.problem.term_names)
        if MODELS[config.model][1]:
            self.weights = Annealing(n_terms, self.device, config.anneal_period, config.anneal_alpha,
                                     config.anneal_grads, config.anneal_mean, config.anneal_weighted,
                                     members=config.members)
            self.selected = self.weights.selected(self.named_params)
        else:
            self.weights = FixedWeights(n_terms, self.device, members=config.members)
        self.generator = torch.Generator(self.device).manual_seed(self.ranks.seed(config.seed))
        self.step, self.seconds, self.checkpoint_step, self.lbfgs_done = 0, 0.0, None, False
        self.compile_seconds = 0.0  # of ``seconds``: torch.compile's first call (every compile of a resumed run)
        self.graphs = self._graphs() if config.cuda_graphs else None
        self.error_samples = []  # [step, {unknown: [jackknife standard error per member]}], rank 0's
        names = self.problem.term_names
        self.imbalance_names = [f"imbalance_{n}" for n in names] if MODELS[config.model][1] else []
        self.metric_names = ["step", "loss", "loss_r", *(f"loss_{n}" for n in names),
                             *(f"lambda_{n}" for n in names), *self.imbalance_names, *self.problem.logged(), "lr"]

    # ----------------------------------------------------------------- one step
    def train_step(self):
        """One optimiser step; returns the step's metrics (device tensor, no host sync) and the learning rate (a
        float; a device tensor with ``cuda_graphs``)."""
        annealing, holding = self.weights.due(self.step), self.step < self.config.nu_warmup
        replay = self.graphs is not None and not holding
        metrics = self.graphs(annealing) if replay else self._step(annealing, holding)
        self.step += 1
        return metrics

    def _step(self, annealing, holding=False):
        """The step's work, all of it on the device (what the CUDA graphs capture, after the hold): an annealing step
        or a plain one; ``holding``: the physical parameters wait (ν's warm-up)."""
        if self._losses is None:
            self._losses = self._compiled_losses()
        loss_r, terms = self._losses(self.problem.sample(self.generator))
        terms = torch.stack(terms)  # (terms,), or (terms, members) for an ensemble
        lam = self.weights.lambdas
        imbalance = torch.full_like(lam, math.nan)  # known at annealing steps only
        if annealing:
            imbalance = self._annealed_gradients(loss_r, terms)
        else:
            (loss_r.sum() + (lam * terms).sum()).backward()  # members are independent: one backward for all
            self.ranks.average([p.grad for p in self.params])
        if holding:
            for p in self.physical:
                p.grad = None  # physical parameters wait until the network has roughly fitted the data
        lr = self._learning_rate()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._advance_learning_rate()
        loss = loss_r.detach() + (lam * terms.detach()).sum(0)
        losses = torch.cat([torch.stack([loss, loss_r.detach()]), terms.detach(), lam.clone(),
                            *([imbalance] if self.imbalance_names else [])])
        if self.config.members is not None:
            losses = losses.mean(-1)  # the members' mean; each member's ν is logged apart
        logged = [value.reshape(1) for value in self.problem.logged().values()]
        return torch.cat([losses, *logged]), lr

    def _learning_rate(self):
        """This step's learning rate of the network: the scheduler's; with ``cuda_graphs`` every group's is set on
        the device to its base × γ^step (γ = decay_rate^(1/decay_steps)) from the device's step count, and the
        network's is returned in float64, as the metrics log it."""
        if not self.config.cuda_graphs:
            return self.scheduler.get_last_lr()[0]
        decay = torch.pow(self.gamma, self.steps_done)
        rates = [decay * base for base in self.scheduler.base_lrs]
        for group, rate in zip(self.optimizer.param_groups, rates):
            group["lr"].copy_(rate)
        return rates[0]

    def _advance_learning_rate(self):
        if not self.config.cuda_graphs:
            self.scheduler.step()
        else:
            self.steps_done += 1

    def _graphs(self):
        """Graph mode: the learning rates as device tensors and the step count they follow, and the graphs."""
        if self.device.type != "cuda":
            raise PinnfastError(f"--cuda-graphs needs a CUDA GPU; this run is on {self.device.type}")
        if self.ranks.world > 1:
            raise PinnfastError("--cuda-graphs runs in one process; leave out --nproc (torchrun)")
        if self.backend != "triton":  # the torch path indexes with host lists: copies a capture cannot hold
            raise PinnfastError("--cuda-graphs replays the fused kernels' step: it needs the triton backend (the "
                                "default on a GPU for float32 networks of width <= 128), not torch")
        self._device_learning_rates()
        return StepGraphs(self._step, self._mutable_tensors, self.generator, self._forget_packed_weights)

    def _device_learning_rates(self):
        """Each group's learning rate as a device tensor (what capturable Adam reads inside a graph), and the device
        step count they are set from; again after a resume, whose optimiser state comes from the host."""
        self.steps_done = torch.tensor(float(self.step), dtype=torch.float64, device=self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = torch.zeros((), dtype=torch.float32, device=self.device)

    def _mutable_tensors(self):
        """Every tensor a step changes: the parameters, λ, the learning rates and their step count, Adam's state."""
        optimizer_state = [value for state in self.optimizer.state.values() for value in state.values()
                           if torch.is_tensor(value)]
        return [*self.params, self.weights.lambdas, self.steps_done,
                *(group["lr"] for group in self.optimizer.param_groups), *optimizer_state]

    def _forget_packed_weights(self):
        """After a graph replay: the fused kernels' cached packed weights are stale (a replay updates the
        parameters without changing their versions; graph mode runs on the triton backend)."""
        from .kernels import forget_packed_weights

        forget_packed_weights(self.problem.network)

    def _compiled_losses(self):
        """``problem.losses`` through ``torch.compile``, compiled here on one batch (forward and backward: where the
        compiler does its work) drawn without advancing the run's random stream, timed in ``compile_seconds``
        (unless it fails); on any failure of the compiler (no C++ compiler, an operation it cannot lower) the
        uncompiled losses, with a warning."""
        state, donating = self.generator.get_state(), torch._functorch.config.donated_buffer
        started = time.perf_counter()
        try:
            # An annealing step runs several reverse passes through one graph (retain_graph), which torch forbids
            # for backward graphs that reuse ("donate") their saved buffers; it checks the setting at every backward
            # pass, so it is off for the process (it saves memory only; the numbers are the same).
            torch._functorch.config.donated_buffer = False
            compiled = torch.compile(self.problem.losses, backend=COMPILER, dynamic=False)
            loss_r, terms = compiled(self.problem.sample(self.generator))
            torch.autograd.grad(loss_r.sum() + sum(term.sum() for term in terms), self.params, allow_unused=True)
        except Exception as failure:  # the compiler's failures come as many exception types
            torch._functorch.config.donated_buffer = donating
            self.config.compile = False  # what the run does, as its checkpoints and result.json say
            warnings.warn(f"torch.compile failed ({type(failure).__name__}: {str(failure).strip()[:200]}); "
                          "training uncompiled (--no-compile skips the attempt)", PinnfastWarning, stacklevel=2)
            return self.problem.losses
        finally:
            self.generator.set_state(state)
        self.compile_seconds += time.perf_counter() - started
        return compiled

    def _annealed_gradients(self, loss_r, terms):
        """∇L_r and each ∇L_i by separate reverse passes: they feed Algorithm 1 and then form
        ∇L = ∇L_r + Σ λ_i ∇L_i without a further pass. With several ranks both are averaged over the ranks first,
        so that λ is that of the union of their batches, the same on every rank. Returns the imbalance ratio of
        Algorithm 1."""
        params = self.params
        grad_r = _grads(loss_r.sum(), params, retain_graph=True)
        grad_terms = [_grads(term.sum(), params, retain_graph=k + 1 < len(terms)) for k, term in enumerate(terms)]
        self.ranks.average([*grad_r, *(g for grads in grad_terms for g in grads)])
        imbalance = self.weights.update([grad_r[k] for k in self.selected],
                                        [[grads[k] for k in self.selected] for grads in grad_terms])
        lam = self.weights.lambdas
        contiguous = self.optimizer.defaults["fused"]  # the layout fused Adam reads
        for k, p in enumerate(params):
            grad = grad_r[k] + sum(_per_member(lam[i], grads[k]) * grads[k] for i, grads in enumerate(grad_terms))
            p.grad = grad.contiguous() if contiguous else grad
        return imbalance

    # ----------------------------------------------------------------- the run
    @property
    def finished(self):
        return self.step >= self.config.steps and (self.config.lbfgs_steps == 0 or self.lbfgs_done)

    def run(self, progress=True):
        """Train up to ``config.steps``, checkpointing; returns :meth:`result`. A finished run writes nothing."""
        if self.finished:
            return self.ranks.on_main(self.result)
        self.ranks.on_main(self._claim_folder)
        if self.physical:
            self._warn_if_short()
        pending, seconds_before, started = [], self.seconds, time.perf_counter()
        keep = set(self.config.keep_checkpoints)
        if self.step in keep:  # step 0: the initial network
            self.save_checkpoint(kept=True)
        if self._losses is None:  # compiled before the progress bar starts, which then shows the steps' rate
            self._losses = self._compiled_losses()
        with _progress_bar(self.config.steps, self.step, progress and self.ranks.main) as bar:
            while self.step < self.config.steps:
                pending.append(self.train_step())
                if self.step in keep:
                    self.save_checkpoint(kept=True)
                if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                    if self._error_sample_due():  # before the checkpoint, which keeps the samples
                        self.error_samples.append([self.step, self._jackknife_now()])
                    self.seconds = seconds_before + time.perf_counter() - started
                    rows = self._flush(pending)
                    if bar is not None:
                        bar.update(len(rows))
                        bar.set_postfix({name: f"{value:.4g}" for name, value in zip(self.metric_names, rows[-1])
                                         if name == "loss" or name in self.unknowns})
                    pending = []
                    settled = self.step < self.config.steps and self._settled()
                    if settled:  # the run ends here, and a resume finds it finished
                        self.config.steps = self.step
                        self.save_checkpoint()
                    if self.step == self.config.steps:  # the loop ends here unless ν still moves at the target
                        result = self.ranks.on_main(self.result)  # from rank 0's metrics, for every rank
                        if not settled and self._extend() and bar is not None:
                            bar.total = self.config.steps
        if self.config.lbfgs_steps and not self.lbfgs_done:
            self._lbfgs_finish()
            result = self.ranks.on_main(self.result)
        for name in self.unknowns:
            if result[f"{name}_warning"]:
                warnings.warn(result[f"{name}_warning"], PinnfastWarning)
        return result

    def _lbfgs_finish(self):
        """Up to ``lbfgs_steps`` iterations of L-BFGS (strong Wolfe line search; it also ends when the loss stops
        changing) after the Adam steps, on one fixed batch (``LBFGS_COLLOCATION`` × ``n_collocation`` points drawn
        from the run's stream, every observation) with λ as Adam left it, as DeepXDE and the original PINN papers
        finish; torch ops. Deterministic from the checkpoint, so a run cut during this phase redoes it on resume.
        Writes ``lbfgs.csv`` (each loss evaluation: loss and every unknown)."""
        if self.ranks.world > 1:
            raise PinnfastError("--lbfgs-steps runs in one process; leave out --nproc")
        started = time.perf_counter()
        batch = self.problem.sample(self.generator, LBFGS_COLLOCATION * self.config.n_collocation, every_point=True)
        lam = self.weights.lambdas.detach().clone()
        backend, self.problem.backend = self.problem.backend, "torch"
        optimizer = torch.optim.LBFGS(self.params, max_iter=self.config.lbfgs_steps, history_size=50,
                                      line_search_fn="strong_wolfe")
        rows = []

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss_r, terms = self.problem.losses(batch)
            loss = loss_r.sum() + (lam * torch.stack(terms)).sum()  # as train_step: members are independent
            loss.backward()
            rows.append([len(rows) + 1, loss.item(), *(v.mean().item() for v in self.problem.logged().values())])
            return loss

        optimizer.step(closure)
        self.problem.backend = backend
        if not all(math.isfinite(value) for value in rows[-1][1:]):
            raise TrainingDiverged(f"L-BFGS reached a non-finite loss; the Adam run's checkpoint (step {self.step}) "
                                   f"is kept in {self.out_dir / CHECKPOINT}")
        self.lbfgs_done = True
        self.seconds += time.perf_counter() - started
        if self.ranks.main:
            header = ["evaluation", "loss", *self.problem.logged()]
            (self.out_dir / LBFGS_CSV).write_text("\n".join(",".join(map(str, row)) for row in [header, *rows]) + "\n")
        self.save_checkpoint()

    def _claim_folder(self):
        """A new run takes an empty folder; a resumed one drops the rows written after its checkpoint (a diverged
        tail) and refuses another run's CSV."""
        if self.checkpoint_step is None:
            claim_empty(self.out_dir, self.overwrite)
        else:
            cut_metrics_at(self.out_dir, self.metric_names, self.checkpoint_step)
            (self.out_dir / RESULT).unlink(missing_ok=True)  # it described the run at an earlier step

    def _settled(self):
        """Whether the run may end before its target: checked every ``SETTLE_EVERY`` steps from ``min_steps`` on (at
        the first metrics flush at or after each multiple), when every learned unknown (each ensemble member's)
        moved by at most ``DRIFT_FRACTION × tol`` between the two quarters of the run that end at this step (after
        the warm-up), and no data term's median loss fell below ``LOSS_SETTLED`` times the earlier quarter's. The
        whole second half of the run, not a short window: in slow cases ν creeps with plateaus of a thousand steps,
        and while a clean data set is still being fitted better ν can still move. Decided on rank 0's metrics, for
        every rank (regime sweep: BENCHMARKS.md)."""
        if (not self.physical or not self.config.stop_when_settled or self.step < self.config.min_steps
                or not self._due(SETTLE_EVERY)):
            return False
        return self.ranks.on_main(self._settled_here)

    def _due(self, every):
        """Whether this metrics flush is the first at or after a multiple of ``every`` steps."""
        return self.step // every > (self.step - self.config.checkpoint_every) // every

    def _error_sample_due(self):
        """Every ``ERROR_EVERY`` steps from where the first averaging window that the run can report may begin
        (the window before ``min_steps``, or before the target when that comes first); rank 0 only."""
        first_window = min(self.config.steps, self.config.min_steps) - self.config.average_last
        return self.physical and self.ranks.main and self.step > first_window and self._due(ERROR_EVERY)

    def _jackknife_now(self):
        """Each unknown's sub-box jackknife standard error for the network as it is now, one per member. Sampled
        every ``ERROR_EVERY`` steps: the error bar averages the samples in its window, so that one unusually
        consistent or inconsistent state of the network does not decide it."""
        with torch.no_grad():
            errors = subdomain_jackknife(self.problem, {name: self.problem.value(name) for name in self.unknowns})
        return {name: error.reshape(-1).tolist() for name, error in errors.items()}

    def _second_half(self):
        """Rank 0's metrics over the second half of the run after the warm-up; None while shorter than the averaging
        window."""
        table = metrics_table(self.out_dir)
        trained = table[table["step"] > self.config.nu_warmup]
        recent = trained[len(trained) // 2:]
        return recent if len(recent) >= self.config.average_last else None

    def _quarter_drifts(self, recent):
        """``(unknown, drift)`` for every learned unknown (each ensemble member's): how far its mean moved between
        the two quarters that make up the run's second half ``recent``."""
        members = [""] if self.config.members is None else [f"_{k}" for k in range(self.config.members)]
        return [(name, _drift(recent[name + member])) for name in self.unknowns for member in members]

    def _settled_here(self):
        recent = self._second_half()
        if recent is None:
            return False
        moving = [self._moves(drift) for _, drift in self._quarter_drifts(recent)]
        half = len(recent) // 2
        falling = [np.median(recent[f"loss_{term}"][half:]) < LOSS_SETTLED * np.median(recent[f"loss_{term}"][:half])
                   for term in self.problem.term_names]
        return not any(moving) and not any(falling)

    def _fastest_drift(self):
        """The unknown whose mean moved most between the quarters of the run's second half, and that drift (rank
        0's metrics); None before there is such a half."""
        recent = self._second_half()
        return None if recent is None else max(self._quarter_drifts(recent), key=lambda item: abs(item[1]))

    def _moves(self, drift):
        """Whether a drift (an unknown's relative change between two spans of steps) says that it still moves."""
        return abs(drift) > DRIFT_FRACTION * self.config.tol

    def _moving_at_the_cap(self):
        """``{unknown: drift}`` (the most moving member's, for an ensemble) of the learned unknowns that still moved
        by the settle check's measure when ``max_steps`` ended the run, so that the result says the cap, not ν,
        ended it; empty for any other end."""
        if not self.config.stop_when_settled or self.step < self.config.max_steps:
            return {}
        recent = self._second_half()
        moving = {}
        for name, drift in [] if recent is None else self._quarter_drifts(recent):
            if self._moves(drift) and abs(drift) > abs(moving.get(name, 0.0)):
                moving[name] = drift
        return moving

    def _extend(self):
        """At the target, while ν still moves by the settle check's measure (between the quarters of the run's
        second half: a creep of a thousand steps shows there, not in the averaging window's halves) and the cap
        allows: raise the target by half (10,000 → 15,000 → 22,500 → 30,000), saved at once so that a resume
        continues the extended run. Returns whether it did."""
        if not self.config.stop_when_settled or self.config.steps >= self.config.max_steps:
            return False
        fastest = self.ranks.on_main(self._fastest_drift)
        if fastest is None or not self._moves(fastest[1]):
            return False
        name, drift = fastest
        before = self.config.steps
        self.config.steps = min(self.config.max_steps, before + max(1, before // 2))
        warnings.warn(f"{symbol(name)} is still moving at step {before} ({100 * drift:+.2g} % between the last two "
                      f"quarters of the run): training on to step {self.config.steps} (at most "
                      f"{self.config.max_steps}, --max-steps)", PinnfastWarning)
        self.save_checkpoint()
        return True

    def _warn_if_short(self):
        steps, warmup, window = self.config.steps, self.config.nu_warmup, self.config.average_last
        who, one = ", ".join(map(symbol, self.unknowns)), len(self.unknowns) == 1
        if steps <= warmup:
            warnings.warn(f"{steps} steps end inside the {who} warm-up ({warmup} steps): {who} "
                          f"{'stays at its initial value' if one else 'stay at their initial values'}",
                          PinnfastWarning)
        elif steps < warmup + window:
            warnings.warn(f"{steps} steps are fewer than the {who} warm-up ({warmup}) plus the averaging window "
                          f"({window}): {who} {'is' if one else 'are'} averaged over {steps - warmup} steps only",
                          PinnfastWarning)

    def result(self):
        """The run's summary: each learned unknown as the mean (and standard deviation) over the last
        ``average_last`` steps after the warm-up, with the window, its final iterate, the final losses and the
        data fit (see :meth:`_summary` for an unknown's entries)."""
        table = metrics_table(self.out_dir) if self.step > 0 else None
        result = {"problem": self.config.problem, "model": self.config.model, "steps": self.step,
                  "target_steps": self.config.steps, "lbfgs_steps": self.config.lbfgs_steps if self.lbfgs_done else 0,
                  "seconds": self.seconds, "compile_seconds": self.compile_seconds, "device": str(self.device),
                  "backend": self.backend, "world_size": self.ranks.world}
        if self.physical:
            trained = table[table["step"] > self.config.nu_warmup] if table is not None else []
            window = trained[-self.config.average_last:]
            logged = self.problem.logged()
            summaries = {name: self._summary(name, window, logged) for name in self.unknowns}
            self._add_error_bars(summaries, window)
            capped = self._moving_at_the_cap()
            for name, summary in summaries.items():
                summary[f"{name}_warning"] = self._identification_warning(name, summary, capped.get(name))
                result.update(summary)
        if table is not None:
            last = table[-1]
            result.update({name: float(last[name]) for name in self.metric_names if name.startswith("loss")})
        with torch.no_grad():
            result.update(self.problem.data_fit())
        if self.data is not None:
            result.update(data=self.data["path"], data_sha256=self.data["sha256"])
        result["version"] = __version__
        return result

    def _summary(self, name, window, logged):
        """An unknown's entries (Burgers' ν: ``nu``, ``nu_std``, …): ``<name>_init``, ``_warmup``, ``_window``
        (its first and last step, or None), the window mean ``<name>`` with ``_std``, the final iterate
        ``_last``, ``_drift``; an ensemble's ``<name>`` is its members' mean, with ``_members``, ``_spread`` and
        the most moving member's drift; then ``_warning`` and, when the truth is known, ``_true`` and
        ``_error``."""
        summary = {f"{name}_init": self.unknowns[name].init, f"{name}_warmup": self.config.nu_warmup,
                   f"{name}_window": [int(window["step"][0]), int(window["step"][-1])] if len(window) else None}
        columns = [name] + ([] if self.config.members is None else
                            [f"{name}_{k}" for k in range(self.config.members)])
        means = [float(window[c].mean()) if len(window) else logged[c].item() for c in columns]
        drifts = [_drift(window[c]) if len(window) >= 2 else None for c in columns]
        summary.update({name: means[0], f"{name}_std": float(window[name].std()) if len(window) else 0.0,
                        f"{name}_last": logged[name].item(), f"{name}_drift": drifts[0]})
        if self.config.members is not None:  # one value per member: their mean is reported, their spread the error bar
            summary.update({name: float(np.mean(means[1:])), f"{name}_members": means[1:],
                            f"{name}_spread": float(np.std(means[1:], ddof=1)),
                            f"{name}_drift": None if drifts[1] is None else max(drifts[1:], key=abs)})
        if self.lbfgs_done:  # the Adam window as above; the L-BFGS finish's value beside it
            summary.update({f"{name}_last": float(window[name][-1]), f"{name}_lbfgs": logged[name].mean().item()})
        truth = self.nu_true if name == "nu" and self.nu_true is not None else self.unknowns[name].true
        if truth is not None:
            summary.update({f"{name}_true": truth, f"{name}_error": (summary[name] - truth) / truth})
            if self.lbfgs_done:
                summary[f"{name}_lbfgs_error"] = (summary[f"{name}_lbfgs"] - truth) / truth
        return summary

    def _add_error_bars(self, summaries, window):
        """Each unknown's error bar ``<name>_sigma``: the jackknife standard error over the box's sub-boxes
        (:func:`~pinnfast.uncertainty.subdomain_jackknife`), its samples in the averaging ``window`` (one every
        ``ERROR_EVERY`` steps) and an ensemble's members averaged in square, combined for an ensemble with the
        members' spread (root of the sum of squares). On the regime sweep ±σ held the truth in 14 of 22 cases and
        ±2σ in 21 (BENCHMARKS.md). ``None`` before any training, or when the residual does not depend on the
        unknown."""
        if not len(window):
            for name, summary in summaries.items():
                summary[f"{name}_sigma"] = None
            return
        first, last = window["step"][0], window["step"][-1]
        samples = ([errors for step, errors in self.error_samples if first <= step <= last]
                   or [self._jackknife_now()])  # none in the window (a short run): the network as it is now
        members = self.config.members
        for name, summary in summaries.items():
            squares = [error ** 2 for errors in samples for error in errors[name]]
            sigma = math.sqrt(sum(squares) / len(squares))
            if members is not None:
                sigma = math.hypot(sigma, summary[f"{name}_spread"])
            summary[f"{name}_sigma"] = sigma if math.isfinite(sigma) else None  # None: the residual ignores it

    def _identification_warning(self, name, summary, drift_at_cap=None):
        """Why the reported value of unknown ``name`` may be off by more than ``tol``, or None: its error bar
        (``_sigma``; an ensemble's includes the members' spread) is wider than ``tol``, or it still moved by more
        than ``tol / 4`` between the two halves of its averaging window, or ``max_steps`` ended the run while it
        still moved by the settle check's measure (``drift_at_cap``) (BENCHMARKS.md: on the regime sweep every
        clean case that ended more than 1 % off had an error bar above 1 %)."""
        tol, reasons, advice, who = self.config.tol, [], [], symbol(name)
        value, sigma, drift = summary[name], summary[f"{name}_sigma"], summary[f"{name}_drift"]
        if summary[f"{name}_window"] is not None and not (sigma is not None and sigma <= tol * abs(value)):
            if sigma is None:
                reasons.append(f"the residual does not change with {who}")
            else:
                why = f"the sub-boxes of the domain ask for different values of {who}"
                if self.config.members is not None:
                    why = (f"the {self.config.ensemble} ensemble members disagree by ±"
                           f"{100 * summary[f'{name}_spread'] / abs(value):.2g} % (standard deviation), and {why}")
                reasons.append(f"its error bar is ±{100 * sigma / abs(value):.2g} % ({why})")
            advice.append(f"more data, or less noisy data, or data where {who} matters more (sharper fields)")
        more_steps = "more steps (resume the run with a higher --steps)"
        if drift is not None and self._moves(drift):
            first, last = summary[f"{name}_window"]
            reasons.append(f"{who} was still moving ({100 * drift:+.2g} % between the halves of its "
                           f"averaging window, steps {first}–{last})")
            advice.append(more_steps)
        if drift_at_cap is not None:
            reasons.append(f"--max-steps ({self.config.max_steps}) ended the run while {who} still moved "
                           f"({100 * drift_at_cap:+.2g} % between the last two quarters of the run)")
            if more_steps not in advice:
                advice.append(more_steps)
        if not reasons:
            return None
        if self.config.members is None:
            advice.append("an ensemble (--ensemble 4) to see the spread")
        return (f"{who} is not identified well by these data: {' and '.join(reasons)}, against the requested "
                f"accuracy of {100 * tol:g} % (tol); treat {who} = {value:.4g} as uncertain to that extent, and try "
                f"{' or '.join(advice)}")

    def _flush(self, pending):
        """Bring buffered metrics to the host: stop on a non-finite loss, else append the CSV and checkpoint. The
        losses are the means over the ranks' batches (λ and ν are the same on every rank)."""
        first = self.step - len(pending) + 1
        values = torch.stack([metrics for metrics, _ in pending])
        self.ranks.average([values[:, :2 + len(self.problem.term_names)]])
        values = values.cpu().double().numpy()
        lrs = [lr for _, lr in pending]
        if torch.is_tensor(lrs[0]):  # graph mode: device tensors, one copy to the host
            lrs = torch.stack(lrs).tolist()
        rows = [[first + k, *row, lr] for k, (row, lr) in enumerate(zip(values.tolist(), lrs))]
        checked = [k for k, name in enumerate(self.metric_names) if name not in ("step", *self.imbalance_names)]
        bad = next((row for row in rows if not all(math.isfinite(row[k]) for k in checked)), None)
        if bad is not None:
            if self.ranks.main:
                append_metrics(self.out_dir, self.metric_names, rows[:rows.index(bad) + 1])
            kept = (f"the last good checkpoint (step {self.checkpoint_step}) is kept in {self.out_dir / CHECKPOINT}"
                    if self.checkpoint_step is not None else "no checkpoint had been written yet")
            values = ", ".join(f"{n}={v}" for n, v in zip(self.metric_names, bad) if n in self.problem.logged())
            raise TrainingDiverged(f"training stopped: non-finite loss at step {bad[0]} (loss={bad[1]}"
                                   f"{', ' + values if values else ''}); {kept}")
        if self.ranks.main:
            append_metrics(self.out_dir, self.metric_names, rows)
        self.save_checkpoint()
        return rows

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self, kept=False):
        """Rank 0 writes the checkpoint the run resumes from, or (``kept``) the copy kept at this step, with every
        rank's random stream (``generators``, in rank order)."""
        generators = self.ranks.gather(self.generator.get_state())
        if self.ranks.main:
            save_checkpoint(self.out_dir, {
                "config": dataclasses.asdict(self.config), "step": self.step, "seconds": self.seconds,
                "compile_seconds": self.compile_seconds,
                "problem": self.problem.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "weights": self.weights.state_dict(),
                "generators": generators, "world_size": self.ranks.world, "device_type": self.device.type,
                "data": self.data, "nu_true": self.nu_true, "version": __version__, "lbfgs_done": self.lbfgs_done,
                "error_samples": self.error_samples,
            }, self.step if kept else None)
        if not kept:
            self.checkpoint_step = self.step

    @classmethod
    def resume(cls, observations, out_dir, device="auto", steps=None, *, data_path=None, columns=None,
               nu_true=None):
        """Continue the run saved in ``out_dir`` with its own config; ``steps`` may raise its target.

        ``observations=None`` reads the run's own data file again (a declared problem: calls its factory again);
        other observations than the run's are refused. A run of a PDE passed from Python needs that PDE again.
        A run of K processes resumes on K processes (each continues its own random stream).
        """
        state = load_checkpoint(out_dir)
        if "version" not in state:
            raise PinnfastError(f"{out_dir}: the checkpoint was written by pinnfast 0.1, which did not record the "
                                "run's data, so a resume cannot check it; start a new run")
        world, ranks = state.get("world_size", 1), Ranks()
        if world != ranks.world:
            how = f"torchrun --nproc_per_node {world}, or --nproc {world}" if world > 1 else "without torchrun"
            raise PinnfastError(f"the run in {out_dir} was trained by {world} process(es), not {ranks.world}: resume "
                                f"it on {world} ({how}), each process continuing its own random stream")
        config = TrainConfig.saved(state["config"])
        config.steps = resume_target(state, steps, out_dir)
        if config.max_steps is not None and config.max_steps < config.steps:
            config.max_steps = config.steps  # a target raised by hand: no further extension past it
        recorded = state["data"]
        declared = config.problem not in PROBLEMS
        if declared:
            observations = declared_problem(state, out_dir, observations, data_path)
            data_path = data_path or recorded["path"]
        elif observations is None and recorded is not None:
            if recorded["path"] is None:
                raise PinnfastError(f"the run in {out_dir} was trained on observations passed from Python; pass "
                                    "them to resume")
            data_path, columns = recorded["path"], recorded["columns"]
            observations = load_observations(data_path, columns)
        trainer = cls(observations, config, out_dir, device, data_path=data_path, columns=columns,
                      nu_true=state["nu_true"] if nu_true is None else nu_true)
        if trainer.device.type != state["device_type"]:
            raise PinnfastError(f"the run in {out_dir} was trained on {state['device_type']}; resume it there "
                                f"(--device {state['device_type']}): its random stream belongs to that device")
        if recorded is not None and trainer.data["sha256"] != recorded["sha256"]:
            given = data_path or ("this problem's data" if declared else "the observations")
            origin = recorded["path"] or ("data the problem made itself" if declared else
                                          "observations passed from Python")
            raise PinnfastError(f"{given} is not the data the run in {out_dir} was trained on ({origin}, sha256 "
                                f"{recorded['sha256'][:12]}…); resume with its own data or start a new run")
        if recorded is not None and trainer.data["path"] is None:
            trainer.data = recorded  # the same values from Python: keep the file the run was started with
        _load_problem_state(trainer.problem, state, out_dir)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.weights.load_state_dict(state["weights"])
        generators = state["generators"] if "generators" in state else [state["generator"]]  # older: one stream
        trainer.generator.set_state(generators[trainer.ranks.rank])
        trainer.step, trainer.seconds = state["step"], state["seconds"]
        trainer.compile_seconds = state.get("compile_seconds", 0.0)  # older checkpoints: not recorded
        if config.cuda_graphs:
            trainer._device_learning_rates()
        trainer.lbfgs_done = state.get("lbfgs_done", False)
        trainer.error_samples = state.get("error_samples", [])  # taken up to the checkpoint's step (older: none)
        trainer.checkpoint_step = trainer.step
        older = [name for name in trainer.metric_names if name not in trainer.imbalance_names]
        if trainer.imbalance_names and metrics_header(out_dir) == older:  # begun before the ratio was logged
            trainer.imbalance_names, trainer.metric_names = [], older
        return trainer


def declared_problem(state, run_dir, pde=None, data_path=None):
    """The PDE of a run that trained a declared problem: ``pde`` when given, else what its recorded factory
    returns again (called with ``data_path``, or the run's own data file)."""
    name, recorded = state["config"]["problem"], state["data"] or {}
    if pde is None:
        factory = recorded.get("factory")
        if factory is None:
            raise PinnfastError(f"the run in {run_dir} trained the problem {name!r} passed from Python; pass that "
                                "pinnfast.PDE again")
        pde = from_factory(factory["spec"], data_path or recorded.get("path"), factory["folder"])
    elif not isinstance(pde, PDE):
        raise PinnfastError(f"the run in {run_dir} trained the declared problem {name!r}; pass its pinnfast.PDE, "
                            f"not a {type(pde).__name__}")
    if pde.name != name:
        raise PinnfastError(f"the run in {run_dir} trained the problem {name!r}, not {pde.name!r}")
    return pde


def _load_problem_state(problem, state, run_dir):
    """The checkpoint's network and unknowns into ``problem``, or one line saying that they do not fit it."""
    try:
        problem.load_state_dict(state["problem"])
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()
        raise PinnfastError(f"the checkpoint in {run_dir} does not fit this problem ({reason[-1].strip()})") from None


def resume_target(state, steps, out_dir):
    """The step a resumed run trains to: its checkpoint's own target, or ``steps``, which may not go back."""
    if steps is not None and steps < state["step"]:
        raise PinnfastError(f"--steps {steps} is below the step the run in {out_dir} has reached ({state['step']})")
    return state["config"]["steps"] if steps is None else steps


@dataclasses.dataclass
class Run:
    """A trained run, ready to use: the network (with its input normalisation), ν, the config and the result."""

    problem: torch.nn.Module
    config: TrainConfig
    result: dict
    step: int

    @property
    def network(self):
        return self.problem.network

    def uv(self, points):
        """(u, v) at ``points`` ``(N, 3)``: the network's, or an ensemble's mean over its members."""
        uv = self.network(points)
        return uv if self.network.members is None else uv.mean(0)

    @property
    def unknowns(self):
        """Each learned unknown by name: its reported value (mean over the averaging window) when result.json
        describes this checkpoint, else the checkpoint's last iterate (e.g. an interrupted run; an ensemble's
        members' mean)."""
        return {name: self.result[name] if name in self.result else self.problem.value(name).detach().mean().item()
                for name in self.problem.pde.unknowns}

    @property
    def nu(self):
        """The reported ν (see :attr:`unknowns`), or None for a problem without it."""
        return self.unknowns.get("nu")


def load_run(run_dir, device="cpu", pde=None):
    """The trained run in ``run_dir``: ``run.uv(points)`` gives (u, v) (an ensemble's mean), ``run.nu`` the
    inferred ν, ``run.unknowns`` every learned unknown, ``run.network`` the network (an ensemble's: outputs
    ``(K, N, out)``). A declared problem is rebuilt by its recorded factory, or given as ``pde``."""
    state = load_checkpoint(run_dir)
    config = TrainConfig.saved(state["config"])
    problem = build_problem(config, declared_problem(state, run_dir, pde) if config.problem not in PROBLEMS else None)
    _load_problem_state(problem, state, run_dir)  # includes the domain normalisation buffers
    if isinstance(problem, BurgersInverse):  # its box came with the data; the network's normalisation keeps it
        problem.lo, problem.hi = (torch.tensor(bound, dtype=torch.float32) for bound in domain_box(problem.network))
    result = read_result(run_dir)
    sha = (state.get("data") or {}).get("sha256")
    if (result.get("steps"), result.get("data_sha256")) != (state["step"], sha):
        result = {}  # a result.json from another point of the run, or another run, says nothing about this one
    return Run(problem.to(resolve_device(device)).eval(), config, result, state["step"])


def _progress_bar(total, initial, enabled):
    """A tqdm bar when asked for (tqdm is imported only then: the GPU machine may not have it)."""
    if not enabled:
        return contextlib.nullcontext()
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="pinnfast", unit="step")


def _drift(values):
    """How far a value still moved over its averaging window: the mean of the window's second half minus that of
    its first half, relative to the whole window's mean (0 when it has settled; the sign says which way)."""
    half = len(values) // 2
    return float((values[half:].mean() - values[:half].mean()) / abs(values.mean()))


def _per_member(value, like):
    """A per-member value ``(K,)`` shaped to scale a member-stacked tensor ``(K, ...)``; a scalar as it is."""
    return value if value.dim() == 0 else value.reshape(-1, *[1] * (like.dim() - 1))


def _grads(loss, params, retain_graph=False):
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
