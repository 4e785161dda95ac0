"""Training: M1–M4 on any :class:`~pinnfast.problems.Problem`, Adam with exponential decay, checkpoints, resume.

The default problem is the 2D Burgers inverse problem; ``helmholtz`` and ``klein-gordon`` are the paper's forward
problems. Each step the problem draws a fresh batch (collocation, boundary, observation points) from one seeded
generator, so a run resumed from a checkpoint repeats the uninterrupted run exactly.
Metrics stay on the device and reach the host (CSV, NaN check, checkpoint) every ``checkpoint_every`` steps.
"""
import csv
import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .annealing import Annealing, FixedWeights
from .burgers import BurgersInverse
from .errors import PinnfastError
from .models import MLP, ModifiedMLP
from .problems import Helmholtz, KleinGordon

MODELS = {  # name: (network class, annealing)
    "m1": (MLP, False),
    "m2": (MLP, True),
    "m3": (ModifiedMLP, False),
    "m4": (ModifiedMLP, True),
}
DEVICES = ("auto", "cpu", "cuda")
PROBLEMS = ("burgers", "helmholtz", "klein-gordon")
CHECKPOINT, METRICS_CSV, RESULT, PLOT = "checkpoint.pt", "metrics.csv", "result.json", "training.png"


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run; saved in the checkpoint so that ``resume`` continues the same run.

    Defaults were tuned to recover ν within 1 % in about two minutes on a 2-core CPU (BENCHMARKS.md): a small
    network (width 32, 3 gate layers), 512 collocation points and 512 observations per step, 10,000 steps with the
    learning rate decayed by ``decay_rate`` every ``decay_steps``. ν (as log ν) has its own learning rate and Adam
    β2 = 0.99, and is held for the first ``nu_warmup`` steps: otherwise the large residual gradients of the
    untrained network fill Adam's second moment and ν barely moves for thousands of steps. The reported ν is the
    mean over the last ``average_last`` steps (iterate averaging): the stochastic updates make the last iterate
    jitter by about ±0.3 %; the final iterate is reported too, as ``nu_last``.
    """

    problem: str = "burgers"
    model: str = "m4"
    width: int = 32
    depth: int = 3
    steps: int = 10000
    lr: float = 1e-3
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

    def validate(self):
        if self.problem not in PROBLEMS:
            raise PinnfastError(f"unknown problem {self.problem!r}; choose one of {', '.join(PROBLEMS)}")
        if self.model not in MODELS:
            raise PinnfastError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if not self.nu_init > 0:
            raise PinnfastError(f"--nu-init must be positive, got {self.nu_init}")
        for name in ("steps", "width", "depth", "n_collocation", "batch_size", "checkpoint_every", "decay_steps",
                     "average_last"):
            if getattr(self, name) < 1:
                raise PinnfastError(f"{name} must be >= 1, got {getattr(self, name)}")


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
    return torch.device(device)


class TrainingDiverged(PinnfastError):
    """A non-finite loss: training stopped, the last good checkpoint is kept."""


def build_problem(config, observations=None):
    """The problem a config describes; Burgers takes its observations (and box) from ``observations``."""
    network_class = MODELS[config.model][0]
    if config.problem == "helmholtz":
        return Helmholtz(network_class(2, 1, config.width, config.depth, domain=((-1, -1), (1, 1))),
                         config.n_collocation)
    if config.problem == "klein-gordon":
        return KleinGordon(network_class(2, 1, config.width, config.depth, domain=((0, 0), (1, 1))),
                           config.n_collocation)
    if observations is None:  # a trained Burgers network for evaluation: the domain comes with its state
        return BurgersInverse(network_class(3, 2, config.width, config.depth), config.nu_init)
    points = np.column_stack([observations[c] for c in ("x", "y", "t")])
    values = np.column_stack([observations[c] for c in ("u", "v")])
    lo, hi = (points.min(0), points.max(0)) if config.box is None else map(np.asarray, config.box)
    if not np.all(hi > lo):
        raise PinnfastError(f"the collocation box needs hi > lo in every coordinate, got lo={lo}, hi={hi}")
    network = network_class(3, 2, config.width, config.depth, domain=(lo, hi))
    return BurgersInverse(network, config.nu_init, torch.tensor(points, dtype=torch.float32),
                          torch.tensor(values, dtype=torch.float32), (lo, hi), config.n_collocation,
                          config.batch_size)


class Trainer:
    """Trains a problem (Burgers: from observations ``{"x", "y", "t", "u", "v"}``) and writes a run folder."""

    def __init__(self, observations, config, out_dir, device="auto"):
        config.validate()
        self.config, self.out_dir, self.device = config, Path(out_dir), resolve_device(device)
        torch.manual_seed(config.seed)
        self.problem = build_problem(config, observations).to(self.device)
        self.named_params = list(self.problem.network.named_parameters())
        self.physical = self.problem.physical()
        groups = [{"params": [p for _, p in self.named_params], "lr": config.lr}]
        if self.physical:
            groups.append({"params": self.physical, "lr": config.nu_lr, "betas": (0.9, config.nu_beta2)})
        self.optimizer = torch.optim.Adam(groups)
        gamma = config.decay_rate ** (1.0 / config.decay_steps)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma)
        n_terms = len(self.problem.term_names)
        if MODELS[config.model][1]:
            self.weights = Annealing(n_terms, self.device, config.anneal_period, config.anneal_alpha,
                                     config.anneal_grads, config.anneal_mean, config.anneal_weighted)
            self.selected = self.weights.selected(self.named_params)
        else:
            self.weights = FixedWeights(n_terms, self.device)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.step, self.seconds, self.checkpoint_step = 0, 0.0, None
        names = self.problem.term_names
        self.metric_names = ["step", "loss", "loss_r", *(f"loss_{n}" for n in names),
                             *(f"lambda_{n}" for n in names), *self.problem.logged(), "lr"]

    # ----------------------------------------------------------------- one step
    def train_step(self):
        """One optimiser step; returns the step's metrics (device tensor, no host sync) and the learning rate."""
        loss_r, terms = self.problem.losses(self.problem.sample(self.generator))
        terms = torch.stack(terms)
        lam = self.weights.lambdas
        if self.weights.due(self.step):
            self._annealed_gradients(loss_r, terms)
        else:
            (loss_r + (lam * terms).sum()).backward()
        if self.step < self.config.nu_warmup:
            for p in self.physical:
                p.grad = None  # physical parameters wait until the network has roughly fitted the data
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.step += 1
        loss = loss_r.detach() + (lam * terms.detach()).sum()
        logged = [value.reshape(1) for value in self.problem.logged().values()]
        return torch.cat([torch.stack([loss, loss_r.detach()]), terms.detach(), lam.clone(), *logged]), lr

    def _annealed_gradients(self, loss_r, terms):
        """∇L_r and each ∇L_i by separate reverse passes: they feed Algorithm 1 and then form
        ∇L = ∇L_r + Σ λ_i ∇L_i without a further pass."""
        params = [p for _, p in self.named_params] + self.physical
        grad_r = _grads(loss_r, params, retain_graph=True)
        grad_terms = [_grads(term, params, retain_graph=k + 1 < len(terms)) for k, term in enumerate(terms)]
        self.weights.update([grad_r[k] for k in self.selected],
                            [[grads[k] for k in self.selected] for grads in grad_terms])
        lam = self.weights.lambdas
        for k, p in enumerate(params):
            p.grad = grad_r[k] + sum(lam[i] * grads[k] for i, grads in enumerate(grad_terms))

    # ----------------------------------------------------------------- the run
    def run(self, steps=None, progress=True):
        """Train up to ``steps`` (the config's by default), checkpointing; returns :meth:`result`."""
        steps = self.config.steps if steps is None else steps
        if self.checkpoint_step is None and (self.out_dir / CHECKPOINT).exists():
            raise PinnfastError(f"{self.out_dir} already holds a run ({CHECKPOINT}); resume it (--resume) or "
                                "choose another output folder")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        pending, seconds_before, started = [], self.seconds, time.perf_counter()
        with tqdm(total=steps, initial=self.step, disable=not progress, desc="pinnfast", unit="step") as bar:
            while self.step < steps:
                pending.append(self.train_step())
                if self.step % self.config.checkpoint_every == 0 or self.step == steps:
                    self.seconds = seconds_before + time.perf_counter() - started
                    rows = self._flush(pending)
                    bar.update(len(rows))
                    bar.set_postfix({name: f"{value:.4g}" for name, value in zip(self.metric_names, rows[-1])
                                     if name in ("loss", "nu")})
                    pending = []
        return self.result()

    def result(self):
        """Learned physical values (mean over the last ``average_last`` steps; ``<name>_last``: final iterate)."""
        result = {}
        if self.problem.logged() and self.step > 0:
            table = np.atleast_1d(np.genfromtxt(self.out_dir / METRICS_CSV, delimiter=",", names=True))
            window = table[-min(self.config.average_last, len(table)):]
            for name, value in self.problem.logged().items():
                result[name] = float(window[name].mean())
                result[f"{name}_last"] = value.item()
        result.update(steps=self.step, seconds=self.seconds, problem=self.config.problem, model=self.config.model,
                      device=str(self.device))
        if isinstance(self.problem, BurgersInverse):
            result["nu_init"] = self.config.nu_init
        return result

    def _flush(self, pending):
        """Bring buffered metrics to the host: stop on a non-finite loss, else append the CSV and checkpoint."""
        first = self.step - len(pending) + 1
        values = torch.stack([metrics for metrics, _ in pending]).cpu().double().numpy()
        rows = [[first + k, *row, lr] for k, (row, (_, lr)) in enumerate(zip(values.tolist(), pending))]
        bad = next((row for row in rows if not all(map(math.isfinite, row[1:]))), None)
        if bad is not None:
            self._append_metrics(rows[:rows.index(bad) + 1])
            kept = (f"the last good checkpoint (step {self.checkpoint_step}) is kept in {self.out_dir / CHECKPOINT}"
                    if self.checkpoint_step is not None else "no checkpoint had been written yet")
            values = ", ".join(f"{n}={v}" for n, v in zip(self.metric_names, bad) if n in self.problem.logged())
            raise TrainingDiverged(f"training stopped: non-finite loss at step {bad[0]} (loss={bad[1]}"
                                   f"{', ' + values if values else ''}); {kept}")
        self._append_metrics(rows)
        self.save_checkpoint()
        return rows

    def _append_metrics(self, rows):
        path = self.out_dir / METRICS_CSV
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(self.metric_names)
            writer.writerows(rows)

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self):
        state = {
            "config": dataclasses.asdict(self.config), "step": self.step, "seconds": self.seconds,
            "problem": self.problem.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "weights": self.weights.state_dict(),
            "generator": self.generator.get_state(),
        }
        tmp = self.out_dir / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.out_dir / CHECKPOINT)
        self.checkpoint_step = self.step

    @classmethod
    def resume(cls, observations, out_dir, device="auto", steps=None):
        """Continue the run saved in ``out_dir`` (its config; ``steps`` may raise the target)."""
        path = Path(out_dir) / CHECKPOINT
        if not path.is_file():
            raise PinnfastError(f"{path}: no checkpoint to resume from")
        state = torch.load(path, weights_only=False, map_location="cpu")
        config = TrainConfig(**state["config"])
        if steps is not None:
            config.steps = steps
        trainer = cls(observations, config, out_dir, device)
        trainer.problem.load_state_dict(state["problem"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.weights.load_state_dict(state["weights"])
        trainer.generator.set_state(state["generator"])
        trainer.step, trainer.seconds = state["step"], state["seconds"]
        trainer.checkpoint_step = trainer.step
        _truncate_metrics(Path(out_dir) / METRICS_CSV, trainer.step)
        return trainer


def load_trained(run_dir, device="cpu"):
    """The trained problem of a run folder (network with its domain, and ν for Burgers), ready for evaluation."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise PinnfastError(f"{path}: no checkpoint; train with `pinnfast infer --out {run_dir}` first")
    state = torch.load(path, weights_only=False, map_location="cpu")
    config = TrainConfig(**state["config"])
    problem = build_problem(config)
    problem.load_state_dict(state["problem"])  # includes the domain normalisation buffers
    return problem.to(device).eval()


def _grads(loss, params, retain_graph=False):
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _truncate_metrics(path, step):
    """Drop CSV rows after ``step`` (written after the checkpoint that a resume starts from)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])
