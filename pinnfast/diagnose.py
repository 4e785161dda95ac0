"""The gradient pathology, measured (Wang, Teng & Perdikaris 2020): per-layer distributions of ∇θL_r and of each
∇θL_i, their imbalance ratio max|∇L_r| / mean|∇L_i|, and σ_max, the largest eigenvalue of the Hessian ∇²θL of the
total loss L = L_r + Σ λ_i L_i with respect to the network parameters (ν and other physical parameters fixed).

σ_max comes from Lanczos iteration on Hessian-vector products (double backward through the problem's losses on the
torch jets path), so the Hessian is never formed. A run's checkpoints are all measured on one batch drawn from a
seeded generator with the problem's own batch sizes, in float64, so that steps and models are compared on the
same points.
"""
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .annealing import Annealing
from .data import load_observations, observations_sha256, validate_observations
from .errors import PinnfastError
from .runfolder import DIAGNOSE_JSON, DIAGNOSE_NPZ, DIAGNOSE_PNG, kept_steps, load_checkpoint, write_npz, write_text
from .trainer import TrainConfig, build_problem, resolve_device

BINS_PER_DECADE = 5


@dataclasses.dataclass
class Eigenvalue:
    """The largest eigenvalue found, the operator products it took, and whether the Ritz residual
    ‖A y − θ y‖ fell to ``tol`` |θ| (``residual`` is that norm relative to |θ|)."""

    value: float
    iterations: int
    converged: bool
    residual: float


class HessianOperator:
    """v ↦ ∇²θ loss · v on flat vectors, by double backward; the gradient's graph is built once and reused."""

    def __init__(self, loss, params):
        self.params = list(params)
        grads = torch.autograd.grad(loss, self.params, create_graph=True, materialize_grads=True)
        self.gradient = torch.cat([g.reshape(-1) for g in grads])
        self.dim = self.gradient.numel()

    def __call__(self, vector):
        products = torch.autograd.grad(self.gradient, self.params, grad_outputs=vector, retain_graph=True,
                                       materialize_grads=True)
        return torch.cat([p.reshape(-1) for p in products])


def top_eigenvalue(operator, dim, tol=1e-3, max_iter=100, seed=0, dtype=torch.float64, device="cpu"):
    """The largest eigenvalue of a symmetric operator (``v ↦ A v`` on vectors of length ``dim``) by Lanczos with
    full reorthogonalisation, from a seeded random start: it stops when the Ritz residual ‖A y − θ y‖ of the top
    Ritz pair is at most ``tol`` |θ| (then an eigenvalue lies within that residual of θ; from a random start, the
    largest one), when the Krylov space is exhausted, or after ``max_iter`` products (``converged`` False)."""
    if not 0 < tol < 1 or max_iter < 1:
        raise PinnfastError(f"Lanczos needs 0 < tol < 1 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")
    start = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)
    basis = [start / start.norm()]
    alphas, betas = [], []
    for k in range(1, min(max_iter, dim) + 1):
        w = operator(basis[-1])
        alphas.append(torch.dot(w, basis[-1]))
        q = torch.stack(basis)
        for _ in range(2):  # twice is enough to keep the basis orthogonal to working precision
            w = w - q.T @ (q @ w)
        beta = w.norm()
        tridiagonal = torch.diag(torch.stack(alphas))
        if betas:
            off = torch.stack(betas)
            tridiagonal = tridiagonal + torch.diag(off, 1) + torch.diag(off, -1)
        values, vectors = torch.linalg.eigh(tridiagonal)
        theta, residual = values[-1].item(), (beta * vectors[-1, -1].abs()).item()
        relative = residual / abs(theta) if theta else float("inf")
        exhausted = k == dim or beta.item() <= 1e-12 * max(abs(values).max().item(), 1e-300)
        if residual <= tol * abs(theta) or exhausted:
            return Eigenvalue(theta, k, True, relative)
        betas.append(beta)
        basis.append(w / beta)
    return Eigenvalue(theta, k, False, relative)


def layer_weights(network):
    """The network's layers in order, each with its weight matrix: the paper's histograms are of ∇_W per layer."""
    return {name.rsplit(".", 1)[0]: p for name, p in network.named_parameters() if name.endswith("weight")}


def log_edges(magnitudes):
    """Histogram edges in log10 |g|: whole decades spanning every positive value, ``BINS_PER_DECADE`` bins each."""
    positive = np.concatenate([m[m > 0] for m in magnitudes] + [np.ones(1)])
    lo, hi = np.floor(np.log10(positive.min())), np.ceil(np.log10(positive.max()))
    return np.linspace(lo, hi + (hi == lo), int(hi + (hi == lo) - lo) * BINS_PER_DECADE + 1)


def histogram(magnitude, edges):
    """Counts of the positive ``magnitude`` values per log10 bin (the last bin closed), and the number of zeros."""
    positive = magnitude[magnitude > 0]
    return np.histogram(np.log10(positive), edges)[0], int(magnitude.size - positive.size)


def diagnose_problem(problem, lambdas, batch, annealing=None, tol=1e-3, max_iter=100, seed=0):
    """The diagnostics of a problem's network at its current parameters, on ``batch``.

    ``lambdas`` are the weights λ_i of the total loss; ``annealing`` (an :class:`Annealing`, default the paper's
    formula) sets which parameters and which mean the imbalance ratio takes. Returns a dict: ``losses`` (L_r, L_i...),
    ``gradients`` {layer: [|∇_W L_r|, |∇_W L_i|, ...] as flat numpy arrays}, ``imbalance`` (one ratio per term
    L_i) and ``sigma_max`` (an :class:`Eigenvalue`)."""
    named = list(problem.network.named_parameters())
    params = [p for _, p in named]
    loss_r, terms = problem.losses(batch)
    grads = [torch.autograd.grad(loss, params, retain_graph=True, materialize_grads=True) for loss in (loss_r, *terms)]
    annealing = annealing or Annealing(len(terms), device=loss_r.device)
    chosen = annealing.selected(named)
    imbalance = annealing.imbalance([grads[0][k] for k in chosen], [[g[k] for k in chosen] for g in grads[1:]])
    index = {name: k for k, (name, _) in enumerate(named)}
    gradients = {layer: [g[index[layer + ".weight"]].detach().abs().cpu().numpy().ravel() for g in grads]
                 for layer in layer_weights(problem.network)}
    weights = torch.as_tensor(lambdas, dtype=loss_r.dtype, device=loss_r.device)
    total = loss_r + sum(weights[i] * term for i, term in enumerate(terms))
    operator = HessianOperator(total, params)
    sigma = top_eigenvalue(operator, operator.dim, tol, max_iter, seed, loss_r.dtype, loss_r.device)
    return {"losses": [loss.item() for loss in (loss_r, *terms)], "gradients": gradients,
            "imbalance": imbalance.tolist(), "sigma_max": sigma}


# ----------------------------------------------------------------- run folders
def diagnose_run(run_dir, steps=None, out_dir=None, tol=1e-3, max_iter=100, seed=0, device="cpu",
                 observations=None):
    """Diagnose the checkpoints of a run folder at ``steps`` (default: every kept step, or the last checkpoint
    when none was kept) and write ``gradients.png``, ``diagnose.npz`` (the raw statistics) and ``diagnose.json``
    (one summary per step) to ``out_dir`` (default: the run folder). Burgers runs read their own data file
    (``observations`` for a run trained on observations passed from Python). Returns the summaries."""
    from .plots import plot_gradients

    run_dir = Path(run_dir)
    last = checkpoint.read(run_dir)
    config = TrainConfig(**last["config"])
    if config.members is not None:
        raise PinnfastError(f"{run_dir} is an ensemble of {config.ensemble} networks; diagnose takes runs of one "
                            "network")
    kept = kept_steps(run_dir)
    steps = sorted(set(steps)) if steps else (kept or [last["step"]])
    missing = [step for step in steps if step not in kept and step != last["step"]]
    if missing:
        listed = ", ".join(map(str, kept)) or "none"
        raise PinnfastError(f"{run_dir}: step {missing[0]} was not kept (kept steps: {listed}; the last checkpoint "
                            f"is at step {last['step']}); keep steps with `pinnfast infer --keep-checkpoints`")
    device = resolve_device(device)
    observations = _run_observations(last, run_dir, observations) if config.problem == "burgers" else None
    problem = build_problem(config, observations, str(run_dir)).to(device, torch.float64)
    annealing = Annealing(len(problem.term_names), device, grads=config.anneal_grads, mean=config.anneal_mean)
    summaries, diagnoses = [], []
    for step in steps:
        state = load_checkpoint(run_dir, step) if step in kept else last
        checkpoint.load_problem_state(problem, state, run_dir)  # copied into the float64 parameters
        batch = problem.sample(torch.Generator(device).manual_seed(seed))
        lambdas = state["weights"]["lambdas"]
        diagnoses.append(diagnose_problem(problem, lambdas, batch, annealing, tol, max_iter, seed))
        summaries.append(_summary(step, problem.term_names, lambdas.tolist(), diagnoses[-1]))
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    header = dict(run=str(run_dir), problem=config.problem, model=config.model, seed=seed, tol=tol,
                  max_iter=max_iter, dtype="float64", device=str(device),
                  batch="one batch of the problem's own sizes, drawn with a generator seeded with seed")
    write_text(out_dir / DIAGNOSE_JSON, json.dumps(dict(header, steps=summaries), indent=2) + "\n")
    statistics = gradient_statistics(steps, problem.term_names, diagnoses)
    write_npz(out_dir / DIAGNOSE_NPZ, statistics)
    labels = [f"{config.model} step {s['step']}: σ_max = {s['sigma_max']:.3g}" for s in summaries]
    plot_gradients({label: histograms_at(statistics, k) for k, label in enumerate(labels)}, out_dir / DIAGNOSE_PNG,
                   f"{config.problem} {config.model} ({run_dir.name}): per-layer |∇_W L| on one batch")
    return summaries


def histograms_at(statistics, k):
    """The histograms of step ``k`` of :func:`gradient_statistics`, as :func:`~pinnfast.plots.plot_gradients`
    takes them."""
    return {name: statistics[name] for name in ("layers", "terms", "log10_edges")} | \
        {name: statistics[name][k] for name in ("counts", "zeros")}


def gradient_statistics(steps, term_names, diagnoses):
    """The raw statistics of several diagnoses of one network as arrays (what ``diagnose.npz`` holds): per step,
    layer and term (r first) the histogram counts of |∇_W| on common log10 edges, the zeros left out of them, the
    max, mean and median |∇_W|; per step σ_max with its Lanczos iterations, convergence and relative residual, the
    imbalance ratios and the losses."""
    layers = list(diagnoses[0]["gradients"])
    edges = log_edges([m for d in diagnoses for ms in d["gradients"].values() for m in ms])
    counted = [[[histogram(m, edges) for m in d["gradients"][layer]] for layer in layers] for d in diagnoses]
    magnitudes = [[d["gradients"][layer] for layer in layers] for d in diagnoses]
    sigma = [d["sigma_max"] for d in diagnoses]
    return dict(
        steps=np.asarray(steps), layers=np.asarray(layers), terms=np.asarray(["r", *term_names]),
        log10_edges=edges,
        counts=np.asarray([[[c for c, _ in per_layer] for per_layer in per_step] for per_step in counted]),
        zeros=np.asarray([[[z for _, z in per_layer] for per_layer in per_step] for per_step in counted]),
        max_abs=np.asarray([[[m.max() for m in ms] for ms in per_step] for per_step in magnitudes]),
        mean_abs=np.asarray([[[m.mean() for m in ms] for ms in per_step] for per_step in magnitudes]),
        median_abs=np.asarray([[[np.median(m) for m in ms] for ms in per_step] for per_step in magnitudes]),
        sigma_max=np.asarray([s.value for s in sigma]),
        lanczos_iterations=np.asarray([s.iterations for s in sigma]),
        lanczos_converged=np.asarray([s.converged for s in sigma]),
        lanczos_residual=np.asarray([s.residual for s in sigma]),
        imbalance=np.asarray([d["imbalance"] for d in diagnoses]),
        losses=np.asarray([d["losses"] for d in diagnoses]))


def _summary(step, term_names, lambdas, diagnosis):
    sigma = diagnosis["sigma_max"]
    return dict(step=step, sigma_max=sigma.value, lanczos_iterations=sigma.iterations,
                lanczos_converged=sigma.converged, lanczos_residual=sigma.residual,
                loss_r=diagnosis["losses"][0],
                **{f"loss_{n}": v for n, v in zip(term_names, diagnosis["losses"][1:])},
                **{f"lambda_{n}": v for n, v in zip(term_names, lambdas)},
                **{f"imbalance_{n}": v for n, v in zip(term_names, diagnosis["imbalance"])})


def _run_observations(state, run_dir, observations):
    """The observations a Burgers run was trained on: its own data file (checked against the recorded hash), or
    ``observations`` when it was trained on observations passed from Python."""
    recorded = state["data"]
    if observations is not None:
        observations = validate_observations(observations, "observations")
    elif recorded["path"] is None:
        raise PinnfastError(f"the run in {run_dir} was trained on observations passed from Python; pass them "
                            "to diagnose_run(observations=...)")
    else:
        observations = load_observations(recorded["path"], recorded["columns"])
    if observations_sha256(observations) != recorded["sha256"]:
        raise PinnfastError(f"{recorded['path'] or 'the observations'} are not the data the run in {run_dir} was "
                            f"trained on (sha256 {recorded['sha256'][:12]}…)")
    return observations
