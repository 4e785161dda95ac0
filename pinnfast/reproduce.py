"""``pinnfast reproduce``: M1–M4 side by side on Helmholtz, Klein–Gordon or the Burgers inverse problem.

Authors' settings by default (Wang, Teng & Perdikaris 2020): tanh, width 50, 3 hidden layers for Helmholtz and 5
for Klein–Gordon (depth 2 and 4 here: ``depth`` counts the width-to-width layers after the first), Adam 1e-3
decayed ×0.9 every 1000 steps, 40,001 steps, 128 fresh points per term per step, and the annealing conventions of
the authors' code. Burgers uses the package's tuned inverse-problem defaults (the paper's annealing formula) on
exact travelling-wave data with ν = 0.05.
"""
import json
from pathlib import Path

import numpy as np
import torch

from .burgers import exact_solution, make_observations
from .errors import PinnfastError
from .trainer import METRICS_CSV, MODELS, TrainConfig, Trainer

# The authors' code also fixes the annealing conventions: trunk weight matrices only, per-layer means, and ∇(λ L_i)
# with λ inside. With the paper's formula (our default) λ ran away on both forward problems here (λ → 1e8–1e11,
# L_bc → 0, prediction ≈ 0; REPRODUCTION.md): the weighted form's fixed point λ² = ratio damps that feedback.
AUTHORS = dict(width=50, lr=1e-3, decay_rate=0.9, decay_steps=1000, steps=40001, n_collocation=128,
               anneal_grads="weights", anneal_mean="per-layer", anneal_weighted=True)
SETTINGS = {"helmholtz": dict(AUTHORS, depth=2), "klein-gordon": dict(AUTHORS, depth=4), "burgers": {}}
BURGERS_NU = 0.05
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


def reproduce(problem_name, models, out_dir, steps=None, device="auto", seed=0, progress=True):
    """Train each model, write per-model run folders, a table (Markdown + JSON) and figures; return the rows."""
    if problem_name not in SETTINGS:
        raise PinnfastError(f"unknown problem {problem_name!r}; choose one of {', '.join(SETTINGS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise PinnfastError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    out_dir = Path(out_dir)
    observations = make_observations(BURGERS_NU, 2000, seed=seed) if problem_name == "burgers" else None
    rows, fields = [], {}
    for model in models:
        settings = dict(SETTINGS[problem_name], problem=problem_name, model=model, seed=seed)
        if steps is not None:
            settings["steps"] = steps
        trainer = Trainer(observations, TrainConfig(**settings), out_dir / problem_name / model, device)
        result = trainer.run(progress=progress)
        points, axes = evaluation_grid(trainer.problem)
        error, prediction, exact = relative_l2(trainer.problem, points)
        row = dict(model=model, rel_l2=error, paper_rel_l2=PAPER.get((problem_name, model)), steps=result["steps"],
                   seconds=round(result["seconds"], 1), seed=seed, device=result["device"])
        if "nu" in result:
            row.update(nu=result["nu"], nu_rel_error=abs(result["nu"] - BURGERS_NU) / BURGERS_NU)
        rows.append(row)
        fields[model] = (prediction.reshape(GRID, GRID), exact.reshape(GRID, GRID), axes)
    (out_dir / f"{problem_name}_table.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / f"{problem_name}_table.md").write_text(table_markdown(problem_name, rows))
    _plot_fields(problem_name, fields, out_dir / f"{problem_name}_fields.png")
    _plot_curves(problem_name, models, out_dir)
    return rows


def table_markdown(problem_name, rows):
    nu = "nu" in rows[0]
    head = "| model | rel. L2 error | paper |" + (" ν | ν rel. error |" if nu else "") + " steps | seconds | device |"
    lines = [f"### {problem_name}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        paper = f"{r['paper_rel_l2']:.2e}" if r["paper_rel_l2"] is not None else "–"
        extra = f" {r['nu']:.5f} | {r['nu_rel_error']:.2%} |" if nu else ""
        lines.append(f"| {r['model']} | {r['rel_l2']:.2e} | {paper} |{extra} {r['steps']} | {r['seconds']} | "
                     f"{r['device']} |")
    return "\n".join(lines) + "\n"


def _plot_fields(problem_name, fields, png_path):
    """One row per model: prediction, exact and |error| (Burgers: u at mid-time)."""
    from .plots import plt

    fig, axes = plt.subplots(len(fields), 3, figsize=(13, 3.6 * len(fields)), squeeze=False,
                             constrained_layout=True)
    labels = ("x", "t") if problem_name == "klein-gordon" else ("x", "y")
    for row, (model, (prediction, exact, grid_axes)) in enumerate(fields.items()):
        extent = (grid_axes[0][0], grid_axes[0][-1], grid_axes[1][0], grid_axes[1][-1])
        for col, (title, data) in enumerate((("prediction", prediction), ("exact", exact),
                                             ("|error|", (prediction - exact).abs()))):
            image = axes[row, col].imshow(data.numpy(), origin="lower", extent=extent, aspect="auto",
                                          cmap="viridis" if col == 2 else "RdBu_r")
            axes[row, col].set(title=f"{model}: {title}", xlabel=labels[0], ylabel=labels[1])
            fig.colorbar(image, ax=axes[row, col])
    fig.savefig(png_path, dpi=90)
    plt.close(fig)


def _plot_curves(problem_name, models, out_dir):
    """Residual loss and every λ against step, one line per model."""
    from .plots import plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    for model in models:
        table = np.atleast_1d(np.genfromtxt(out_dir / problem_name / model / METRICS_CSV, delimiter=",",
                                            names=True))
        axes[0].semilogy(table["step"], table["loss_r"], label=model, lw=0.8)
        for name in (n for n in table.dtype.names if n.startswith("lambda_")):
            axes[1].semilogy(table["step"], table[name], label=f"{model} {name}", lw=0.8)
    axes[0].set(xlabel="step", title=f"{problem_name}: residual loss")
    axes[1].set(xlabel="step", title="loss weights λ")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.savefig(out_dir / f"{problem_name}_curves.png", dpi=100)
    plt.close(fig)
