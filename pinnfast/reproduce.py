"""``pinnfast reproduce``: M1–M4 side by side on Helmholtz, Klein–Gordon or the Burgers inverse problem.

Authors' settings by default (Wang, Teng & Perdikaris 2020): tanh, width 50, 3 hidden layers for Helmholtz and 5
for Klein–Gordon (depth 2 and 4 here: ``depth`` counts the width-to-width layers after the first), Adam 1e-3
decayed ×0.9 every 1000 steps, 40,001 steps, 128 fresh points per term per step, and the annealing conventions of
the authors' code. Burgers uses the package's tuned inverse-problem defaults (the paper's annealing formula) on
exact travelling-wave data with ν = 0.05, with ν started far from the truth on both sides (0.01 and 0.2), so that
the table measures recovery, not drift from the answer.

With ``diagnose``, every run keeps its checkpoints at the same steps and is diagnosed there
(:mod:`pinnfast.diagnose`): σ_max of the loss Hessian and the imbalance ratio per model and step, and the per-layer
gradient histograms of every model at the last kept step, so that M1 and M3 (and M2, M4) are compared at equal steps
on the same batch.
"""
import json
from pathlib import Path

import numpy as np
import torch

from .burgers import exact_solution, make_observations
from .data import save_observations
from .distributed import Ranks
from .errors import PinnfastError
from .runfolder import DIAGNOSE_NPZ, check_claimable
from .trainer import MODELS, TrainConfig, Trainer

# The authors' code also fixes the annealing conventions: trunk weight matrices only, per-layer means, and ∇(λ L_i)
# with λ inside. With the paper's formula (our default) λ ran away on both forward problems here (λ → 1e8–1e11,
# L_bc → 0, prediction ≈ 0; REPRODUCTION.md): the weighted form's fixed point λ² = ratio damps that feedback.
AUTHORS = dict(width=50, lr=1e-3, decay_rate=0.9, decay_steps=1000, steps=40001, n_collocation=128,
               anneal_grads="weights", anneal_mean="per-layer", anneal_weighted=True, stop_when_settled=False)
# Burgers: the package's settings as REPRODUCTION.md measured them (before lr 3e-3 and the early end)
SETTINGS = {"helmholtz": dict(AUTHORS, depth=2), "klein-gordon": dict(AUTHORS, depth=4),
            "burgers": dict(lr=1e-3, stop_when_settled=False)}
BURGERS_NU = 0.05
BURGERS_STARTS = (0.01, 0.2)  # 5× below and 4× above the truth
PAPER = {("klein-gordon", "m1"): 1.79e-01, ("klein-gordon", "m4"): 2.81e-03}  # relative L2, as quoted by the user
GRID = 201


def evaluation_grid(problem):
    """Points (G², d) of a regular grid over the problem's box (Burgers: (x, y) at t = 0.5), and its axes."""
    lo, hi = problem.lo.tolist(), problem.hi.tolist()
    axes = [np.linspace(lo[k], hi[k], GRID) for k in (0, 1)]
    mesh = np.meshgrid(*axes, indexing="xy")
    columns = [mesh[0].ravel(), mesh[1].ravel()]
    if len(lo) == 3:
        columns.append(np.full(GRID * GRID, (lo[2] + hi[2]) / 2))
    return torch.tensor(np.column_stack(columns), dtype=torch.float32), axes


def exact_on(problem, points):
    if problem.out_dim == 2:
        u, v = exact_solution(points[:, 0], points[:, 1], points[:, 2], BURGERS_NU)
        return torch.stack([u, v], 1)
    return problem.exact(points)


def relative_l2(problem, points):
    """‖prediction − exact‖ / ‖exact‖ on the points, and the two fields (first output component)."""
    device = problem.lo.device
    with torch.no_grad():
        prediction = problem.network(points.to(device)).cpu().double()
    exact = exact_on(problem, points.double())
    return ((prediction - exact).norm() / exact.norm()).item(), prediction[:, 0], exact[:, 0]


def reproduce(problem_name, models, out_dir, steps=None, device="auto", seed=0, progress=True, overwrite=False,
              keep_checkpoints=None, diagnose=False):
    """Train each model (Burgers: from each start in BURGERS_STARTS), write one run folder per run, a table
    (Markdown + JSON) and figures; every run keeps its checkpoints at ``keep_checkpoints`` (with ``diagnose``:
    default 0 and each quarter of the run) and, with ``diagnose``, is diagnosed there. Returns the rows and the
    diagnoses ({label: summaries}, empty without ``diagnose``)."""
    from .plots import plot_reproduce_curves, plot_reproduce_fields

    if problem_name not in SETTINGS:
        raise PinnfastError(f"unknown problem {problem_name!r}; choose one of {', '.join(SETTINGS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise PinnfastError(f"unknown model(s) {', '.join(unknown) or '(none given)'}; choose from "
                            f"{', '.join(MODELS)}")
    out_dir = Path(out_dir)
    burgers = problem_name == "burgers"
    plan = []  # (label, run folder, settings): every folder is checked before hours of training start
    for model in models:
        for nu_init in (BURGERS_STARTS if burgers else (None,)):
            settings = dict(SETTINGS[problem_name], problem=problem_name, model=model, seed=seed)
            label, folder = model, model
            if burgers:
                settings["nu_init"] = nu_init
                label, folder = f"{model}, ν0={nu_init:g}", f"{model}_nu0_{nu_init:g}"
            if steps is not None:
                settings["steps"] = steps
            settings["max_steps"] = settings["steps"]  # models compared at the same step count
            if diagnose and not keep_checkpoints:
                keep_checkpoints = quarters(settings["steps"])
            beyond = [step for step in keep_checkpoints or () if step > settings["steps"]]
            if beyond:
                raise PinnfastError(f"--keep-checkpoints {beyond[0]} is beyond the {settings['steps']} steps of each "
                                    "run")
            settings["keep_checkpoints"] = keep_checkpoints or ()
            plan.append((label, out_dir / problem_name / folder, settings))
            check_claimable(plan[-1][1], overwrite)
    observations, data_path, ranks = None, None, Ranks()
    if burgers:  # written beside the runs, so that `pinnfast infer --resume` can continue each of them
        observations = make_observations(BURGERS_NU, 2000, seed=seed)
        data_path = out_dir / problem_name / "observations.npz"
        ranks.on_main(lambda: _write_observations(data_path, observations))
    rows, fields, runs = [], {}, {}
    for label, folder, settings in plan:
        runs[label] = folder
        trainer = Trainer(observations, TrainConfig(**settings), folder, device, data_path=data_path,
                          overwrite=overwrite, nu_true=BURGERS_NU if burgers else None)
        result = trainer.run(progress=progress)
        points, axes = evaluation_grid(trainer.problem)
        error, prediction, exact = relative_l2(trainer.problem, points)
        row = dict(model=settings["model"], rel_l2=error, paper_rel_l2=PAPER.get((problem_name, settings["model"])),
                   steps=result["steps"], seconds=round(result["seconds"], 1), seed=seed, device=result["device"])
        if burgers:
            row.update(nu_init=settings["nu_init"], nu=result["nu"], nu_std=result["nu_std"],
                       nu_rel_error=result["nu_error"])
        rows.append(row)
        fields[label] = (prediction.reshape(GRID, GRID), exact.reshape(GRID, GRID), axes)
    if not ranks.main:  # rank 0 writes (and diagnoses) for a run of several processes
        return rows, {}
    (out_dir / f"{problem_name}_table.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / f"{problem_name}_table.md").write_text(table_markdown(problem_name, rows))
    plot_reproduce_fields(problem_name, fields, out_dir / f"{problem_name}_fields.png")
    plot_reproduce_curves(problem_name, runs, out_dir / f"{problem_name}_curves.png",
                          nu_true=BURGERS_NU if burgers else None)
    diagnosed = diagnose_runs(problem_name, runs, out_dir, keep_checkpoints, device, seed) if diagnose else {}
    return rows, diagnosed


def quarters(steps):
    """The steps ``diagnose`` takes by default: 0 and each quarter of the run."""
    return tuple(sorted({steps * k // 4 for k in range(5)}))


def diagnose_runs(problem_name, runs, out_dir, steps, device, seed):
    """Diagnose every run ({label: folder}) at ``steps`` on the same batch; write DIR/<problem>_diagnose.md/.json
    and _gradients.png (each run's histograms at its last diagnosed step); return {label: summaries}."""
    from .diagnose import diagnose_run, histograms_at
    from .plots import plot_gradients

    diagnosed = {label: diagnose_run(folder, steps, seed=seed, device=device) for label, folder in runs.items()}
    (out_dir / f"{problem_name}_diagnose.json").write_text(json.dumps(diagnosed, indent=2) + "\n")
    (out_dir / f"{problem_name}_diagnose.md").write_text(diagnose_markdown(problem_name, diagnosed, seed))
    histograms = {}
    for label, folder in runs.items():
        with np.load(folder / DIAGNOSE_NPZ) as statistics:
            last = diagnosed[label][-1]
            histograms[f"{label}, step {last['step']}: σ_max = {last['sigma_max']:.3g}"] = \
                histograms_at(dict(statistics), -1)
    plot_gradients(histograms, out_dir / f"{problem_name}_gradients.png",
                   f"{problem_name}: per-layer |∇_W L| on one batch (seed {seed})")
    return diagnosed


def diagnose_markdown(problem_name, diagnosed, seed):
    """σ_max, the imbalance ratio and λ of every run ({label: summaries}) and step, then σ_max of each M1 run over
    that of the M3 run with the same start."""
    first = next(iter(diagnosed.values()))[0]
    terms = [name[len("imbalance_"):] for name in first if name.startswith("imbalance_")]
    columns = ["run", "step", "σ_max", "Lanczos products",
               *(name for t in terms for name in (f"max\\|∇L_r\\| / mean\\|∇L_{t}\\|", f"λ_{t}")), "L_r"]
    lines = [f"### {problem_name}: σ_max of the loss Hessian and the gradient imbalance (one batch, seed {seed}, "
             "float64)", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for label, summaries in diagnosed.items():
        for s in summaries:
            converged = "" if s["lanczos_converged"] else " (not converged)"
            cells = " | ".join(f"{s['imbalance_' + t]:.3g} | {s['lambda_' + t]:.3g}" for t in terms)
            lines.append(f"| {label} | {s['step']} | {s['sigma_max']:.4g} | {s['lanczos_iterations']}{converged} | "
                         f"{cells} | {s['loss_r']:.3g} |")
    pairs = [(label, "m3" + label[2:]) for label in diagnosed if label.startswith("m1")]  # the same start
    for m1, m3 in (pair for pair in pairs if pair[1] in diagnosed):
        at = {s["step"]: s["sigma_max"] for s in diagnosed[m3]}
        ratios = ", ".join(f"step {s['step']}: {s['sigma_max'] / at[s['step']]:.2f}" for s in diagnosed[m1]
                           if s["step"] in at)
        lines += ["", f"σ_max({m1}) / σ_max({m3}): {ratios}"]
    return "\n".join(lines) + "\n"


def _write_observations(path, observations):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_observations(path, observations)


def table_markdown(problem_name, rows):
    nu = "nu" in rows[0]
    head = "| model | rel. L2 error | paper |" + (f" ν0 | ν (true {BURGERS_NU}) | ν rel. error |" if nu else "") + \
        " steps | seconds | device |"
    lines = [f"### {problem_name}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        paper = f"{r['paper_rel_l2']:.2e}" if r["paper_rel_l2"] is not None else "–"
        extra = f" {r['nu_init']:g} | {r['nu']:.5f} ± {r['nu_std']:.5f} | {r['nu_rel_error']:+.2%} |" if nu else ""
        lines.append(f"| {r['model']} | {r['rel_l2']:.2e} | {paper} |{extra} {r['steps']} | {r['seconds']} | "
                     f"{r['device']} |")
    return "\n".join(lines) + "\n"
