"""The ``pinnfast`` command line's options: the parser, its argument types, and the training options that map
onto :class:`~pinnfast.config.TrainConfig` fields (which of them define a run, and which a resume may change, comes
from the fields' groups)."""
import argparse

from ._version import __version__
from .annealing import GRAD_SETS, MEAN_KINDS
from .burgers import DEMO_BOX, FIELDS
from .config import BACKENDS, COMPILE_MIN_STEPS, DEVICES, MODELS, TrainConfig, fields_in, run_flags
from .data import DEFAULT_DATA_NU, default_data_path

DEFAULTS = TrainConfig()
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
_threads = _checked(str, lambda text: text == "auto" or (text.isdigit() and int(text) >= 1),
                    "auto or an integer >= 1")
_count = _checked(int, lambda value: value >= 0, "an integer >= 0")
# Training settings users tune: (TrainConfig field, argparse type or choices, help); their flags are the fields'.
TUNING = (
    ("lr", _positive_float, "Adam learning rate of the network"),
    ("nu_lr", _positive_float, "Adam learning rate of log ν"),
    ("decay_rate", _rate, "learning-rate factor applied over every --decay-steps"),
    ("decay_steps", _positive_int, "steps over which the learning rate falls by --decay-rate"),
    ("nu_warmup", _count, "steps for which ν is held at --nu-init"),
    ("average_last", _positive_int, "steps in ν's averaging window"),
    ("anneal_period", _positive_int, "steps between updates of the loss weights λ (m2, m4)"),
    ("anneal_alpha", _rate, "λ ← (1 − α) λ + α λ̂ (m2, m4)"),
    ("anneal_grads", GRAD_SETS, "parameters in the annealing statistic: all, or the trunk's weight matrices (the "
                                "authors' code)"),
    ("anneal_mean", MEAN_KINDS, "mean of |∇L_i|: over all parameters, or of the per-layer means (the authors' "
                                "code)"),
    ("backend", BACKENDS, "auto: the fused Triton kernels on a GPU (unless --compile), torch ops otherwise"),
)
# Options that define a run: with --resume they must match the checkpoint (flag: config field).
RUN_OPTIONS = run_flags()
# Options that say when to write, warn and stop, not what is trained: a resume may change them.
STOPPING = fields_in("stopping")


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


def parser(description):
    """The ``pinnfast`` parser, with its own ``description``."""
    parser = _Parser(prog="pinnfast", description=description)
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
                                         "e.g. examples/heat_inverse.py:make_problem (with --resume: the same again, whose source "
                                         "must be the run's: a run folder never names code to run)")
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
    flags = {field: flag for flag, field in RUN_OPTIONS.items()}
    for field, kind, text in TUNING:
        typed = dict(choices=kind) if isinstance(kind, tuple) else dict(type=kind)
        command.add_argument(flags[field], **typed, help=f"{text} (default {getattr(DEFAULTS, field)})")
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
    command.add_argument("--threads", type=_threads, default="auto",
                         help="CPU threads: auto takes the cores other processes leave free, checked at every "
                              "checkpoint (runs that share the cores take one each; default auto, or OMP_NUM_THREADS "
                              "when set), or a number")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
