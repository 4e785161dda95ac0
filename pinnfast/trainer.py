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
import math
import time
import warnings
from pathlib import Path

import torch

from . import checkpoint
from ._version import __version__
from .config import PROBLEM_SHAPES, PROBLEMS, build_problem, resolve_backend, resolve_compile, resolve_device
from .data import observations_sha256, validate_observations
from .distributed import Ranks
from .errors import PinnfastError, PinnfastWarning, TrainingDiverged
from .limits import check_fits, problem_shape
from .names import symbol
from .pde import PDE
from .report import result as summarize
from .runfolder import (CHECKPOINT, LBFGS_CSV, RESULT, append_metrics, claim_empty, cut_metrics_at, locked_by_main,
                        metrics_table, write_text)
from .step import TrainingStep
from .stopping import error_sample_due, next_target, settle_check_due, settled
from .uncertainty import subdomain_jackknife

# Importable from here, as before the trainer was split into these modules.
from .checkpoint import Run, declared_problem, load_run, resume_target  # noqa: E402, F401
from .config import (BACKENDS, COMPILE_MIN_STEPS, DEVICES, DTYPES, MODELS, TRITON_MAX_WIDTH,  # noqa: E402, F401
                     TrainConfig, cpp_compiler_found)
from .step import COMPILER, LBFGS_COLLOCATION  # noqa: E402, F401
from .stopping import DRIFT_FRACTION, ERROR_EVERY, LOSS_SETTLED, SETTLE_EVERY  # noqa: E402, F401



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
        check_fits(config, *(problem_shape(observations) if declared else PROBLEM_SHAPES[config.problem]),
                   self.device)
        self.problem = build_problem(config, observations, source).to(self.device, getattr(torch, config.dtype))
        self.problem.backend = self.backend = resolve_backend(config, self.device)
        if config.members is not None and not self.problem.physical():
            raise PinnfastError(f"an ensemble (ensemble={config.ensemble}) measures how well the data determine "
                                f"learned unknowns; {config.problem} has none")
        self.unknowns = self.problem.pde.unknowns
        self.stepper = TrainingStep(self.problem, config, self.device, self.ranks)
        self.params, self.optimizer, self.generator, self.weights = (
            self.stepper.params, self.stepper.optimizer, self.stepper.generator, self.stepper.weights)
        self.seconds, self.checkpoint_step = 0.0, None
        self.error_samples = []  # [step, {unknown: [jackknife standard error per member]}], rank 0's
        self.threads = None  # a threads.CoreWatch: torch's threads follow the free cores, checked at each flush
        self.name_metrics()

    def name_metrics(self):
        """The metrics CSV's columns (the imbalance ratios only where the step logs them)."""
        names = self.problem.term_names
        self.imbalance_names = [f"imbalance_{n}" for n in names] if self.stepper.log_imbalance else []
        self.metric_names = ["step", "loss", "loss_r", *(f"loss_{n}" for n in names),
                             *(f"lambda_{n}" for n in names), *self.imbalance_names, *self.problem.logged(), "lr"]

    @property
    def step(self):
        return self.stepper.step

    def train_step(self):
        """One optimiser step (:class:`~pinnfast.step.TrainingStep`): its metrics and learning rate, on the device."""
        return self.stepper()

    @classmethod
    def resume(cls, observations, out_dir, device="auto", steps=None, *, data_path=None, columns=None,
               nu_true=None):
        """Continue the run saved in ``out_dir`` with its own config; ``steps`` may raise its target.

        ``observations=None`` reads the run's own data file again (a declared problem: calls its factory again);
        other observations than the run's are refused. A run of a PDE passed from Python needs that PDE again.
        A run of K processes resumes on K processes (each continues its own random stream).
        """
        return checkpoint.resume(cls, observations, out_dir, device, steps, data_path=data_path, columns=columns,
                                 nu_true=nu_true)

    def save_checkpoint(self, kept=False):
        """Write the checkpoint the run resumes from, or (``kept``) the copy kept at this step."""
        checkpoint.save(self, kept)

    # ----------------------------------------------------------------- the run
    @property
    def finished(self):
        return self.step >= self.config.steps and (self.config.lbfgs_steps == 0 or self.stepper.lbfgs_done)

    def run(self, progress=True):
        """Train up to ``config.steps``, checkpointing; returns :meth:`result`. A finished run writes nothing. The
        run folder is locked against other writers meanwhile (:func:`~pinnfast.runfolder.locked`)."""
        if self.finished:
            return self.ranks.on_main(self.result)
        with locked_by_main(self.out_dir, self.ranks):
            return self._run(progress)

    def _run(self, progress):
        self.ranks.on_main(self._claim_folder)
        if self.stepper.physical:
            self._warn_if_short()
        pending, seconds_before, started = [], self.seconds, time.perf_counter()
        keep = set(self.config.keep_checkpoints)
        if self.step in keep:  # step 0: the initial network
            self.save_checkpoint(kept=True)
        self.stepper.compile()  # before the progress bar starts, which then shows the steps' rate
        self._adapt_threads()  # after the compile: kernels compiled with every core follow the thread count
        with _progress_bar(self.config.steps, self.step, progress and self.ranks.main) as bar:
            while self.step < self.config.steps:
                pending.append(self.train_step())
                if self.step in keep:
                    self.save_checkpoint(kept=True)
                if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                    if self.stepper.physical and self.ranks.main and error_sample_due(self.step, self.config):
                        # before the checkpoint, which keeps the samples
                        self.error_samples.append([self.step, self._jackknife_now()])
                    self.seconds = seconds_before + time.perf_counter() - started
                    rows = self._record(pending)
                    self._adapt_threads()
                    if bar is not None:
                        bar.update(len(rows))
                        bar.set_postfix({name: f"{value:.4g}" for name, value in zip(self.metric_names, rows[-1])
                                         if name == "loss" or name in self.unknowns})
                    pending = []
                    # Where the run ends is decided before the checkpoint that records it, so that a run stopped
                    # between the two resumes as the uninterrupted run goes on.
                    if self.step < self.config.steps and self._settled():
                        self.config.steps = self.step  # the run ends here, and a resume finds it finished
                    elif self.step == self.config.steps and self._extend() and bar is not None:
                        bar.total = self.config.steps  # ν still moves at the target
                    self.save_checkpoint()
        if self.config.lbfgs_steps and not self.stepper.lbfgs_done:
            self._lbfgs_finish()
        result = self.ranks.on_main(self.result)  # from rank 0's metrics, for every rank
        for name in self.unknowns:
            if result[f"{name}_warning"]:
                warnings.warn(result[f"{name}_warning"], PinnfastWarning)
        return result

    def _adapt_threads(self):
        if self.threads is not None:
            self.threads.adjust()

    def _lbfgs_finish(self):
        """The L-BFGS finish (:meth:`~pinnfast.step.TrainingStep.lbfgs_finish`), its trace in ``lbfgs.csv``
        (each loss evaluation: loss and every unknown) and the checkpoint that records it."""
        started = time.perf_counter()
        rows = self.stepper.lbfgs_finish(self.out_dir / CHECKPOINT)
        self.seconds += time.perf_counter() - started
        if self.ranks.main:
            header = ["evaluation", "loss", *self.problem.logged()]
            write_text(self.out_dir / LBFGS_CSV, "\n".join(",".join(map(str, row)) for row in [header, *rows]) + "\n")
        self.save_checkpoint()

    def _record(self, pending):
        """Bring buffered metrics to the host: stop on a non-finite loss, else append the CSV; returns the rows. The
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
        return rows

    def _claim_folder(self):
        """A new run takes an empty folder; a resumed one drops the rows written after its checkpoint (a diverged
        tail) and refuses another run's CSV."""
        if self.checkpoint_step is None:
            claim_empty(self.out_dir, self.overwrite)
        else:
            cut_metrics_at(self.out_dir, self.metric_names, self.checkpoint_step)
            (self.out_dir / RESULT).unlink(missing_ok=True)  # it described the run at an earlier step

    def _settled(self):
        """Whether the run may end before its target (:func:`~pinnfast.stopping.settled`), at its checks; decided
        on rank 0's metrics, for every rank."""
        if not self.stepper.physical or not settle_check_due(self.step, self.config):
            return False
        return self.ranks.on_main(lambda: settled(metrics_table(self.out_dir), self.config, self.unknowns,
                                                  self.problem.term_names))

    def _extend(self):
        """At the target, while ν still moves (:func:`~pinnfast.stopping.next_target`, on rank 0's metrics): raise
        the target (the checkpoint that follows records it). Returns whether it did."""
        found = self.ranks.on_main(lambda: next_target(metrics_table(self.out_dir), self.config, self.unknowns))
        if found is None:
            return False
        before = self.config.steps
        self.config.steps, name, drift = found
        warnings.warn(f"{symbol(name)} is still moving at step {before} ({100 * drift:+.2g} % between the last two "
                      f"quarters of the run): training on to step {self.config.steps} (at most "
                      f"{self.config.max_steps}, --max-steps)", PinnfastWarning)
        return True

    def _jackknife_now(self):
        """Each unknown's sub-box jackknife standard error for the network as it is now, one per member. Sampled
        every ``ERROR_EVERY`` steps: the error bar averages the samples in its window, so that one unusually
        consistent or inconsistent state of the network does not decide it."""
        with torch.no_grad():
            errors = subdomain_jackknife(self.problem, {name: self.problem.value(name) for name in self.unknowns})
        return {name: error.reshape(-1).tolist() for name, error in errors.items()}

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
        """The run's summary (:func:`pinnfast.report.result`, whose module lists every entry)."""
        truths = {name: self.nu_true if name == "nu" and self.nu_true is not None else unknown.true
                  for name, unknown in self.unknowns.items()}
        with torch.no_grad():
            fit = self.problem.data_fit()
        return summarize(
            self.config, metrics_table(self.out_dir) if self.step > 0 else None, step=self.step,
            seconds=self.seconds, compile_seconds=self.stepper.compile_seconds, device=str(self.device),
            backend=self.backend, world=self.ranks.world,
            unknowns={name: (unknown.init, truths[name]) for name, unknown in self.unknowns.items()
                      if self.stepper.physical},
            logged={name: value.item() for name, value in self.problem.logged().items()},
            lbfgs_done=self.stepper.lbfgs_done, error_samples=self.error_samples, jackknife=self._jackknife_now,
            data_fit=fit, data=self.data, version=__version__)


def _progress_bar(total, initial, enabled):
    """A tqdm bar when asked for (tqdm is imported only then: the GPU machine may not have it)."""
    if not enabled:
        return contextlib.nullcontext()
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc="pinnfast", unit="step")
