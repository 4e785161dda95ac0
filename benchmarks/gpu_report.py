"""The GPU report, in one run: kernel correctness on the GPU, timings beside the baselines, 10^8 points streamed.

    python3 benchmarks/gpu_report.py            # on the GPU machine; JSON to $OUT/gpu_report.json, table last
    python3 benchmarks/gpu_report.py --quick    # correctness per precision only
    TRITON_INTERPRET=1 python3 benchmarks/gpu_report.py --smoke   # CPU dry run of the same logic, tiny sizes

The JAX baseline needs ../shared/baselines/bench_baselines.py, which does not travel to the GPU machine: copy it
into the repository's git-excluded `shared/` folder first (`mkdir -p shared && cp -r ../shared/baselines shared/`
with `shared/` in .git/info/exclude); the report says in a row when it or jax is missing. The JSON is rewritten
after every section, a failed section is a row of the final table, and a correctness failure exits with status 1.

(a) every kernel (jets of MLP and ModifiedMLP, fused Burgers; their fused backward and the fused Burgers loss's
    gradients to the parameters and ν; the same for an ensemble of 3 as one batched launch, against each member
    alone) against float64 autograd, for every precision; the cases run in one spawned
    process per CPU (`--workers`), which also compile the timed sections' kernels into Triton's on-disk cache:
    compiled one after the other, the kernels alone would take most of a GPU lease;
(b) residual evaluation at N = 2^20 for W=64 L=4 and W=128 L=6: the fused kernel, the torch Taylor path (eager
    and torch.compile), eager nested autograd, and JAX when the shared baseline script and jax are importable;
(c) 10^8 points streamed through `evaluate_residuals`, with the peak GPU memory;
(d) one M4 training step with annealing every step (16384 collocation + 2048 observation points, W=64 L=4 and
    W=128 L=6): pinnfast's own `Trainer.train_step` on the triton backend (eager, and replayed as CUDA graphs) and
    on the torch backend, beside the shared script's eager autograd, torch Taylor (eager and torch.compile) and JAX
    steps; and the main job's step (the defaults) on the triton backend for one network and for an ensemble of 8
    in one batched launch per loss, each eager and as CUDA graphs (checked against the eager steps in (a));
(e) `pinnfast infer` on the shipped example, end to end (a subprocess; the wall time a user sees);
(f) where the backward's time goes: each stage's share, the stash's traffic in GB/s, chunks that L2 holds;
plus the card's fp32 and tf32 matrix-product ceilings measured in the same run.
"""
import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX must not take the card's memory up front
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, also when loaded by file path (tests)

import pinnfast as pf  # noqa: E402
from pinnfast.burgers import FIRST, SECOND, residuals_from_jets  # noqa: E402
from pinnfast.jets import JetSpec  # noqa: E402
from pinnfast.kernels import PRECISIONS, burgers_fields, burgers_loss  # noqa: E402
from pinnfast.kernels import backward as backward_kernels  # noqa: E402
from pinnfast.kernels import jets as kernel  # noqa: E402
from side_by_side import run_side_by_side  # noqa: E402
from timing import timed  # noqa: E402

TOLERANCE = {"value_first": 1e-5, "second": 1e-4}  # the accuracy a precision mode must meet to be the default
# What each mode must meet not to count as a failure: tf32 (10-bit mantissa) is documented as coarse.
REQUIRED = {"ieee": TOLERANCE, "tf32x3": TOLERANCE, "tf32": {"value_first": 1e-2, "second": 1e-1}}
GRADIENT_TOLERANCE = {"ieee": 1e-4, "tf32x3": 1e-4, "tf32": 1e-1}  # relative, every parameter and ν
RESULTS = []
L2_CHUNK = 2048  # points per chunk of the backward whose stash L2 holds (about 50 MB at W=64 L=4)


def backward_traffic(depth):
    """Jets per point that the backward's stages read and write in the stash (M3): 8·depth + 1 read, 6·depth + 3
    written (kernels/backward.py, launch_order)."""
    return 14 * depth + 4


def log(**row):
    RESULTS.append(row)
    print(json.dumps(row), flush=True)


def relative_error(actual, expected):
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


def flops_per_point(width, depth):
    """Matrix-product FLOPs of the forward jets per point (3 input layers, L gates on 6 channels, output)."""
    return 3 * 2 * 3 * width + depth * 6 * 2 * width * width + 6 * 2 * width * 2


def peak_gb(fn, device):
    """Peak GPU memory of one call, measured apart from the timing loop (its own buffers excluded)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 1e9


def model_for(kind, width, depth, device, seed):
    torch.manual_seed(seed)
    model = kind(3, 2, width, depth, domain=([-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.3)  # non-zero biases exercise every term
    return model.to(device)


# ---------------------------------------------------------------------------------------------- (a) correctness
TIMED_CONFIGS = [(64, 4), (128, 6)]  # (width, depth) of the timed sections, as in BASELINES.md
ENSEMBLE = 8  # members of the timed ensemble step
CHECK_CASES = [("ModifiedMLP", 128, 6), ("ModifiedMLP", 64, 4), ("ModifiedMLP", 50, 3), ("MLP", 100, 1)]


def check_case(kind_name, width, depth, seed, precision, device_type, smoke):
    """One (network, width, depth, precision): forward jets, fused Burgers fields, their fused backward and the
    fused Burgers loss's gradients against float64 autograd; returns the two rows (check, grad_check)."""
    device = torch.device(device_type)
    kind = getattr(pf, kind_name)
    n = 37 if smoke else 5000 + 13  # not a multiple of the tile
    model = model_for(kind, width, depth, device, seed)
    x = torch.rand(n, 3, device=device) * torch.tensor([2.0, 2.0, 1.0], device=device) - \
        torch.tensor([1.0, 1.0, 0.0], device=device)
    reference = pf.taylor_jets(model.double(), x.double(), FIRST, SECOND, backend="autograd").detach()
    model.float()
    ref_fields = torch.cat([reference[0], residuals_from_jets(reference, 0.02)], 1)
    out = torch.full((6, n, 2), float("nan"), device=device)
    kernel.launch(model, x, JetSpec((0, 1, 2), (0, 1)), out, out.new_zeros(1), False, precision)
    fields = torch.full((n, 4), float("nan"), device=device)
    burgers_fields(model, x, 0.02, precision=precision, out=fields)
    errors = [relative_error(out[c], reference[c]) for c in range(6)]
    burgers_errors = [relative_error(fields[:, c], ref_fields[:, c]) for c in range(4)]
    unwritten = bool(out.isnan().any() or fields.isnan().any())

    def meets(tolerance):
        return (not unwritten and max(errors[:4]) <= tolerance["value_first"]
                and max(errors[4:]) <= tolerance["second"] and max(burgers_errors) <= tolerance["second"])

    check = dict(kind="check", model=kind_name, width=width, depth=depth, precision=precision, n=n,
                 max_err_value_first=max(errors[:4]), max_err_second=max(errors[4:]),
                 max_err_burgers=max(burgers_errors), unwritten=unwritten, meets_fp32_tolerance=meets(TOLERANCE),
                 passed=meets(REQUIRED[precision]))
    return [check, check_gradients(model, x, seed, precision)]


def upstream_gradients(shape, generator, device):
    """Random upstream gradients in [0.5, 1.5]: one sign, so that no gradient is a nearly cancelling sum (an output
    bias's is the sum of its upstream values), which float32 only knows to the size of its terms."""
    return torch.rand(shape, generator=generator, device=device) + 0.5


def reference_gradients(network, x, upstream, nu):
    """float64 autograd of the reference jets of ``network`` (a float64 network of its own) at ``x``: the
    parameters' gradients of the jets under ``upstream``, and those of the Burgers loss at ``nu`` with its log ν's."""
    parameters = list(network.parameters())
    jets = pf.taylor_jets(network, x.double(), FIRST, SECOND, backend="autograd")
    jets_grads = torch.autograd.grad(jets, parameters, upstream.double())
    log_nu = torch.as_tensor(nu, dtype=torch.float64, device=x.device).log().requires_grad_(True)
    residual, _ = pf.burgers_residuals(network, x.double(), log_nu.exp(), backend="autograd")
    return jets_grads, torch.autograd.grad(residual.square().mean(0).sum(), [*parameters, log_nu])


def check_gradients(model, x, seed, precision):
    """The fused backward (jets, upstream gradients drawn at random) and the fused Burgers loss (through
    ν = exp(log ν)) against float64 autograd of the reference jets, every parameter and ν."""
    reference = type(model)(model.in_dim, model.out_dim, model.width, model.depth).to(x.device)
    reference.load_state_dict(model.state_dict())
    reference.double()
    generator = torch.Generator(x.device).manual_seed(seed)
    upstream = upstream_gradients((6, x.shape[0], 2), generator, x.device)
    expected_jets, expected_loss = reference_gradients(reference, x, upstream, 0.02)
    got = torch.autograd.grad(pf.taylor_jets(model, x, backend="triton", precision=precision),
                              list(model.parameters()), upstream)
    jets_error = max(relative_error(a, b) for a, b in zip(got, expected_jets))
    log_nu = torch.tensor(0.02, device=x.device).log().requires_grad_(True)
    loss = burgers_loss(model, x, log_nu.exp(), precision=precision)
    got = torch.autograd.grad(loss, [*model.parameters(), log_nu])
    loss_error = max(relative_error(a, b) for a, b in zip(got, expected_loss))
    return dict(kind="grad_check", model=type(model).__name__, width=model.width, depth=model.depth,
                precision=precision, n=x.shape[0], max_err_jets_grad=jets_error, max_err_burgers_loss_grad=loss_error,
                passed=max(jets_error, loss_error) <= GRADIENT_TOLERANCE[precision])


def check_ensemble(precision, device_type, smoke, members=3):
    """An ensemble as one batched launch (the grid's member axis): its jets' gradients (random upstream) and its
    per-member Burgers losses' gradients against float64 autograd of each member as a network of its own."""
    device = torch.device(device_type)
    torch.manual_seed(members)
    n, width, depth = (13, 16, 1) if smoke else (5000 + 13, 50, 3)
    model = pf.ModifiedMLP(3, 2, width, depth, domain=([-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]), members=members).to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    x = torch.rand(members, n, 3, device=device) * torch.tensor([2.0, 2.0, 1.0], device=device) - \
        torch.tensor([1.0, 1.0, 0.0], device=device)
    upstream = upstream_gradients((6, members, n, 2), torch.Generator(device).manual_seed(members), device)
    got_jets = torch.autograd.grad(pf.taylor_jets(model, x, backend="triton", precision=precision),
                                   list(model.parameters()), upstream)
    log_nu = torch.linspace(0.01, 0.05, members, device=device).log().requires_grad_(True)
    got_loss = torch.autograd.grad(burgers_loss(model, x, log_nu.exp(), precision=precision).sum(),
                                   [*model.parameters(), log_nu])
    jets_error = loss_error = 0.0
    for k in range(members):
        want_jets, want_loss = reference_gradients(model.member(k).double(), x[k], upstream[:, k],
                                                   log_nu[k].detach().exp())
        jets_error = max(jets_error, *(relative_error(g[k].reshape(w.shape), w) for g, w in zip(got_jets, want_jets)))
        loss_error = max(loss_error, *(relative_error(g[k].reshape(w.shape), w) for g, w in zip(got_loss, want_loss)))
    return [dict(kind="ensemble_check", members=members, width=width, depth=depth, precision=precision, n=n,
                 max_err_jets_grad=jets_error, max_err_burgers_loss_grad=loss_error,
                 passed=max(jets_error, loss_error) <= GRADIENT_TOLERANCE[precision])]


def check_cuda_graphs(device_type, steps=40, resumed_at=23):
    """The main job's step replayed as CUDA graphs (``cuda_graphs``) against the same step run eagerly (graphs
    switched off, the same capturable optimiser): ``steps`` steps with annealing every 4th and the ν warm-up
    ending at step 5, so that both graphs and the eager warm-up run; then the same run stopped at ``resumed_at``
    and resumed must give the uninterrupted run's parameters and metrics bit for bit."""
    config = dict(steps=steps, anneal_period=4, nu_warmup=5, checkpoint_every=resumed_at, cuda_graphs=True,
                  stop_when_settled=False)
    observations = pf.make_observations(0.02, 2000, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for name, graphs in (("graphed", True), ("eager", False)):
            trainer = pf.Trainer(observations, pf.TrainConfig(**config), Path(tmp) / name, device_type)
            if not graphs:
                trainer.stepper.graphs = None
            trainer.run(progress=False)
            runs[name] = trainer
        pf.Trainer(observations, pf.TrainConfig(**{**config, "steps": resumed_at}), Path(tmp) / "resumed",
                   device_type).run(progress=False)
        resumed = pf.Trainer.resume(observations, Path(tmp) / "resumed", device_type, steps=steps)
        resumed.run(progress=False)
        same_metrics = ((Path(tmp) / "graphed" / "metrics.csv").read_text()
                        == (Path(tmp) / "resumed" / "metrics.csv").read_text())
        pairs = [list(runs["graphed"].problem.parameters()), list(runs["eager"].problem.parameters()),
                 list(resumed.problem.parameters())]
    difference = max(relative_error(g, e) for g, e in zip(pairs[0], pairs[1]))
    resume_exact = same_metrics and all(torch.equal(g, r) for g, r in zip(pairs[0], pairs[2]))
    replayed = all(set(run.stepper.graphs.graphs) == {True, False} for run in (runs["graphed"], resumed))  # both kinds
    return [dict(kind="graph_check", steps=steps, max_rel_diff_graphed_vs_eager=difference,
                 bitwise_graphed_vs_eager=all(torch.equal(g, e) for g, e in zip(pairs[0], pairs[1])),
                 resume_bit_identical=resume_exact, both_graphs_captured=replayed,
                 passed=replayed and difference <= 1e-5 and resume_exact)]


def warm_residuals(width, depth, precision, device_type, smoke):
    """Compiles the Burgers kernel exactly as section (b) launches it (N = 2^20 specialises differently)."""
    model = model_for(pf.ModifiedMLP, width, depth, torch.device(device_type), 0).float()
    burgers_fields(model, torch.rand(1 << (8 if smoke else 20), 3, device=device_type), 0.02, precision=precision)
    return []


def warm_train_step(overrides, device_type):
    """Compiles the kernels of one triton training step: section (d)'s, or the main job's of section (e)."""
    config = pf.TrainConfig(**overrides, backend="triton")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pf.Trainer(pf.make_observations(0.02, config.batch_size, seed=0), config, Path(tmp) / "run",
                             device_type)
        trainer.train_step()
    return []


def step_configs(smoke):
    return [(16, 1)] if smoke else TIMED_CONFIGS


def step_config(width, depth, smoke):
    """Section (d)'s training step: M4 with annealing every step (Nr = 16384, Nd = 2048; tiny in a smoke run)."""
    n_r, n_d = (64, 32) if smoke else (16384, 2048)
    return dict(model="m4", width=width, depth=depth, n_collocation=n_r, batch_size=n_d, anneal_period=1,
                nu_warmup=0)


def check_kernels(device, smoke, workers):
    """Every case × precision, plus the compiles of the timed sections, in ``workers`` spawned processes side by
    side: compiling (seconds per kernel, single-threaded) would otherwise take most of the GPU time; the processes
    fill Triton's on-disk cache, which the timed sections then find. One process (``workers`` ≤ 1) runs them here."""
    cases = CHECK_CASES[2:] if smoke else CHECK_CASES  # slowest compiles first
    jobs = [(check_case, (kind, width, depth, seed, precision, device.type, smoke))
            for seed, (kind, width, depth) in enumerate(cases) for precision in PRECISIONS]
    # a smoke run (the interpreter, K times a network's programs) checks the ensemble's bookkeeping in one precision
    jobs += [(check_ensemble, (precision, device.type, smoke))
             for precision in (PRECISIONS[:1] if smoke else PRECISIONS)]
    jobs += [(warm_train_step, (step_config(width, depth, smoke), device.type)) for width, depth in step_configs(smoke)]
    if smoke:
        log(kind="note", section="correctness", note="CUDA graphs not checked: they need a CUDA GPU")
    else:  # a smoke run has nothing to compile; these only fill the cache
        jobs.append((check_cuda_graphs, (device.type,)))
        jobs += [(warm_train_step, ({}, device.type)), (warm_train_step, ({"ensemble": ENSEMBLE}, device.type))]
        jobs += [(warm_residuals, (width, depth, precision, device.type, smoke))
                 for width, depth in TIMED_CONFIGS for precision in PRECISIONS]
    for (function, args), (rows, error) in zip(jobs, run_side_by_side(jobs, workers)):
        if error is not None:  # one failing case must not hide the others
            log(kind="error", step=f"correctness {function.__name__}{args[:4]}", error=error)
        for row in rows or []:
            log(**row)


# ---------------------------------------------------------------------------------------------- (b) timings
def torch_residuals(model, x, nu):
    with torch.no_grad():
        residual, value = pf.burgers_residuals(model, x, nu, backend="torch")
    return residual


def autograd_residuals(model, x, nu):
    residual, _ = pf.burgers_residuals(model, x, nu, backend="autograd")
    return residual.detach()


def time_residuals(device, smoke, baselines):
    configs = TIMED_CONFIGS
    n = 1 << (8 if smoke else 20)
    nu = torch.tensor(0.02, device=device)
    for width, depth in configs:
        model = model_for(pf.ModifiedMLP, width, depth, device, 0).float()
        x = torch.rand(n, 3, device=device)
        cfg = dict(width=width, depth=depth, N=n, flops_per_point=flops_per_point(width, depth))
        impls = [(f"triton_{p}", lambda p=p: burgers_fields(model, x, nu, precision=p)) for p in PRECISIONS]
        impls += [("torch_taylor_eager", lambda: torch_residuals(model, x, nu)),
                  ("torch_eager_autograd", lambda: autograd_residuals(model, x, nu))]
        if not smoke:
            compiled = torch.compile(lambda m_x: torch_residuals(model, m_x, nu))
            impls.append(("torch_taylor_compile", lambda: compiled(x)))
        for name, fn in impls:
            try:
                peak = peak_gb(fn, device)
                ms = timed(fn, smoke)
                log(kind="residual_eval", impl=name, ms=ms, Mpts_per_s=n / ms / 1e3, peak_GB=peak, **cfg)
            except Exception as exc:  # an out-of-memory baseline is a result, not a crash
                log(kind="residual_eval", impl=name, error=repr(exc)[:200], **cfg)
    if baselines is None and not smoke:
        log(kind="note", section="baselines", note="JAX baseline not run: " + BASELINE_MISSING)
    if baselines is not None and not smoke:
        try:
            baselines.RESULTS.clear()
            for width, depth in configs:
                baselines.run_jax(width, depth, 16384, 2048, n)
            for row in baselines.RESULTS:
                if row.get("kind") in ("residual_eval", "train_step_anneal"):
                    log(**row)
        except Exception:
            log(kind="residual_eval", impl="jax_nested_grad", error=traceback.format_exc()[-300:])


def time_ceilings(device, smoke):
    if smoke:
        return
    a = torch.randn(8192, 8192, device=device)
    b = torch.randn(8192, 8192, device=device)
    for name, tf32 in (("fp32", False), ("tf32", True)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        ms = timed(lambda: a @ b, smoke)
        log(kind="ceiling", precision=name, TFLOPs=2 * 8192 ** 3 / ms / 1e9)
    torch.backends.cuda.matmul.allow_tf32 = False


# ---------------------------------------------------------------------------------------------- (c) 10^8 points
def stream_large(device, smoke):
    n = 1000 if smoke else 10 ** 8
    chunk = 256 if smoke else 1 << 22
    model = model_for(pf.ModifiedMLP, 64, 4, device, 0).float()
    generator = torch.Generator(device).manual_seed(0)
    scale = torch.tensor([2.0, 2.0, 1.0], device=device)
    shift = torch.tensor([-1.0, -1.0, 0.0], device=device)

    def points(start, stop):  # generated on the device chunk by chunk: nothing of size N lives there
        return torch.rand(stop - start, 3, generator=generator, device=device) * scale + shift

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    norms = pf.evaluate_residuals(model, points, 0.02, n=n, chunk_size=chunk, output="squared_norm",
                                  backend="triton" if device.type == "cuda" or smoke else "torch")
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    log(kind="stream", N=n, chunk=chunk, seconds=seconds, Mpts_per_s=n / seconds / 1e6, peak_GPU_GB=peak,
        finite=bool(torch.isfinite(norms).all()), mean_squared_residual=norms.double().mean().item())


# ---------------------------------------------------------------------------------------------- (d) training step
def time_train_steps(device, smoke, baselines):
    """pinnfast's own training step (sampling, fused or torch losses, annealing statistics, λ, Adam, decay) on
    both backends, then the shared script's torch steps (JAX's came with section (b))."""
    observations = pf.make_observations(0.02, step_config(16, 1, smoke)["batch_size"], seed=0)
    for width, depth in step_configs(smoke):
        for backend, graphs in (("triton", False), ("triton", True), ("torch", False)):
            if graphs and smoke:
                continue  # CUDA only
            impl = f"pinnfast_{backend}" + ("_graphs" if graphs else "")
            config = pf.TrainConfig(**step_config(width, depth, smoke), backend=backend, cuda_graphs=graphs)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    trainer = pf.Trainer(observations, config, Path(tmp) / "run", device.type)
                    ms = timed(trainer.train_step, smoke)
                log(kind="train_step_anneal", impl=impl, Nr=config.n_collocation,
                    Nd=config.batch_size, ms=ms, Mpts_per_s=config.n_collocation / ms / 1e3, width=width, depth=depth)
            except Exception as exc:
                log(kind="train_step_anneal", impl=impl, error=repr(exc)[:200], width=width, depth=depth)
        if baselines is not None and not smoke:
            baselines.RESULTS.clear()
            baselines.run_torch(width, depth, config.n_collocation, config.batch_size, 4096)
            for row in baselines.RESULTS:
                if row.get("kind") == "train_step_anneal":
                    log(**row)


class StageTimer:
    """Stands in for the backward kernel and times every launch by its stage (CUDA events; the wall clock in a
    smoke run): the stages share one kernel name, so a profiler cannot tell them apart."""

    def __init__(self, kernel, device):
        self.kernel, self.device, self.launches = kernel, device, []

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def timed_launch(*args, **kwargs):
            if self.device.type == "cuda":
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                launch(*args, **kwargs)
                stop.record()
                self.launches.append((kwargs["STAGE"], start, stop))
            else:
                start = time.perf_counter()
                launch(*args, **kwargs)
                self.launches.append((kwargs["STAGE"], start, time.perf_counter()))
        return timed_launch

    def milliseconds(self):
        """Per stage name: the summed time of its launches since the last call."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        names = {value: name for name, value in backward_kernels.STAGES.items()}
        per_stage = dict.fromkeys(backward_kernels.STAGES, 0.0)
        for stage, start, stop in self.launches:
            per_stage[names[stage]] += (start.elapsed_time(stop) if self.device.type == "cuda"
                                        else (stop - start) * 1e3)
        self.launches.clear()
        return per_stage


def time_backward_stages(device, smoke, repeats=5):
    """(f) Where the backward's time goes, for section (d)'s Burgers loss (M3, Nr points): each stage's share of the
    launches, the whole call with all points in one chunk and in chunks of ``L2_CHUNK`` (a stash that L2 holds at
    W=64 L=4), and the stash's traffic (``backward_traffic``) over the whole call's time."""
    for width, depth in step_configs(smoke):
        n = step_config(width, depth, smoke)["n_collocation"]
        torch.manual_seed(0)
        model = pf.ModifiedMLP(3, 2, width, depth).to(device)
        x, nu = torch.rand(n, 3, device=device), torch.tensor(0.02, device=device)
        spec = backward_kernels.BURGERS_SPEC
        backward_kernels.launch_backward(model, x, spec, "tf32x3", nu=nu)  # compiled and warm
        meta = kernel.packed_weights(model, spec, device)["meta"]
        stash_bytes = backward_traffic(depth) * backward_kernels.jet_floats(meta) * 4 * n
        timer = StageTimer(backward_kernels.mlp_jets_backward_kernel, device)
        backward_kernels.mlp_jets_backward_kernel = timer
        try:
            for _ in range(repeats):
                backward_kernels.launch_backward(model, x, spec, "tf32x3", nu=nu)
            per_stage = {stage: ms / repeats for stage, ms in timer.milliseconds().items()}
        finally:
            backward_kernels.mlp_jets_backward_kernel = timer.kernel
        whole = {chunk: timed(lambda: backward_kernels.launch_backward(model, x, spec, "tf32x3", nu=nu, chunk=chunk),
                              smoke) for chunk in (None, L2_CHUNK)}
        log(kind="backward_stages", width=width, depth=depth, N=n, stages_ms=per_stage, ms=whole[None],
            ms_l2_chunks=whole[L2_CHUNK], stash_GB=stash_bytes / 1e9, GB_per_s=stash_bytes / whole[None] / 1e6)


def time_ensemble_steps(device, smoke):
    """The main job's step (the defaults: M4, W=32 L=3, 512 + 512 points, annealing every 10th) on the triton
    backend for one network and for an ensemble of ``ENSEMBLE`` as one batched launch per loss (what the error
    bar's ensemble costs), each eager and replayed as CUDA graphs (after a ν warm-up of 0 steps, so that every
    timed step replays)."""
    for members in (1, 2 if smoke else ENSEMBLE):
        for graphs in (False,) if smoke else (False, True):
            overrides = dict(n_collocation=32, batch_size=16, width=16, depth=1) if smoke else dict(nu_warmup=0)
            config = pf.TrainConfig(**overrides, ensemble=members, backend="triton", cuda_graphs=graphs)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    trainer = pf.Trainer(pf.make_observations(0.02, 2000, seed=0), config, Path(tmp) / "run",
                                         device.type)
                    period = 1 if smoke else 10  # a whole period of annealing on the GPU
                    ms = timed(lambda: [trainer.train_step() for _ in range(period)], smoke) / period
                log(kind="ensemble_step", members=members, graphs=graphs, width=config.width, depth=config.depth,
                    Nr=config.n_collocation, Nd=config.batch_size, ms=ms)
            except Exception as exc:
                log(kind="ensemble_step", members=members, graphs=graphs, error=repr(exc)[:200])


# ---------------------------------------------------------------------------------------------- (e) the main job
def time_infer(device, smoke, deadline):
    """`pinnfast infer` on the shipped example as a user runs it, within what is left of the report's budget."""
    if smoke:
        return
    limit = deadline - time.perf_counter() - 15
    if limit < 30:
        log(kind="note", section="infer", note=f"not run: {limit:.0f} s left of the report's budget")
        return
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        try:
            # run from the temporary folder: in the repository, `-m pinnfast` would find the source folder, which
            # lacks pinnfast.kernels unless the install is editable
            done = subprocess.run([sys.executable, "-m", "pinnfast", "infer", "--out", f"{tmp}/run", "--quiet"],
                                  capture_output=True, text=True, timeout=limit, cwd=tmp)
        except subprocess.TimeoutExpired:
            log(kind="infer", error=f"did not finish within the {limit:.0f} s left of the report's budget")
            return
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            log(kind="infer", error=(done.stderr or done.stdout)[-300:])
            return
        result = json.loads((Path(tmp) / "run" / "result.json").read_text())
    log(kind="infer", seconds=seconds, training_seconds=result["seconds"], steps=result["steps"],
        backend=result["backend"], nu=result["nu"], nu_error=result.get("nu_error"), warning=result.get("nu_warning"))


# ---------------------------------------------------------------------------------------------- table
def by_precision(kind):
    """(precision, rows) for each precision with rows of this kind, in PRECISIONS order."""
    rows = [r for r in RESULTS if r["kind"] == kind]
    return [(p, [r for r in rows if r["precision"] == p]) for p in PRECISIONS if any(r["precision"] == p for r in rows)]


def table():
    lines = ["", "== pinnfast GPU report =="]
    device_name = next((r["device"] for r in RESULTS if r["kind"] == "device"), "?")
    lines.append(f"device: {device_name}")
    ceilings = {r["precision"]: r["TFLOPs"] for r in RESULTS if r["kind"] == "ceiling"}
    if ceilings:
        lines.append("ceilings: " + ", ".join(f"{k} {v:.1f} TFLOP/s" for k, v in ceilings.items()))
    for precision, rows in by_precision("check"):
        lines.append(f"check {precision:7s}: max rel err value/first {max(r['max_err_value_first'] for r in rows):.1e}"
                     f", second {max(r['max_err_second'] for r in rows):.1e}, burgers "
                     f"{max(r['max_err_burgers'] for r in rows):.1e}; "
                     f"{sum(r['meets_fp32_tolerance'] for r in rows)}/{len(rows)} meet 1e-5/1e-4")
    for precision, rows in by_precision("grad_check"):
        lines.append(f"gradients {precision:7s}: max rel err jets backward "
                     f"{max(r['max_err_jets_grad'] for r in rows):.1e}, Burgers loss "
                     f"{max(r['max_err_burgers_loss_grad'] for r in rows):.1e}; "
                     f"{sum(r['passed'] for r in rows)}/{len(rows)} within {GRADIENT_TOLERANCE[precision]:.0e}")
    for precision in PRECISIONS:
        for r in (r for r in RESULTS if r["kind"] == "ensemble_check" and r["precision"] == precision):
            lines.append(f"ensemble of {r['members']} {precision:7s}: max rel err jets backward "
                         f"{r['max_err_jets_grad']:.1e}, Burgers loss {r['max_err_burgers_loss_grad']:.1e}; "
                         f"{'within' if r['passed'] else 'NOT within'} {GRADIENT_TOLERANCE[precision]:.0e}")
    evals = [r for r in RESULTS if r["kind"] == "residual_eval"]
    for width, depth in sorted({(r["width"], r["depth"]) for r in evals}):
        rows = [r for r in evals if (r["width"], r["depth"]) == (width, depth)]
        ours = next((r for r in rows if r["impl"] == "triton_tf32x3" and "ms" in r), None)
        lines.append(f"residual eval W={width} L={depth} N={rows[0]['N']}:")
        lines.append(f"  {'impl':24s} {'ms':>9s} {'Mpts/s':>9s} {'speedup of ours':>16s} {'% fp32':>7s} {'% tf32':>7s}")
        for r in rows:
            if "ms" not in r:
                lines.append(f"  {r['impl']:24s} failed: {r['error'][:60]}")
                continue
            ratio = r["ms"] / ours["ms"] if ours else float("nan")  # impl time / triton_tf32x3 time
            tflops = r["Mpts_per_s"] * 1e6 * flops_per_point(width, depth) / 1e12
            pct = [f"{100 * tflops / ceilings[p]:6.1f}%" if p in ceilings else "     -" for p in ("fp32", "tf32")]
            lines.append(f"  {r['impl']:24s} {r['ms']:9.3f} {r['Mpts_per_s']:9.1f} {ratio:16.2f} {pct[0]:>7s} {pct[1]:>7s}")
    steps = [r for r in RESULTS if r["kind"] == "train_step_anneal"]
    for width, depth in sorted({(r["width"], r["depth"]) for r in steps}):
        rows = [r for r in steps if (r["width"], r["depth"]) == (width, depth)]
        ours = next((r for r in rows if r["impl"] == "pinnfast_triton" and "ms" in r), None)
        lines.append(f"training step (M4, annealing every step) W={width} L={depth} Nr={rows[0].get('Nr', '?')} "
                     f"Nd={rows[0].get('Nd', '?')}:")
        lines.append(f"  {'impl':24s} {'ms':>9s} {'÷ pinnfast_triton':>18s}")
        for r in rows:
            if "ms" not in r:
                lines.append(f"  {r['impl']:24s} failed: {r['error'][:60]}")
                continue
            lines.append(f"  {r['impl']:24s} {r['ms']:9.3f} {r['ms'] / ours['ms'] if ours else float('nan'):18.2f}")
    for r in (r for r in RESULTS if r["kind"] == "backward_stages"):
        lines.append(f"backward (Burgers loss) W={r['width']} L={r['depth']} N={r['N']}: {r['ms']:.3f} ms, "
                     f"{r['ms_l2_chunks']:.3f} ms in chunks of {L2_CHUNK}; stash {r['stash_GB']:.2f} GB, "
                     f"{r['GB_per_s']:.0f} GB/s; per stage (ms) " + ", ".join(
                         f"{stage} {ms:.3f}" for stage, ms in r["stages_ms"].items()))
    ensemble = {(r["members"], r["graphs"]): r for r in RESULTS if r["kind"] == "ensemble_step"}
    if ensemble:
        one = ensemble.get((1, False), {}).get("ms")
        parts = []
        for (k, graphs), r in sorted(ensemble.items()):
            name = f"{k} network{'s' if k > 1 else ''}{' graphed' if graphs else ''}"
            parts.append(f"{name} failed: {r['error'][:40]}" if "error" in r else
                         f"{name} {r['ms']:.3f} ms" + (f" ({r['ms'] / one:.2f}×)" if one else ""))
        lines.append("training step, the defaults on the triton backend (ms per step, over periods of 10): "
                     + ", ".join(parts))
    for r in RESULTS:
        if r["kind"] == "graph_check":
            lines.append(f"CUDA graphs: graphed vs eager steps max rel diff {r['max_rel_diff_graphed_vs_eager']:.1e} "
                         f"(bitwise: {r['bitwise_graphed_vs_eager']}), resume bit-identical: "
                         f"{r['resume_bit_identical']}, both graphs captured: {r['both_graphs_captured']}; "
                         f"{'passed' if r['passed'] else 'FAILED'}")
    for r in RESULTS:
        if r["kind"] == "infer":
            lines.append("pinnfast infer (shipped example): " + (
                f"failed: {r['error'][:80]}" if "error" in r else
                f"{r['seconds']:.1f} s wall ({r['training_seconds']:.1f} s training, {r['steps']} steps, backend "
                f"{r['backend']}), nu = {r['nu']:.6g} ({100 * r['nu_error']:+.2f} %)"))
    for r in RESULTS:
        if r["kind"] == "error":
            lines.append(f"section {r['step']} FAILED: {r['error'].strip().splitlines()[-1][:100]}")
        if r["kind"] == "note":
            lines.append(f"note ({r['section']}): {r['note']}")
    for r in RESULTS:
        if r["kind"] == "stream":
            peak = "n/a" if r["peak_GPU_GB"] is None else f"{r['peak_GPU_GB']:.2f} GB"
            lines.append(f"streamed N={r['N']:.0e}: {r['seconds']:.2f} s ({r['Mpts_per_s']:.1f} Mpts/s), peak GPU "
                         f"memory {peak}, finite={r['finite']}")
    return "\n".join(lines)


BASELINE_MISSING = "?"


def write_json():
    out = Path(os.environ.get("OUT", "."))
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_report.json").write_text(json.dumps(RESULTS, indent=1))


def find_baselines(explicit):
    """The shared baseline script as a module when it and jax are importable; else None and why, in a row."""
    global BASELINE_MISSING
    root = Path(__file__).resolve().parents[1]
    candidates = [Path(explicit)] if explicit else \
        [root / "shared/baselines/bench_baselines.py", root.parent / "shared/baselines/bench_baselines.py"]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        BASELINE_MISSING = (f"bench_baselines.py not found ({', '.join(map(str, candidates))}); copy "
                            "../shared/baselines into the repository's git-excluded shared/ folder")
        return None
    if importlib.util.find_spec("jax") is None:
        BASELINE_MISSING = "jax is not installed here"
        return None
    spec = importlib.util.spec_from_file_location("bench_baselines", path)
    baselines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baselines)
    return baselines


class OutOfTime(Exception):
    pass


def out_of_time(signum, frame):
    raise OutOfTime


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, CPU interpreter: checks the script only")
    parser.add_argument("--quick", action="store_true", help="only the correctness checks, every precision")
    parser.add_argument("--baselines", default=None, help="path of bench_baselines.py (for JAX); default: "
                                                          "shared/baselines/ in the repository or beside it")
    parser.add_argument("--budget", type=float, default=500.0,
                        help="seconds the whole report may take: a section that starts after it is skipped (a row "
                             "says so), the end-to-end infer section uses what is left, and SIGTERM (e.g. from "
                             "`timeout`) ends the section running, still printing the table")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that check and compile side by side (default: one per CPU on a GPU, "
                             "1 in a smoke run)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.smoke else "cuda")
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_report: no CUDA GPU here; use --smoke with TRITON_INTERPRET=1 for a CPU dry run")
    torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (smoke run)"
    import triton
    log(kind="device", device=name, torch=torch.__version__, triton=triton.__version__,
        date=time.strftime("%Y-%m-%d"))
    baselines = None if args.quick else find_baselines(args.baselines)
    deadline = time.perf_counter() + args.budget
    workers = args.workers or (1 if args.smoke else os.cpu_count())
    signal.signal(signal.SIGTERM, out_of_time)
    sections = [("correctness", lambda d, s: check_kernels(d, s, workers))]
    if not args.quick:
        sections += [("ceilings", time_ceilings), ("residual_eval", lambda d, s: time_residuals(d, s, baselines)),
                     ("train_step", lambda d, s: time_train_steps(d, s, baselines)),
                     ("backward_stages", time_backward_stages),
                     ("ensemble_step", time_ensemble_steps), ("stream", stream_large),
                     ("infer", lambda d, s: time_infer(d, s, deadline))]
    for section, step in sections:
        started = time.perf_counter()
        if started > deadline:
            log(kind="note", section=section, note=f"skipped: the report's {args.budget:.0f} s budget is spent")
            continue
        try:
            step(device, args.smoke)
            print(f"-- section {section} done in {time.perf_counter() - started:.1f} s", flush=True)
        except OutOfTime:
            log(kind="error", step=section, error="stopped by SIGTERM (out of time)")
            write_json()
            break
        except Exception:
            log(kind="error", step=section, error=traceback.format_exc()[-1500:])
        write_json()
    print(table())
    failed = [r for r in RESULTS if (r["kind"] in ("check", "grad_check", "ensemble_check", "graph_check")
                                     and not r["passed"])
              or (r["kind"] == "error" and r["step"] == "correctness")]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
