"""``pinnfast`` command line: make synthetic Burgers data, infer ν from observations."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .burgers import BurgersInverse, make_observations
from .data import default_data_path, load_observations, save_observations
from .errors import PinnfastError
from .trainer import DEVICES, METRICS_CSV, MODELS, PLOT, RESULT, TrainConfig, Trainer, TrainingDiverged

DEFAULTS = TrainConfig()


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes as one message line (argparse would print the whole usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser():
    parser = _Parser(prog="pinnfast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    make = commands.add_parser("make-data", help="write observations of the exact 2D Burgers travelling wave",
                               description="Sample n uniform points with x, y in [-1, 1] and t in [0, 1] and write the exact (u, v) "
                                           "of Fletcher's travelling wave, with optional Gaussian noise.")
    make.add_argument("--nu", type=float, required=True, help="true viscosity ν (> 0)")
    make.add_argument("--n", type=int, default=2000, help="number of points (default 2000, at least 10)")
    make.add_argument("--noise", type=float, default=0.0,
                      help="noise level σ: u and v get σ·std(u), σ·std(v) Gaussian noise (default 0)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--out", required=True, help="output file, .npz or .csv")

    infer = commands.add_parser("infer", help="infer the viscosity ν from (x, y, t, u, v) observations",
                                description="Fit a PINN to the observations and the 2D coupled Burgers equations "
                                            "with unknown ν. Writes RUN_DIR/result.json, metrics.csv, "
                                            "training.png and checkpoint.pt.")
    infer.add_argument("--data", help="observations (.npz with arrays x,y,t,u,v or .csv with header x,y,t,u,v); "
                                      f"default: the shipped example ({default_data_path().name})")
    infer.add_argument("--out", required=True, help="run folder for results, metrics, plot and checkpoint")
    infer.add_argument("--steps", type=int, default=DEFAULTS.steps,
                       help=f"total optimiser steps (default {DEFAULTS.steps})")
    infer.add_argument("--model", choices=list(MODELS), default=DEFAULTS.model,
                       help="m1 plain MLP, m2 MLP + annealing, m3 modified MLP, m4 modified MLP + annealing "
                            f"(default {DEFAULTS.model})")
    infer.add_argument("--device", choices=DEVICES, default="auto",
                       help="auto picks the GPU when there is one, else the CPU (default auto)")
    infer.add_argument("--seed", type=int, default=DEFAULTS.seed, help=f"random seed (default {DEFAULTS.seed})")
    infer.add_argument("--nu-init", type=float, default=DEFAULTS.nu_init,
                       help=f"initial guess for ν, > 0 (default {DEFAULTS.nu_init})")
    infer.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its checkpoint (its settings; --steps may raise the "
                            "total); the result equals an uninterrupted run with the same seed")
    infer.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every,
                       help="steps between checkpoints, metric writes and NaN checks "
                            f"(default {DEFAULTS.checkpoint_every})")
    infer.add_argument("--quiet", action="store_true", help="no progress bar")
    field = commands.add_parser("residual-field", help="evaluate a trained run's residual field on a grid",
                                description="Evaluate u, v and the Burgers residuals r_u, r_v of a trained run "
                                            "on a grid x grid mesh of its (x, y) domain at the given times; "
                                            "write OUT.npz and OUT.png (|r|, and the error when --exact-nu "
                                            "is given).")
    field.add_argument("--run", required=True, help="run folder written by `pinnfast infer`")
    field.add_argument("--out", required=True, help="output path without suffix (OUT.npz and OUT.png)")
    field.add_argument("--times", type=float, nargs="+", help="times t (default: start, middle, end of the domain)")
    field.add_argument("--grid", type=int, default=200, help="points per axis (default 200)")
    field.add_argument("--exact-nu", type=float,
                       help="viscosity of the exact travelling wave behind the data, to map the error too")
    field.add_argument("--device", choices=DEVICES, default="auto", help="auto, cpu or cuda (default auto)")
    repro = commands.add_parser("reproduce", help="M1–M4 side by side on a problem of the paper",
                                description="Train the chosen models with the authors' settings (width 50, Adam "
                                            "1e-3 decayed x0.9 every 1000 steps, 40,001 steps, 128 points per "
                                            "term, the annealing conventions of the authors' code; Burgers: the "
                                            "infer defaults) and write DIR/<problem>_table.md/.json, _fields.png, "
                                            "_curves.png and one run folder per model.")
    repro.add_argument("problem", choices=["helmholtz", "klein-gordon", "burgers"], help="which problem")
    repro.add_argument("--models", default="m1,m2,m3,m4", help="comma-separated models (default m1,m2,m3,m4)")
    repro.add_argument("--steps", type=int, help="steps per model (default: 40001; Burgers: its infer default)")
    repro.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    repro.add_argument("--device", choices=DEVICES, default="auto", help="auto, cpu or cuda (default auto)")
    repro.add_argument("--out", required=True, help="output folder")
    repro.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _reproduce(args):
    from .reproduce import reproduce, table_markdown

    rows = reproduce(args.problem, [m.strip() for m in args.models.split(",") if m.strip()], args.out, args.steps,
                     args.device, args.seed, progress=not args.quiet)
    print(table_markdown(args.problem, rows))


def _residual_field(args):
    from .field import domain_box, plot_field, residual_field
    from .trainer import load_trained, resolve_device

    problem = load_trained(args.run, resolve_device(args.device))
    if not isinstance(problem, BurgersInverse):
        raise PinnfastError(f"{args.run}: residual-field evaluates Burgers runs; this run is not one")
    if args.exact_nu is not None and not args.exact_nu > 0:
        raise PinnfastError(f"--exact-nu must be positive, got {args.exact_nu}")
    lo, hi = domain_box(problem.network)
    times = args.times or [lo[2], (lo[2] + hi[2]) / 2, hi[2]]
    field = residual_field(problem, times, args.grid, args.exact_nu)
    np.savez(f"{args.out}.npz", **field)
    plot_field(field, f"{args.out}.png")
    rms = float(np.sqrt(np.mean(field["r_u"] ** 2 + field["r_v"] ** 2)))
    print(f"residual field at t = {', '.join(f'{t:.3g}' for t in times)}: rms |r| = {rms:.3g}; "
          f"wrote {args.out}.npz and {args.out}.png")


def _make_data(args):
    columns = make_observations(args.nu, args.n, args.noise, args.seed)
    save_observations(args.out, columns)
    print(f"wrote {args.n} observations (nu={args.nu}, noise={args.noise}) to {args.out}")


def _infer(args):
    observations = load_observations(args.data or default_data_path())
    if args.resume:
        trainer = Trainer.resume(observations, args.out, args.device, steps=args.steps)
    else:
        config = TrainConfig(model=args.model, steps=args.steps, seed=args.seed, nu_init=args.nu_init,
                             checkpoint_every=args.checkpoint_every)
        trainer = Trainer(observations, config, args.out, args.device)
    out = Path(args.out)
    try:
        result = trainer.run(progress=not args.quiet)
    finally:
        if (out / METRICS_CSV).exists():
            from .plots import plot_training
            plot_training(out / METRICS_CSV, out / PLOT)
    result["data"] = str(args.data or default_data_path())
    (out / RESULT).write_text(json.dumps(result, indent=2) + "\n")
    print(f"nu = {result['nu']:.6g} (mean of the last {trainer.config.average_last} steps; last iterate "
          f"{result['nu_last']:.6g}) after {result['steps']} steps ({result['seconds']:.1f} s); results in {out}")


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        {"make-data": _make_data, "infer": _infer, "residual-field": _residual_field,
         "reproduce": _reproduce}[args.command](args)
    except TrainingDiverged as exc:
        print(f"pinnfast: {exc}", file=sys.stderr)
        return 3
    except PinnfastError as exc:
        print(f"pinnfast: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
