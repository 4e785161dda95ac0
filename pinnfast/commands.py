"""The ``pinnfast`` commands, each from its parsed arguments: make-data, infer, train, predict, residual-field,
reproduce and diagnose."""
import contextlib
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, distributed, threads
from .burgers import BurgersInverse, make_observations
from .checkpoint import check_options, load_run, resume_target
from .cli_options import RUN_OPTIONS, STOPPING
from .config import TrainConfig
from .data import (DEFAULT_DATA_NU, default_data_path, load_observations, load_table, parse_column_map,
                   save_observations)
from .errors import PinnfastError, PinnfastWarning, TrainingDiverged
from .pde import from_factory
from .report import nu_message
from .runfolder import (CHECKPOINT, DIAGNOSE_JSON, DIAGNOSE_NPZ, DIAGNOSE_PNG, METRICS_CSV, PLOT, is_run_file,
                        locked_by_main, read_result, write_npz, write_result)
from .trainer import Trainer


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
    """The checkpoint to resume (upgraded), after checking that the options given can continue it."""
    if args.overwrite:
        raise PinnfastError("--resume continues the run in --out and --overwrite deletes it: choose one")
    if getattr(args, "columns", None) and not args.data:
        raise PinnfastError("--columns describes a --data file; give both, or neither to use the run's own data")
    state = checkpoint.read(out)
    check_options(state, out, args.command, {flag: getattr(args, _dest(flag), None) for flag in RUN_OPTIONS})
    target = resume_target(state, args.steps, out)
    finished = state["step"] >= target and (not state["config"]["lbfgs_steps"] or state["lbfgs_done"])
    if finished and checkpoint.describes(read_result(out), state) and (out / PLOT).is_file():
        print(f"{out}: the run is complete ({state['step']} of {target} steps); nothing changed (raise --steps "
              "to train further)")
        return None
    return state  # to train on, or a finished run whose result or plot was not written (it stopped in between)


def new_config(args):
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
        trainer = Trainer(observations, new_config(args), out, args.device, data_path=data, columns=columns,
                          overwrite=args.overwrite, nu_true=DEFAULT_DATA_NU if shipped else args.nu_true)
    _train_and_report(trainer, args, out)


def _train(args):
    out = Path(args.out)
    with locked_by_main(out, distributed.Ranks()):
        _train_in(args, out)


def _train_in(args, out):
    if args.resume:
        state = _resume_state(args, out)
        if state is None:
            return
        if not args.problem:
            checkpoint.declared_problem(state, out)  # says which --problem the run began with
        data = args.data or (state["data"] or {}).get("path")
        trainer = _resumed(Trainer.resume(from_factory(args.problem, data), out, args.device, steps=args.steps,
                                          data_path=data), args)
    else:
        if not args.problem:
            raise PinnfastError("--problem is needed: MODULE:FUNCTION or FILE.py:FUNCTION, the function that returns "
                                "your pinnfast.PDE (e.g. examples/heat_inverse.py:make_problem)")
        trainer = Trainer(from_factory(args.problem, args.data), new_config(args), out, args.device,
                          data_path=args.data, overwrite=args.overwrite)
    _train_and_report(trainer, args, out)


def _train_and_report(trainer, args, out):
    """Train to the target, write the result and the figure, print each learned unknown (Ctrl-C and a diverged
    run keep their last checkpoint and plot the history so far)."""
    if trainer.config.compile and not trainer.finished and not args.quiet:
        print("pinnfast: compiling the losses with torch.compile first (about half a minute on 2 cores the first "
              "time, seconds once torch has cached it; --no-compile trains without)", file=sys.stderr)
    count = threads.fixed(args.threads)
    if count is not None:
        torch.set_num_threads(count)
    else:
        trainer.threads = threads.CoreWatch()
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
        raise Interrupted(f"interrupted at step {trainer.step}; {where}") from None
    if not trainer.ranks.main:
        return
    write_result(out, result)
    _plot(out, result)
    learned = [nu_message(result, name) for name in trainer.unknowns] or [f"loss = {result['loss']:.4g}"]
    compiling = f", {result['compile_seconds']:.1f} s of it compiling" if result["compile_seconds"] else ""
    print("\n".join(learned) + f" after {result['steps']} steps ({result['seconds']:.1f} s{compiling}); results in "
          f"{out}")


class Interrupted(Exception):
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


COMMANDS = {"make-data": _make_data, "infer": _infer, "predict": _predict, "residual-field": _residual_field,
            "reproduce": _reproduce, "diagnose": _diagnose, "train": _train}
