"""A run's checkpoint: what it holds, how a resume continues it (after checking that it can), how a checkpoint of an
older pinnfast is read (:func:`upgrade`), and :func:`load_run`, a trained run ready to use.

The files themselves (atomic writes, kept steps, the metrics CSV) are :mod:`pinnfast.runfolder`'s.
"""
import dataclasses
from pathlib import Path

import torch

from ._version import __version__
from .burgers import BurgersInverse
from .config import PROBLEMS, TrainConfig, build_problem, resolve_device, run_flags
from .data import load_observations
from .distributed import Ranks
from .errors import PinnfastError
from .models import domain_box
from .pde import PDE
from .runfolder import CHECKPOINT, load_checkpoint, metrics_header, plain, read_result, save_checkpoint


def upgrade(state, header=(), source="the checkpoint"):
    """A loaded checkpoint with every entry that older pinnfast versions did not write, at what those runs did:
    config fields added since take their defaults, except ``bootstrap`` (an ensemble saved before the option
    resampled its observations); one random stream (``generator``) becomes ``generators``; no compile time, L-BFGS
    finish or error samples; one process. ``imbalance_logged``: whether the metrics CSV (its ``header``) has the
    annealing imbalance columns, which runs begun before they were logged lack. A config this pinnfast cannot run
    (a field it does not know, a value it refuses) is one line naming ``source``."""
    fields = state["config"]
    unknown = sorted(set(fields) - {field.name for field in dataclasses.fields(TrainConfig)})
    if unknown:
        raise PinnfastError(f"{source}: its config has field(s) this pinnfast {__version__} does not know "
                            f"({', '.join(map(str, unknown))}); it was written by another version or by hand")
    try:
        config = TrainConfig(**{"bootstrap": fields.get("ensemble", 1) > 1, **fields})
        config.validate()
    except PinnfastError as exc:
        raise PinnfastError(f"{source}: its config cannot be a run's ({exc})") from None
    except (TypeError, ValueError) as exc:  # a value of the wrong kind, compared or converted
        raise PinnfastError(f"{source}: its config cannot be a run's ({exc})") from None
    state["config"] = dataclasses.asdict(config)
    if "generators" not in state:
        if "generator" not in state:
            raise PinnfastError(f"{source}: not a whole pinnfast checkpoint (no random stream)")
        state["generators"] = [state.pop("generator")]
    for name, default in (("compile_seconds", 0.0), ("lbfgs_done", False), ("error_samples", []),
                          ("world_size", 1), ("data", None), ("nu_true", None)):
        state.setdefault(name, default)
    state["imbalance_logged"] = not header or any(name.startswith("imbalance_") for name in header)
    return state


def read(run_dir):
    """The checkpoint of ``run_dir``, upgraded."""
    return upgrade(load_checkpoint(run_dir), metrics_header(run_dir), Path(run_dir) / CHECKPOINT)


def save(trainer, kept=False):
    """Rank 0 writes the checkpoint ``trainer`` resumes from, or (``kept``) the copy kept at this step, with every
    rank's random stream."""
    step_state = trainer.stepper.state_dict()  # a collective: on every rank
    if trainer.ranks.main:
        save_checkpoint(trainer.out_dir, {  # in the order docs/files.md lists them
            "config": plain(dataclasses.asdict(trainer.config)), "step": step_state["step"],
            "seconds": trainer.seconds, "compile_seconds": step_state["compile_seconds"],
            "problem": trainer.problem.state_dict(),
            **{name: step_state[name] for name in ("optimizer", "scheduler", "weights", "generators")},
            "world_size": trainer.ranks.world, "device_type": trainer.device.type, "data": plain(trainer.data),
            "nu_true": plain(trainer.nu_true), "version": __version__, "lbfgs_done": step_state["lbfgs_done"],
            "error_samples": plain(trainer.error_samples),
        }, trainer.step if kept else None)
    if not kept:
        trainer.checkpoint_step = trainer.step


def resume(trainer_class, observations, out_dir, device="auto", steps=None, *, data_path=None, columns=None,
           nu_true=None):
    """:meth:`Trainer.resume <pinnfast.trainer.Trainer.resume>`: the run saved in ``out_dir`` as a
    ``trainer_class``, checked to be the same run on the same data, process count and device kind."""
    state = load_checkpoint(out_dir)
    if "version" not in state:
        raise PinnfastError(f"{out_dir}: the checkpoint was written by pinnfast 0.1, which did not record the "
                            "run's data, so a resume cannot check it; start a new run")
    state = upgrade(state, metrics_header(out_dir), Path(out_dir) / CHECKPOINT)
    world, ranks = state["world_size"], Ranks()
    if world != ranks.world:
        how = f"torchrun --nproc_per_node {world}, or --nproc {world}" if world > 1 else "without torchrun"
        raise PinnfastError(f"the run in {out_dir} was trained by {world} process(es), not {ranks.world}: resume "
                            f"it on {world} ({how}), each process continuing its own random stream")
    config = TrainConfig(**state["config"])
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
    trainer = trainer_class(observations, config, out_dir, device, data_path=data_path, columns=columns,
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
    load_problem_state(trainer.problem, state, out_dir)
    try:
        trainer.stepper.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise PinnfastError(f"{Path(out_dir) / CHECKPOINT}: its optimiser or random state does not fit this run "
                            f"({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    trainer.seconds, trainer.error_samples = state["seconds"], state["error_samples"]
    trainer.checkpoint_step = trainer.step
    if not state["imbalance_logged"]:
        trainer.stepper.log_imbalance = False
        trainer.name_metrics()
    return trainer


def check_options(state, run_dir, command, given):
    """Refuse a resume by ``command`` (``infer``: Burgers runs; ``train``: declared problems) of the upgraded
    ``state``, or with options ``given`` (``{flag: value or None}``, of the config field
    :func:`~pinnfast.config.run_flags` maps it to) that do not match the run."""
    config, fields = state["config"], run_flags()
    declared = config["problem"] not in PROBLEMS
    if command == "infer" and config["problem"] != "burgers":
        origin = "`pinnfast train`; continue it with `pinnfast train --resume`" if declared else "`pinnfast reproduce`"
        raise PinnfastError(f"{run_dir} holds a {config['problem']} run (from {origin}); `infer --resume` continues "
                            "Burgers runs only")
    if command == "train" and not declared:
        raise PinnfastError(f"{run_dir} holds a {config['problem']} run; `train --resume` continues runs of problems "
                            "declared with pinnfast.PDE (use `pinnfast infer --resume` for Burgers)")
    for flag, value in given.items():
        field = fields[flag]
        if value is not None and value != config[field]:
            shown = flag if value is True else f"--no-{flag[2:]}" if value is False else f"{flag} {value}"
            raise PinnfastError(f"{shown} does not match the run in {run_dir} ({config[field]}); leave it out to "
                                "continue that run, or start a new one in another folder")


def declared_problem(state, run_dir, pde=None, data_path=None):
    """The PDE of a run that trained a declared problem, which the caller gives again as ``pde`` (a run folder is
    data, never code: the factory it recorded is only named in the message). A PDE from the factory the run
    recorded must come from the same source (its SHA-256)."""
    name, recorded = state["config"]["problem"], state["data"] or {}
    factory = recorded.get("factory") or {}
    if pde is None:
        how = (f"give its factory again, as it began: --problem {factory.get('spec')}" if factory else
               "pass that pinnfast.PDE again (it was passed from Python)")
        raise PinnfastError(f"the run in {run_dir} trained the declared problem {name!r}; {how} (a run folder never "
                            "names code to run)")
    if not isinstance(pde, PDE):
        raise PinnfastError(f"the run in {run_dir} trained the declared problem {name!r}; pass its pinnfast.PDE, "
                            f"not a {type(pde).__name__}")
    if pde.name != name:
        raise PinnfastError(f"the run in {run_dir} trained the problem {name!r}, not {pde.name!r}")
    given = (pde.factory or {}).get("sha256")
    if factory.get("sha256") and given and given != factory["sha256"]:
        raise PinnfastError(f"--problem {pde.factory['spec']}: its source is not the one the run in {run_dir} was "
                            f"trained with (sha256 {factory['sha256'][:12]}…, now {given[:12]}…); restore that "
                            "code or start a new run")
    return pde


def load_problem_state(problem, state, run_dir):
    """The checkpoint's network and unknowns into ``problem``, or one line saying that they do not fit it."""
    try:
        problem.load_state_dict(state["problem"])
    except (RuntimeError, TypeError, KeyError, AttributeError) as exc:
        reason = str(exc).strip().splitlines() or [type(exc).__name__]
        raise PinnfastError(f"the checkpoint in {run_dir} does not fit this problem ({reason[-1].strip()})") from None


def resume_target(state, steps, out_dir):
    """The step a resumed run trains to: its checkpoint's own target, or ``steps``, which may not go back."""
    if steps is not None and steps < state["step"]:
        raise PinnfastError(f"--steps {steps} is below the step the run in {out_dir} has reached ({state['step']})")
    return state["config"]["steps"] if steps is None else steps


def describes(result, state):
    """Whether a run's ``result`` (result.json) reports the checkpoint ``state``: its step, on its data."""
    return (result.get("steps"), result.get("data_sha256")) == (state["step"], (state["data"] or {}).get("sha256"))


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
    state = read(run_dir)
    config = TrainConfig(**state["config"])
    problem = build_problem(config, declared_problem(state, run_dir, pde) if config.problem not in PROBLEMS else None)
    load_problem_state(problem, state, run_dir)  # includes the domain normalisation buffers
    if isinstance(problem, BurgersInverse):  # its box came with the data; the network's normalisation keeps it
        problem.lo, problem.hi = (torch.tensor(bound, dtype=torch.float32) for bound in domain_box(problem.network))
    result = read_result(run_dir)
    if not describes(result, state):
        result = {}  # a result.json from another point of the run, or another run, says nothing about this one
    return Run(problem.to(resolve_device(device)).eval(), config, result, state["step"])
