"""``pinnfast`` command line: make synthetic Burgers data, infer ν from observations, use the trained run,
diagnose its gradients, and train a problem of your own (a pinnfast.PDE from a Python file)."""
import argparse
import contextlib
import dataclasses
import gc
import os
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np

from . import distributed
from ._version import __version__
from .annealing import GRAD_SETS, MEAN_KINDS
from .burgers import DEMO_BOX, FIELDS, BurgersInverse, make_observations
from .data import (DEFAULT_DATA_NU, default_data_path, load_observations, load_table, parse_column_map,
                   save_observations)
from .errors import PinnfastError, PinnfastWarning
from .pde import from_factory, symbol
from .runfolder import (CHECKPOINT, DIAGNOSE_JSON, DIAGNOSE_NPZ, DIAGNOSE_PNG, METRICS_CSV, PLOT, is_run_file,
                        load_checkpoint, locked_by_main, write_npz, write_result)
from .trainer import (BACKENDS, COMPILE_MIN_STEPS, DEVICES, MODELS, PROBLEMS, TrainConfig, Trainer, TrainingDiverged,
                      load_run, resume_target)

DEFAULTS = TrainConfig()
INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C
DISTRIBUTED = ("infer", "reproduce", "residual-field")  # the commands that run on several processes
WARMUP_NOTE = (f"ν is held at --nu-init for the first {DEFAULTS.nu_warmup} steps (warm-up: the network first fits "
               f"the data), and the reported ν is the mean ± standard deviation over the last "
               f"{DEFAULTS.average_last} steps after the warm-up, so a run needs at least "
               f"{DEFAULTS.nu_warmup + DEFAULTS.average_last} steps for the full window.")


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes as one message line (argparse would print the whole usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _checked(convert, accept, expected):
    """An argparse type: ``convert`` the text and refuse what ``accept`` rejects, saying what was expected."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value
    return parse


_positive_int = _checked(int, lambda value: value >= 1, "an integer >= 1")
_seed = _checked(int, lambda value: 0 <= value < 2 ** 63, "an integer from 0 to 2**63 - 1")
_positive_float = _checked(float, lambda value: 0 < value < float("inf"), "a positive number")
_fraction = _checked(float, lambda value: 0 < value < 1, "a number between 0 and 1, e.g. 0.01 for 1 %")
_rate = _checked(float, lambda value: 0 < value <= 1, "a number in (0, 1]")
_count = _checked(int, lambda value: value >= 0, "an integer >= 0")
# Training settings users tune: (flag, TrainConfig field, argparse type or choices, help).
TUNING = (
    ("--lr", "lr", _positive_float, "Adam learning rate of the network"),
    ("--nu-lr", "nu_lr", _positive_float, "Adam learning rate of log ν"),
    ("--decay-rate", "decay_rate", _rate, "learning-rate factor applied over every --decay-steps"),
    ("--decay-steps", "decay_steps", _positive_int, "steps over which the learning rate falls by --decay-rate"),
    ("--nu-warmup", "nu_warmup", _count, "steps for which ν is held at --nu-init"),
    ("--average-last", "average_last", _positive_int, "steps in ν's averaging window"),
    ("--anneal-period", "anneal_period", _positive_int, "steps between updates of the loss weights λ (m2, m4)"),
    ("--anneal-alpha", "anneal_alpha", _rate, "λ ← (1 − α) λ + α λ̂ (m2, m4)"),
    ("--anneal-grads", "anneal_grads", GRAD_SETS, "parameters in the annealing statistic: all, or the trunk's "
                                                  "weight matrices (the authors' code)"),
    ("--anneal-mean", "anneal_mean", MEAN_KINDS, "mean of |∇L_i|: over all parameters, or of the per-layer means "
                                                 "(the authors' code)"),
    ("--backend", "backend", BACKENDS,
     "auto: the fused Triton kernels on a GPU (unless --compile), torch ops otherwise"),
)
# Options that define a run: with --resume they must match the checkpoint (flag: config field).
RUN_OPTIONS = {"--model": "model", "--seed": "seed", "--nu-init": "nu_init", "--width": "width", "--depth": "depth",
               "--collocation": "n_collocation", "--batch-size": "batch_size", "--ensemble": "ensemble",
               "--anneal-weighted": "anneal_weighted", "--float64": "dtype", "--lbfgs-steps": "lbfgs_steps",
               "--compile": "compile", "--cuda-graphs": "cuda_graphs", "--bootstrap": "bootstrap",
               **{flag: field for flag, field, _, _ in TUNING}}


def _six_numbers(text):
    values = [float(c) for c in text.split(",")]
    return (values[:3], values[3:]) if len(values) == 6 else None


MAX_KEPT = 10000  # kept checkpoints a run may ask for (each is a file of the network and Adam's state)


def _step_list(text):
    """``0,1000,10000`` or ``START:STOP:EVERY`` (both ends included), or a mix of them: the sorted steps (None when
    malformed or more than ``MAX_KEPT``)."""
    steps = set()
    for item in text.split(","):
        parts = [int(part) for part in item.split(":")]
        if len(parts) == 3 and parts[2] >= 1:
            if len(range(parts[0], parts[1] + 1, parts[2])) + len(steps) > MAX_KEPT:
                return None
            steps.update(range(parts[0], parts[1] + 1, parts[2]))
        elif len(parts) == 1:
            steps.add(parts[0])
        else:
            return None
    return tuple(sorted(steps))


_steps = _checked(_step_list, lambda steps: steps and steps[0] >= 0,
                  f"steps >= 0 as a list 0,1000,10000 or a range START:STOP:EVERY, at most {MAX_KEPT} of them")
KEEP_HELP = ("keep the checkpoints of these steps (0: the initial network) in RUN_DIR/checkpoints for `pinnfast "
             "diagnose`: a list 0,1000,10000 or a range START:STOP:EVERY")
_box = _checked(_six_numbers, lambda box: all(-float("inf") < lo < hi < float("inf") for lo, hi in zip(*box)),
                "six numbers x0,y0,t0,x1,y1,t1 with x0 < x1, y0 < y1, t0 < t1")


def _parser():
    parser = _Parser(prog="pinnfast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pinnfast {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    make = commands.add_parser("make-data", help="write observations of an exact 2D Burgers solution",
                               description="Sample n uniform points in a box (default x, y in [-1, 1], t in [0, 1]) "
                                           "and write the exact (u, v) of Fletcher's travelling wave or of a "
                                           "two-front Cole-Hopf field, with optional Gaussian noise.")
    make.add_argument("--nu", type=_positive_float, required=True, help="true viscosity ν (> 0)")
    make.add_argument("--n", type=int, default=2000, help="number of points (default 2000, at least 10)")
    make.add_argument("--noise", type=float, default=0.0,
                      help="noise level σ: u and v get σ·std(u), σ·std(v) Gaussian noise (default 0)")
    make.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    make.add_argument("--field", choices=FIELDS, default="wave",
                      help="wave: Fletcher's travelling wave; cole-hopf: two fronts through the box centre, of "
                           "width about 8 nu (default wave)")
    make.add_argument("--box", type=_box, default=DEMO_BOX,
                      help="x0,y0,t0,x1,y1,t1: the sampled box (default -1,-1,0,1,1,1)")
    make.add_argument("--out", required=True, help="output file, .npz or .csv (its folder must exist)")

    infer = commands.add_parser("infer", help="infer the viscosity ν from (x, y, t, u, v) observations",
                                description="Fit a PINN to the observations and the 2D coupled Burgers equations "
                                            "with unknown ν. Writes RUN_DIR/result.json, metrics.csv, training.png "
                                            "and checkpoint.pt. " + WARMUP_NOTE)
    infer.add_argument("--data", help="observations: .npz with 1-D arrays x, y, t, u, v or .csv with those columns "
                                      f"(default: the shipped example {default_data_path().name}, ν = 0.02; with "
                                      "--resume: the run's own data)")
    infer.add_argument("--columns", help="column names in the data file when they differ, e.g. x=X,y=Y,t=time")
    infer.add_argument("--nu-init", type=_positive_float,
                       help=f"initial guess for ν, held for the first {DEFAULTS.nu_warmup} steps "
                            f"(default {DEFAULTS.nu_init})")
    infer.add_argument("--nu-true", type=_positive_float,
                       help="the true ν when known (synthetic data): its error is reported and plotted "
                            f"(the shipped example's, {DEFAULT_DATA_NU}, is known)")
    _run_options(infer, RUN_OPTIONS)
    _add_nproc(infer)

    train = commands.add_parser("train", help="train a PINN on your own problem (a pinnfast.PDE from a Python file)",
                                description="Train the problem that --problem returns, a pinnfast.PDE (residual, "
                                            "unknowns, conditions), with the same trainer, annealing, run folder "
                                            "and options as `pinnfast infer`; where the options speak of ν they "
                                            "mean the problem's unknowns (--nu-lr: the learning rate of those that "
                                            "set none; --nu-warmup: the steps for which all are held at their "
                                            "init). Writes RUN_DIR/result.json, metrics.csv, training.png and "
                                            "checkpoint.pt.")
    train.add_argument("--problem", help="MODULE:FUNCTION or FILE.py:FUNCTION, a function returning a pinnfast.PDE, "
                                         "e.g. examples/heat_inverse.py:make_problem (with --resume: the run's own)")
    train.add_argument("--data", help="a data file for the problem: the function is called with its path "
                                      "(with --resume: the run's own)")
    _run_options(train, [flag for flag in RUN_OPTIONS if flag != "--nu-init"])
    predict = commands.add_parser("predict", help="u and v of a trained run at your points",
                                  description="Evaluate the network of a run folder at the points of a file "
                                              "(.npz or .csv with columns x, y, t) and write x, y, t, u, v.")
    predict.add_argument("--run", required=True, help="run folder written by `pinnfast infer`")
    predict.add_argument("--points", required=True, help="points: .npz or .csv with columns x, y, t")
    predict.add_argument("--columns", help="column names in the points file when they differ, e.g. x=X,t=time")
    predict.add_argument("--out", required=True, help="output file, .npz or .csv (its folder must exist)")
    predict.add_argument("--device", choices=DEVICES, default="auto", help="auto, cpu or cuda (default auto)")

    field = commands.add_parser("residual-field", help="evaluate a trained run's residual field on a grid",
                                description="Evaluate u, v and the Burgers residuals r_u, r_v of a trained run "
                                            "on a grid x grid mesh of its (x, y) domain at the given times; "
                                            "write DIR/field.npz and DIR/field.png (|r|, and the error when "
                                            "--exact-nu is given).")
    field.add_argument("--run", required=True, help="run folder written by `pinnfast infer`")
    field.add_argument("--out", required=True, help="output folder (created if missing)")
    field.add_argument("--times", type=float, nargs="+", help="times t (default: start, middle, end of the domain)")
    field.add_argument("--grid", type=int, default=200, help="points per axis (default 200)")
    field.add_argument("--member", type=int, help="for an ensemble run (--ensemble): the member to evaluate")
    field.add_argument("--exact-nu", type=_positive_float,
                       help="viscosity of the exact travelling wave behind the data, to map the error too")
    field.add_argument("--device", choices=DEVICES, default="auto", help="auto, cpu or cuda (default auto)")
    _add_nproc(field)

    repro = commands.add_parser("reproduce", help="M1–M4 side by side on a problem of the paper",
                                description="Train the chosen models with the authors' settings (width 50, Adam "
                                            "1e-3 decayed x0.9 every 1000 steps, 40,001 steps, 128 points per "
                                            "term, the annealing conventions of the authors' code; Burgers: the "
                                            "infer defaults, uncompiled, ν = 0.05 started from 0.01 and from "
                                            "0.2) and write DIR/<problem>_table.md/.json, _fields.png, "
                                            "_curves.png and one run folder per model (and start).")
    repro.add_argument("problem", choices=["helmholtz", "klein-gordon", "burgers"], help="which problem")
    repro.add_argument("--models", default="m1,m2,m3,m4", help="comma-separated models (default m1,m2,m3,m4)")
    repro.add_argument("--steps", type=_positive_int,
                       help="steps per model (default: 40001; Burgers: its infer default)")
    repro.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    repro.add_argument("--device", choices=DEVICES, default="auto", help="auto, cpu or cuda (default auto)")
    repro.add_argument("--out", required=True, help="output folder")
    repro.add_argument("--overwrite", action="store_true", help="replace the runs of an earlier reproduce in --out")
    repro.add_argument("--keep-checkpoints", type=_steps, help=KEEP_HELP)
    repro.add_argument("--diagnose", action="store_true",
                       help="diagnose every run at its kept steps (default: 0 and each quarter of the run) and write "
                            "DIR/<problem>_diagnose.md/.json (σ_max of the loss Hessian, imbalance ratio) and "
                            "_gradients.png (per-layer gradient histograms at the last kept step)")
    repro.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_nproc(repro)

    diagnose = commands.add_parser("diagnose", help="the gradient pathology of a run: per-layer gradient "
                                                    "histograms, imbalance ratio, largest Hessian eigenvalue",
                                   description="For checkpoints of a run (kept with --keep-checkpoints), on one "
                                               "seeded batch in float64: the per-layer distributions of |∇_W L_r| "
                                               "and of each |∇_W L_i|, the imbalance ratio max|∇L_r| / mean|∇L_i| "
                                               "and σ_max, the largest eigenvalue of the total loss's Hessian with "
                                               "respect to the network parameters (Lanczos on Hessian-vector "
                                               "products). Writes gradients.png, diagnose.npz and diagnose.json.")
    diagnose.add_argument("--run", required=True, help="run folder written by `pinnfast infer` or `reproduce`")
    diagnose.add_argument("--steps", type=_steps,
                          help="kept steps to diagnose, e.g. 0,1000 (default: every kept step, else the last "
                               "checkpoint)")
    diagnose.add_argument("--out", help="output folder (default: the run folder)")
    diagnose.add_argument("--tol", type=_fraction, default=1e-3,
                          help="Lanczos stops when the Ritz residual is below tol × σ_max (default 1e-3)")
    diagnose.add_argument("--max-iter", type=_positive_int, default=100,
                          help="at most this many Hessian-vector products (default 100)")
    diagnose.add_argument("--seed", type=_seed, default=0,
                          help="seed of the batch and of Lanczos' start vector (default 0)")
    diagnose.add_argument("--device", choices=DEVICES, default="cpu", help="cpu, cuda or auto (default cpu)")
    return parser


def _add_nproc(command):
    command.add_argument("--nproc", type=_positive_int,
                         help="run on this many processes of this machine, data-parallel (starts torchrun for you: "
                              "one process per GPU, or gloo processes on the CPU; default 1)")


def _run_options(command, run_flags):
    """The options a training command shares with `infer` (run folder, model, optimiser, annealing, resume);
    ``run_flags`` are those that define its runs."""
    command.add_argument("--out", required=True, help="run folder (new or empty, unless --resume or --overwrite)")
    command.add_argument("--steps", type=_positive_int,
                         help=f"total optimiser steps, warm-up included (default {DEFAULTS.steps}; with --resume: "
                              "the run's own target, which --steps may raise)")
    command.add_argument("--model", choices=list(MODELS),
                         help="m1 plain MLP, m2 MLP + annealing, m3 modified MLP, m4 modified MLP + annealing "
                              f"(default {DEFAULTS.model})")
    command.add_argument("--seed", type=_seed, help=f"random seed (default {DEFAULTS.seed})")
    command.add_argument("--width", type=_positive_int, help=f"network width (default {DEFAULTS.width})")
    command.add_argument("--depth", type=_positive_int,
                         help=f"width-to-width layers of the network (default {DEFAULTS.depth})")
    command.add_argument("--collocation", type=_positive_int,
                         help=f"collocation points drawn per step (default {DEFAULTS.n_collocation})")
    command.add_argument("--batch-size", type=_positive_int,
                         help=f"observations per step (default {DEFAULTS.batch_size})")
    for flag, field, kind, text in TUNING:
        typed = dict(choices=kind) if isinstance(kind, tuple) else dict(type=kind)
        command.add_argument(flag, **typed, help=f"{text} (default {getattr(DEFAULTS, field)})")
    command.add_argument("--anneal-weighted", action="store_const", const=True,
                         help="annealing statistic from ∇(λ_i L_i) with the current λ_i, as the authors' code "
                              "(default: ∇L_i, the paper's formula)")
    command.add_argument("--lbfgs-steps", type=_count,
                         help="after the Adam steps, this many L-BFGS iterations on a fixed batch (4 × --collocation "
                              "points, every observation), as DeepXDE and the original PINN papers finish; ν is "
                              "then reported after both (default 0: none)")
    command.add_argument("--float64", action="store_const", const="float64",
                         help="train in float64 (torch backend; about 2× the time of the default float32)")
    command.add_argument("--compile", action=argparse.BooleanOptionalAction,
                         help="compile the losses with torch.compile (torch backend): about half the time per step "
                              "on a CPU, after a first compile of about half a minute on 2 cores (seconds once "
                              "torch's cache holds it); if the compiler fails the run goes on uncompiled, with a "
                              "warning. Default: on for an `infer` run on the CPU (one process, float32, one "
                              f"network) of at least {COMPILE_MIN_STEPS} steps when a C++ compiler is found, off "
                              "otherwise")
    command.add_argument("--cuda-graphs", action="store_const", const=True,
                         help="on a CUDA GPU, replay each kind of training step as a CUDA graph after the ν "
                              "warm-up: one launch per step instead of hundreds (Adam then runs capturable: results "
                              "differ from an eager run's in the last bits)")
    command.add_argument("--max-steps", type=_positive_int,
                         help="while ν still moves at --steps (by more than --tol/4 between the quarters of the "
                              "run's second half), the target is raised by half at a time up to this many steps "
                              "(default 3 × --steps; equal to --steps: never)")
    command.add_argument("--min-steps", type=_positive_int,
                         help="the run ends as soon as ν has settled (checked every 500 steps from this step on: "
                              "ν moved by at most --tol/4 between the two quarters of the run's second half and the "
                              f"data loss no longer falls), else at --steps (default {DEFAULTS.min_steps})")
    command.add_argument("--fixed-steps", action="store_const", const=False, dest="stop_when_settled",
                         help="train exactly --steps steps: no early end when ν settles, no extension")
    command.add_argument("--ensemble", type=_positive_int,
                         help="train K independently initialised networks, each with its own ν, collocation points "
                              "and batches of the data, as one batched model, and report ν as their mean ± spread "
                              "(default 1: one network)")
    command.add_argument("--bootstrap", action="store_const", const=True,
                         help="with --ensemble: each network trains on its own bootstrap resample of the "
                              "observations (about 63 %% of the distinct points each), not on all of them")
    command.add_argument("--tol", type=_fraction,
                         help="relative accuracy wanted of ν: a larger error bar (the sub-boxes of the domain "
                              "disagree on ν) or ensemble spread, or a drift of ν within the averaging window larger "
                              "than a quarter of it, gives the warning that ν is not identified well by the data "
                              f"(default {DEFAULTS.tol})")
    command.add_argument("--device", choices=DEVICES, default="auto",
                         help="auto picks the GPU when there is one, else the CPU (default auto)")
    command.add_argument("--resume", action="store_true",
                         help="continue the run in --out from its checkpoint, with its data and settings (options "
                              f"that define a run, {', '.join(run_flags)}, must match or be left out); the "
                              "result equals an uninterrupted run")
    command.add_argument("--overwrite", action="store_true", help="delete the run in --out and start a new one")
    command.add_argument("--keep-checkpoints", type=_steps, help=KEEP_HELP)
    command.add_argument("--checkpoint-every", type=_positive_int,
                         help="steps between checkpoints, metric writes and NaN checks "
                              f"(default {DEFAULTS.checkpoint_every})")
    command.add_argument("--quiet", action="store_true", help="no progress bar")


def _output_file(path):
    """An .npz or .csv output path whose folder exists and that is not a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise PinnfastError(f"--out {path} is a folder; give a file name ending in .npz or .csv")
    if path.suffix.lower() not in (".npz", ".csv"):
        raise PinnfastError(f"--out {path}: unknown data format {path.suffix!r}; use .npz or .csv")
    if not path.parent.is_dir():
        raise PinnfastError(f"--out {path}: folder {path.parent} does not exist")
    return path


def _output_folder(path):
    """An output folder path that is not a file (created when written to)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PinnfastError(f"--out {path} is a file, not a folder")
    return path


def _reproduce(args):
    from .reproduce import diagnose_markdown, reproduce, table_markdown

    with locked_by_main(args.out, distributed.Ranks()):
        rows, diagnosed = reproduce(args.problem, [m.strip() for m in args.models.split(",") if m.strip()],
                                    _output_folder(args.out), args.steps, args.device, args.seed,
                                    progress=not args.quiet, overwrite=args.overwrite,
                                    keep_checkpoints=args.keep_checkpoints, diagnose=args.diagnose)
    print(table_markdown(args.problem, rows))
    if diagnosed:
        print(diagnose_markdown(args.problem, diagnosed, args.seed))


def _diagnose(args):
    from .diagnose import diagnose_run

    out = _output_folder(args.out) if args.out else Path(args.run)
    with locked_by_main(out, distributed.Ranks()):
        summaries = diagnose_run(args.run, args.steps, out, args.tol, args.max_iter, args.seed, args.device)
    for summary in summaries:
        terms = [name[len("imbalance_"):] for name in summary if name.startswith("imbalance_")]
        state = "converged" if summary["lanczos_converged"] else (
            f"NOT converged: relative residual {summary['lanczos_residual']:.2g}; raise --max-iter")
        print(f"step {summary['step']}: σ_max = {summary['sigma_max']:.4g} (Lanczos, {summary['lanczos_iterations']} "
              f"Hessian-vector products, {state}); " + ", ".join(
                  f"imbalance max|∇L_r|/mean|∇L_{t}| = {summary['imbalance_' + t]:.4g}, λ_{t} = "
                  f"{summary['lambda_' + t]:.4g}" for t in terms))
    print(f"wrote {out / DIAGNOSE_PNG}, {DIAGNOSE_NPZ} and {DIAGNOSE_JSON}")


def _burgers_run(args):
    """The trained Burgers run of ``--run`` (runs of `reproduce helmholtz|klein-gordon` have no u, v or ν)."""
    run = load_run(args.run, args.device)
    if not isinstance(run.problem, BurgersInverse):
        raise PinnfastError(f"{args.run}: {args.command} evaluates Burgers runs (x, y, t → u, v); this run is a "
                            f"{run.config.problem} run")
    return run


def _residual_field(args):
    from .field import residual_field
    from .models import domain_box
    from .plots import plot_field

    out = _output_folder(args.out)
    run = _burgers_run(args)
    problem = run.problem
    if run.network.members is not None:  # an ensemble: the field of one member, with its own ν
        if args.member is None:
            raise PinnfastError(f"{args.run} is an ensemble of {run.network.members} networks; choose one with "
                                f"--member 0 to {run.network.members - 1}")
        problem = BurgersInverse(run.network.member(args.member), run.problem.nu[args.member].item())
    elif args.member is not None:
        raise PinnfastError(f"--member applies to ensemble runs; {args.run} is one network")
    lo, hi = domain_box(problem.network)
    times = args.times or [lo[2], (lo[2] + hi[2]) / 2, hi[2]]
    field = residual_field(problem, times, args.grid, args.exact_nu, shard=True)  # over torchrun's ranks, if any
    if not distributed.Ranks().main:
        return
    out.mkdir(parents=True, exist_ok=True)
    write_npz(out / "field.npz", field)
    plot_field(field, out / "field.png")
    rms = float(np.sqrt(np.mean(field["r_u"] ** 2 + field["r_v"] ** 2)))
    print(f"residual field at t = {', '.join(f'{t:.3g}' for t in times)}: rms |r| = {rms:.3g}; "
          f"wrote {out / 'field.npz'} and {out / 'field.png'}")


def _predict(args):
    import torch

    from .models import domain_box

    out = _output_file(args.out)
    if out.resolve() == Path(args.points).resolve():
        raise PinnfastError(f"--out {out} is the --points file; write the predictions to another file")
    if is_run_file(out.name) and (out.parent / CHECKPOINT).is_file():
        raise PinnfastError(f"--out {out} is a file of the run in {out.parent}; write the predictions to another file")
    columns = parse_column_map(args.columns, ("x", "y", "t")) if args.columns else None
    points = load_table(args.points, ("x", "y", "t"), columns, min_points=1)
    run = _burgers_run(args)
    xyt = np.column_stack([points[c] for c in ("x", "y", "t")])
    lo, hi = map(np.asarray, domain_box(run.network))
    slack = 1e-5 * (hi - lo)  # the box is stored in float32
    outside = int(np.sum(np.any((xyt < lo - slack) | (xyt > hi + slack), axis=1)))
    if outside:
        warnings.warn(f"{args.points}: {outside} of {len(xyt)} points lie outside the run's box "
                      f"{np.round(lo, 4).tolist()}–{np.round(hi, 4).tolist()}; the network extrapolates there",
                      PinnfastWarning)
    device = next(run.network.parameters()).device
    with torch.no_grad():
        uv = torch.cat([run.uv(chunk.to(device)).cpu() for chunk in
                        torch.tensor(xyt, dtype=torch.float32).split(1 << 16)]).double().numpy()
    save_observations(out, dict(points, u=uv[:, 0], v=uv[:, 1]))
    print(f"wrote u, v at {len(xyt)} points to {out} (run {args.run}, nu = {run.nu:.6g})")


def _make_data(args):
    out = _output_file(args.out)
    columns = make_observations(args.nu, args.n, args.noise, args.seed, args.box, args.field)
    save_observations(out, columns)
    box = ",".join(f"{v:g}" for v in (*args.box[0], *args.box[1]))
    print(f"wrote {args.n} observations ({args.field}, nu={args.nu}, noise={args.noise}, box {box}) to {out}")


def _dest(flag):
    """argparse's attribute name for a flag."""
    return flag.lstrip("-").replace("-", "_")


def _resume_state(args, out):
    """The checkpoint to resume, after checking that the options given can continue it."""
    if args.overwrite:
        raise PinnfastError("--resume continues the run in --out and --overwrite deletes it: choose one")
    if getattr(args, "columns", None) and not args.data:
        raise PinnfastError("--columns describes a --data file; give both, or neither to use the run's own data")
    state = load_checkpoint(out)
    config = dataclasses.asdict(TrainConfig.saved(state["config"]))  # fields added since the run: their defaults
    declared = config["problem"] not in PROBLEMS
    if args.command == "infer" and config["problem"] != "burgers":
        origin = "`pinnfast train`; continue it with `pinnfast train --resume`" if declared else "`pinnfast reproduce`"
        raise PinnfastError(f"{out} holds a {config['problem']} run (from {origin}); `infer --resume` continues "
                            "Burgers runs only")
    if args.command == "train" and not declared:
        raise PinnfastError(f"{out} holds a {config['problem']} run; `train --resume` continues runs of problems "
                            "declared with pinnfast.PDE (use `pinnfast infer --resume` for Burgers)")
    for flag, field in RUN_OPTIONS.items():
        given = getattr(args, _dest(flag), None)
        if given is not None and given != config[field]:
            shown = flag if given is True else f"--no-{flag[2:]}" if given is False else f"{flag} {given}"
            raise PinnfastError(f"{shown} does not match the run in {out} ({config[field]}); leave it out to "
                                "continue that run, or start a new one in another folder")
    target = resume_target(state, args.steps, out)
    if state["step"] >= target:
        print(f"{out}: the run is complete ({state['step']} of {target} steps); nothing changed (raise --steps "
              "to train further)")
        return None
    return state


# Options that say when to write, warn and stop, not what is trained: a resume may change them.
STOPPING = ("checkpoint_every", "tol", "max_steps", "min_steps", "stop_when_settled", "keep_checkpoints")


def _new_config(args):
    """The TrainConfig of a new run: the options given, defaults for the rest."""
    given = {field: getattr(args, _dest(flag), None) for flag, field in RUN_OPTIONS.items()}
    given.update({name: getattr(args, name) for name in STOPPING}, steps=args.steps)
    if given["compile"] is None:
        given["compile"] = "auto"
    return TrainConfig(**{field: value for field, value in given.items() if value is not None})


def _resumed(trainer, args):
    """A resumed trainer with the options that say when to write, warn and stop (not the run itself)."""
    for name in STOPPING:
        if getattr(args, name) is not None:
            setattr(trainer.config, name, getattr(args, name))
    trainer.config.validate()
    return trainer


def _infer(args):
    out = Path(args.out)
    with locked_by_main(out, distributed.Ranks()):
        _infer_in(args, out)


def _infer_in(args, out):
    if args.resume and _resume_state(args, out) is None:
        return
    data = args.data or (None if args.resume else default_data_path())
    columns = parse_column_map(args.columns) if args.columns else None
    observations = load_observations(data, columns) if data is not None else None
    if args.resume:
        trainer = _resumed(Trainer.resume(observations, out, args.device, steps=args.steps, data_path=data,
                                          columns=columns, nu_true=args.nu_true), args)
    else:
        shipped = args.data is None and args.nu_true is None
        trainer = Trainer(observations, _new_config(args), out, args.device, data_path=data, columns=columns,
                          overwrite=args.overwrite, nu_true=DEFAULT_DATA_NU if shipped else args.nu_true)
    _train_and_report(trainer, args, out)


def _train(args):
    out = Path(args.out)
    with locked_by_main(out, distributed.Ranks()):
        _train_in(args, out)


def _train_in(args, out):
    if args.resume:
        if _resume_state(args, out) is None:
            return
        pde = from_factory(args.problem, args.data) if args.problem else None
        trainer = _resumed(Trainer.resume(pde, out, args.device, steps=args.steps, data_path=args.data), args)
    else:
        if not args.problem:
            raise PinnfastError("--problem is needed: MODULE:FUNCTION or FILE.py:FUNCTION, the function that returns "
                                "your pinnfast.PDE (e.g. examples/heat_inverse.py:make_problem)")
        trainer = Trainer(from_factory(args.problem, args.data), _new_config(args), out, args.device,
                          data_path=args.data, overwrite=args.overwrite)
    _train_and_report(trainer, args, out)


def _train_and_report(trainer, args, out):
    """Train to the target, write the result and the figure, print each learned unknown (Ctrl-C and a diverged
    run keep their last checkpoint and plot the history so far)."""
    if trainer.config.compile and not trainer.finished and not args.quiet:
        print("pinnfast: compiling the losses with torch.compile first (about half a minute on 2 cores the first "
              "time, seconds once torch has cached it; --no-compile trains without)", file=sys.stderr)
    try:
        result = trainer.run(progress=not args.quiet)
    except (KeyboardInterrupt, TrainingDiverged) as exc:
        resume = f"pinnfast {args.command} --out {shlex.quote(str(out))} --resume"
        if trainer.ranks.world > 1:  # a run resumes on as many processes
            resume += f" --nproc {trainer.ranks.world}"
        where = (f"the last checkpoint (step {trainer.checkpoint_step}) is in {out / CHECKPOINT}; continue with "
                 f"`{resume}`" if trainer.checkpoint_step is not None else "no checkpoint had been written yet")
        # the history up to the stop is worth a look; a second Ctrl-C skips it and keeps the message
        with contextlib.suppress(KeyboardInterrupt):
            if trainer.ranks.main and (out / METRICS_CSV).exists():
                _plot(out, trainer.result())
        if isinstance(exc, TrainingDiverged):
            raise
        raise _Interrupted(f"interrupted at step {trainer.step}; {where}") from None
    if not trainer.ranks.main:
        return
    write_result(out, result)
    _plot(out, result)
    learned = [_nu_message(result, name) for name in trainer.unknowns] or [f"loss = {result['loss']:.4g}"]
    compiling = f", {result['compile_seconds']:.1f} s of it compiling" if result["compile_seconds"] else ""
    print("\n".join(learned) + f" after {result['steps']} steps ({result['seconds']:.1f} s{compiling}); results in "
          f"{out}")


class _Interrupted(Exception):
    """Ctrl-C during training: the message says where the run can be resumed from."""


def _plot(out, summary):
    """training.png, unless matplotlib is missing (installed with --no-deps): the results stand without it."""
    try:
        from .plots import plot_training
    except ModuleNotFoundError as missing:
        print(f"pinnfast: note: no {PLOT} ({missing.name} is not installed); the results are in {out}",
              file=sys.stderr)
        return
    plot_training(out / METRICS_CSV, out / PLOT, summary)


def _nu_message(result, name="nu"):
    """``nu = … ± …`` (any unknown's ``name = … ± …``) with the steps it was averaged over, or a warning that it
    never left its initial value."""
    warmup = result[f"{name}_warmup"]
    if result[f"{name}_window"] is None:
        return (f"{name} = {result[name]:.6g}: {symbol(name)} was held at its initial value for the whole run "
                f"(warm-up of {warmup} steps); train longer")
    first, last = result[f"{name}_window"]
    sigma = result.get(f"{name}_sigma")
    bar = f" ± {sigma:.2g}" if sigma is not None else ""
    if f"{name}_spread" in result:
        text = (f"{name} = {result[name]:.6g}{bar} (error bar: the {len(result[f'{name}_members'])} ensemble "
                f"members' spread ± {result[f'{name}_spread']:.2g} with their sub-box error; each averaged over steps "
                f"{first}–{last} after a {warmup}-step warm-up)")
    else:
        text = (f"{name} = {result[name]:.6g}{bar} (error bar from the sub-boxes of the domain; mean over steps "
                f"{first}–{last} after a {warmup}-step warm-up, jitter ± {result[f'{name}_std']:.2g}; last iterate "
                f"{result[f'{name}_last']:.6g})")
    if f"{name}_true" in result:
        text += f"; true {result[f'{name}_true']:.6g}: error {100 * result[f'{name}_error']:+.2f} %"
    if f"{name}_lbfgs" in result:
        text += f"; after {result['lbfgs_steps']} L-BFGS iterations: {name} = {result[f'{name}_lbfgs']:.6g}"
        if f"{name}_lbfgs_error" in result:
            text += f" ({100 * result[f'{name}_lbfgs_error']:+.2f} %)"
    return text


def _show_note(message, category, filename, lineno, file=None, line=None):
    """PinnfastWarning as one line on stderr; every other warning as Python shows it."""
    if issubclass(category, PinnfastWarning):
        print(f"pinnfast: note: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def command():
    """The ``pinnfast`` program (and ``python -m pinnfast``): :func:`main`, whose exit code it returns, then
    ``gc.freeze()``, so that Python's shutdown no longer runs the garbage collector over the 300,000 objects that
    torch, its compiler stack and matplotlib leave alive: 0.7–0.9 s of the main job on the 2-core CPU
    (BENCHMARKS.md), spent on nothing the command needs (every file it wrote is closed by then). Exit handlers
    still run, and objects still go when their last reference does. Not in :func:`main`, which tests and scripts
    call in a process that goes on."""
    code = main()
    gc.freeze()
    return code


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    nproc = getattr(args, "nproc", None)
    if nproc is not None and nproc > 1 and not distributed.launched():
        return distributed.launch(nproc, argv)
    with warnings.catch_warnings(), distributed.joined() as ranks, _speaking(ranks.main):
        warnings.showwarning = _show_note
        warnings.simplefilter("always" if ranks.main else "ignore", PinnfastWarning)
        code, message = _command(args, ranks)
        if message is not None and ranks.main:
            print(message, file=sys.stderr)
    return code


def _command(args, ranks):
    """Run the command: its exit code, and the line that says why it stopped (None when it did not)."""
    try:
        if ranks.world > 1 and args.command not in DISTRIBUTED:
            raise PinnfastError(f"{args.command} runs in one process; start it without torchrun")
        nproc = getattr(args, "nproc", None)
        if nproc is not None and nproc != ranks.world:
            raise PinnfastError(f"--nproc {nproc}, but torchrun started {ranks.world} processes; leave --nproc out "
                                "under torchrun")
        {"make-data": _make_data, "infer": _infer, "predict": _predict, "residual-field": _residual_field,
         "reproduce": _reproduce, "diagnose": _diagnose, "train": _train}[args.command](args)
    except TrainingDiverged as exc:
        return 3, f"pinnfast: {exc}"
    except PinnfastError as exc:
        return 2, f"pinnfast: error: {exc}"
    except _Interrupted as exc:
        return INTERRUPTED, f"pinnfast: {exc}"
    except KeyboardInterrupt:
        return INTERRUPTED, "pinnfast: interrupted"
    except OSError as exc:  # a path the system refuses: permissions, a full disk, a file where a folder goes
        where = f"{exc.filename}: " if exc.filename else ""
        return 2, f"pinnfast: error: {where}{exc.strerror or exc}"
    return 0, None


@contextlib.contextmanager
def _speaking(main):
    """Rank 0 speaks for the run: another rank's printed output is dropped (its notes and errors too, by the
    caller); every rank reads the same input, so rank 0 meets the same problems."""
    if main:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


if __name__ == "__main__":
    sys.exit(command())
