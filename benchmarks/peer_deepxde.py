"""pinnfast beside DeepXDE on one observation file: ms per step, ν's error over time, time to 1 % and to 0.1 %.

    python3 benchmarks/peer_deepxde.py [--data FILE --nu-true X] [--nu-init X] [--max-seconds S] [--work DIR]

Runs DeepXDE (PyTorch backend; an optional dependency: without it the script says so and exits 0) configured as
its documentation's inverse examples (Navier–Stokes, diffusion): an FNN of 4 tanh layers of 32 (Glorot uniform),
2000 fixed collocation points (its default Hammersley sequence) in the bounding box of the observations, the
observations as ``PointSetBC`` for u and v, ν as a ``dde.Variable`` (its examples use the variable itself, not
exp of it) passed as ``external_trainable_variables``, Adam 1e-3 on the full batch. Then ``pinnfast infer`` with
its defaults on the same file, as its first run on the machine: on a CPU its default compiles the losses, and its
torch.compile cache starts empty (a fresh ``TORCHINDUCTOR_CACHE_DIR``), so the compile counts in its time. The two
run one after the other, each in a fresh process on this machine, from the same ν (``--nu-init``), each stopped
``--max-seconds`` after its process started (pinnfast by Ctrl-C, and read from its last checkpoint). ``--threads N``
gives both N CPU threads (OMP_NUM_THREADS; default: torch's choice); on a machine shared with other jobs, 1 thread
each avoids the stalls of oversubscribed thread pools.

ν is sampled every ``--log-every`` steps of either tool (DeepXDE: a callback with the wall time since training
began; pinnfast: its metrics.csv, steps mapped to seconds by its compile time, spent in its first step, and its
mean step rate after it) and compared by the same rule: "first" is when ν first came within the tolerance, "held"
from when on it stayed within it to the end of the run (counted only when that is at least the last tenth of the
run: a run cut by the cap just after ν came within says nothing about whether it stays).
Times are training time; start-up (imports, data, model set-up) is in the wall time. Prints one markdown table
and writes peer_deepxde.json (every sample) to ``--work``.
"""
import argparse
import datetime
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import pinnfast as pf
from pinnfast.data import DEFAULT_DATA_NU, default_data_path
from pinnfast.runfolder import load_checkpoint, metrics_table, read_result

TOLERANCES = (0.01, 0.001)
MIN_HELD = 0.1  # "held" counts when ν stayed within over at least this fraction of the run
SNAPSHOTS = (10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 420, 600, 900)  # seconds at which ν's error is shown
# DeepXDE as its inverse examples set it up (only the sizes come from the issue: FNN 4 × 32, 2000 points)
DDE_LAYERS, DDE_WIDTH, DDE_COLLOCATION, DDE_LR = 4, 32, 2000, 1e-3
SETUP = (f"DeepXDE: FNN {DDE_LAYERS} × {DDE_WIDTH} tanh (Glorot uniform), {DDE_COLLOCATION} fixed Hammersley "
         f"collocation points, all observations as PointSetBC (u, v), ν a dde.Variable, Adam {DDE_LR:g}, full batch; "
         "pinnfast: `pinnfast infer` defaults (M4, 512 collocation points + 512 observations per step)")
SKIP = "peer_deepxde: skipped: DeepXDE is not installed (optional; `pip install deepxde` to compare, run here on " \
       "its PyTorch backend)"


# ----------------------------------------------------------------- the two runs
def deepxde_run(data, nu_init, seed, log_every, deadline):
    """Train DeepXDE on the observations in ``data`` (in this process; the backend must be PyTorch) until the
    ``deadline`` (``time.time()``); returns its ν log ``[[iteration, seconds, ν], ...]``, whether the deadline stopped
    it, and its version."""
    import deepxde as dde

    observations = pf.load_observations(data)
    xyt = np.column_stack([observations[c] for c in ("x", "y", "t")])
    lo, hi = xyt.min(0), xyt.max(0)
    dde.config.set_random_seed(seed)
    nu = dde.Variable(nu_init)

    def burgers(x, y):
        u, v = y[:, 0:1], y[:, 1:2]
        residuals = []
        for k, w in enumerate((u, v)):
            w_x, w_y, w_t = (dde.grad.jacobian(y, x, i=k, j=j) for j in range(3))
            laplacian = dde.grad.hessian(y, x, component=k, i=0, j=0) + dde.grad.hessian(y, x, component=k, i=1, j=1)
            residuals.append(w_t + u * w_x + v * w_y - nu * laplacian)
        return residuals

    box = dde.geometry.GeometryXTime(dde.geometry.Rectangle(lo[:2].tolist(), hi[:2].tolist()),
                                     dde.geometry.TimeDomain(lo[2], hi[2]))
    observed = [dde.icbc.PointSetBC(xyt, observations[c][:, None], component=k) for k, c in enumerate("uv")]
    problem = dde.data.TimePDE(box, burgers, observed, num_domain=DDE_COLLOCATION, num_boundary=0, num_initial=0)
    model = dde.Model(problem, dde.nn.FNN([3] + [DDE_WIDTH] * DDE_LAYERS + [2], "tanh", "Glorot uniform"))
    model.compile("adam", lr=DDE_LR, external_trainable_variables=[nu])

    class NuLog(dde.callbacks.Callback):
        """ν every ``log_every`` iterations with the seconds since training began; stops at the deadline."""

        def on_train_begin(self):
            self.started, self.log = time.perf_counter(), []
            self.record()

        def record(self):
            self.log.append([int(self.model.train_state.iteration), time.perf_counter() - self.started, nu.item()])

        def on_epoch_end(self):
            if self.model.train_state.iteration % log_every == 0:
                self.record()
            if time.time() >= deadline:
                self.model.stop_training = True

        def on_train_end(self):
            if self.log[-1][0] != self.model.train_state.iteration:
                self.record()

    log = NuLog()
    model.train(iterations=10 ** 9, callbacks=[log], display_every=1000, verbose=0)
    return {"version": dde.__version__, "log": log.log, "capped": model.stop_training}


def run_deepxde(args, work):
    """DeepXDE in a fresh process (this script with ``--deepxde-log``): its record, wall time included."""
    out = work / "deepxde.json"
    started, deadline = time.perf_counter(), time.time() + args.max_seconds
    command = [sys.executable, __file__, "--deepxde-log", str(out), "--deadline", repr(deadline), "--data",
               str(args.data), "--nu-init", str(args.nu_init), "--seed", str(args.seed), "--log-every",
               str(args.log_every)]
    env = dict(_environment(args), DDE_BACKEND="pytorch")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the DeepXDE run failed (exit {done.returncode}): {_last_line(done.stderr)}")
    run = json.loads(out.read_text())
    steps, seconds, _ = run["log"][-1]
    return dict(tool=f"DeepXDE {run['version']}", steps=steps, seconds=seconds, wall=wall, log=run["log"],
                nu=run["log"][-1][2], nu_how="last iterate", capped=run["capped"])


def run_pinnfast(args, work):
    """``pinnfast infer`` with its defaults in a fresh process, stopped by Ctrl-C ``--max-seconds`` after it started:
    its record."""
    run_dir = work / "pinnfast_run"
    command = [sys.executable, "-m", "pinnfast", "infer", "--data", str(args.data), "--out", str(run_dir),
               "--overwrite", "--quiet", "--nu-init", str(args.nu_init), "--nu-true", str(args.nu_true), "--seed",
               str(args.seed)]
    started = time.perf_counter()
    first_run = dict(_environment(args), TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(prefix="inductor_", dir=work))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=first_run)
    try:
        _, stderr = process.communicate(timeout=args.max_seconds)
        capped = False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # the CLI keeps its last checkpoint and exits 130
        _, stderr = process.communicate()
        capped = True
    wall = time.perf_counter() - started
    if process.returncode != 0 and not capped:
        raise RuntimeError(f"the pinnfast run failed (exit {process.returncode}): {_last_line(stderr)}")
    try:
        record = pinnfast_record(run_dir, args.nu_init, args.log_every)
    except pf.PinnfastError as exc:  # stopped before its first checkpoint
        raise RuntimeError(f"the pinnfast run stopped at the cap with nothing to read ({exc}): raise --max-seconds")
    return dict(record, wall=wall, capped=capped)


def pinnfast_record(run_dir, nu_init, log_every):
    """A pinnfast run folder as a record: ν every ``log_every`` steps (and at the last) with seconds from the run's
    compile time (at its first step) and its mean step rate after it; the reported ν from result.json, or the last
    iterate of a run stopped before its end."""
    result = read_result(run_dir)
    if result:
        steps, seconds, compiling = result["steps"], result["seconds"], result.get("compile_seconds", 0.0)
    else:  # stopped at the cap: the checkpoint says how far it got
        state = load_checkpoint(run_dir)
        steps, seconds, compiling = state["step"], state["seconds"], state.get("compile_seconds", 0.0)
    table = metrics_table(run_dir)
    table = table[table["step"] <= steps]
    kept = (table["step"] % log_every == 0) | (table["step"] == steps)
    log = [[0, 0.0, nu_init]] + [[int(s), compiling + float(s) * (seconds - compiling) / steps, float(nu)]
                                 for s, nu in zip(table["step"][kept], table["nu"][kept])]
    if result:
        first, last = result["nu_window"]
        nu, how = result["nu"], f"mean over steps {first}–{last}"
    else:
        nu, how = log[-1][2], "last iterate (stopped at the cap)"
    return dict(tool=f"pinnfast {pf.__version__}", steps=int(steps), seconds=float(seconds),
                compile_seconds=float(compiling), log=log, nu=nu, nu_how=how)


def _environment(args):
    """The children's environment: this one, with ``--threads`` CPU threads when given."""
    if args.threads is None:
        return dict(os.environ)
    return dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


# ----------------------------------------------------------------- the comparison
def time_to(log, nu_true, tol):
    """(first, held): the seconds at which ν first came within ``tol`` of ``nu_true``, and from which on it stayed
    within to the end of the log; None where it did not."""
    inside = [abs(nu / nu_true - 1) <= tol for _, _, nu in log]
    first = next((seconds for (_, seconds, _), ok in zip(log, inside) if ok), None)
    held = None
    for (_, seconds, _), ok in zip(reversed(log), reversed(inside)):
        if not ok:
            break
        held = seconds
    return first, held


def error_at(log, seconds, nu_true):
    """ν's relative error at ``seconds`` (its last sample by then), or None after the run ended."""
    if seconds > log[-1][1]:
        return None
    nu = [nu for _, at, nu in log if at <= seconds][-1]
    return nu / nu_true - 1


def _seconds(value):
    return "not reached" if value is None else f"{value:.0f} s"


def _held(held, end):
    """(``held``, its cell) when ν stayed within over at least MIN_HELD of the run's ``end`` seconds, else None."""
    if held is not None and end - held < MIN_HELD * end:
        return None, f"not held (within over the last {end - held:.0f} s only)"
    return held, _seconds(held)


def _ratio(peer, ours, peer_end):
    """How many times longer the peer took than pinnfast; a lower bound where the peer never got there."""
    if ours is None or ours <= 0:
        return ""
    return f"{peer / ours:.1f}×" if peer is not None else f"> {peer_end / ours:.1f}×"


def comparison_table(peer, ours, nu_true):
    """Markdown rows: the peer (DeepXDE), pinnfast, and the peer / pinnfast ratio."""
    rows = [f"| | {peer['tool']} | {ours['tool']} | {peer['tool'].split()[0]} / pinnfast |", "|---|---|---|---|"]
    ms = [1000 * (r["seconds"] - r.get("compile_seconds", 0.0)) / max(r["steps"], 1) for r in (peer, ours)]
    rows.append(f"| ms per step (a compile left out) | {ms[0]:.1f} | {ms[1]:.1f} | {ms[0] / ms[1]:.1f}× |")
    rows.append(f"| steps; training s (a compile included); wall s (start-up included) | " + " | ".join(
        f"{r['steps']}; {r['seconds']:.0f}{' (cap)' if r['capped'] else ''}{_compiling(r)}; {r['wall']:.0f}"
        for r in (peer, ours)) + " | |")
    end = max(peer["log"][-1][1], ours["log"][-1][1])
    for at in [s for s in SNAPSHOTS if s <= end]:
        errors = [error_at(r["log"], at, nu_true) for r in (peer, ours)]
        rows.append(f"| ν error at {at} s | " + " | ".join("(ended)" if e is None else f"{100 * e:+.2f} %"
                                                             for e in errors) + " | |")
    rows.append("| ν error at the end (last iterate) | " + " | ".join(
        f"{100 * (r['log'][-1][2] / nu_true - 1):+.2f} %" for r in (peer, ours)) + " | |")
    rows.append("| ν reported | " + " | ".join(
        f"{r['nu']:.6g} ({100 * (r['nu'] / nu_true - 1):+.2f} %, {r['nu_how']})" for r in (peer, ours)) + " | |")
    for tol in TOLERANCES:
        (peer_first, peer_held), (our_first, our_held) = (time_to(r["log"], nu_true, tol) for r in (peer, ours))
        (peer_held, peer_cell), (our_held, our_cell) = (_held(held, r["log"][-1][1])
                                                        for held, r in ((peer_held, peer), (our_held, ours)))
        label = f"{100 * tol:g} %"
        rows.append(f"| time to {label}: first | {_seconds(peer_first)} | {_seconds(our_first)} | "
                    f"{_ratio(peer_first, our_first, peer['seconds'])} |")
        rows.append(f"| time to {label}: held to the end | {peer_cell} | {our_cell} | "
                    f"{_ratio(peer_held, our_held, peer['seconds'])} |")
    return rows


def _compiling(record):
    return f" ({record['compile_seconds']:.0f} s of it compiling)" if record.get("compile_seconds") else ""


def machine(threads):
    """CPU model, core count, threads per tool, Python and torch versions: the conditions a timing belongs to."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {threads} thread(s) per tool, torch {torch.__version__}, "
            f"Python {platform.python_version()}, {datetime.date.today().isoformat()}")


# ----------------------------------------------------------------- command line
def _parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data_path(),
                        help=f"observations, .npz or .csv (default: the shipped example, ν = {DEFAULT_DATA_NU})")
    parser.add_argument("--nu-true", type=float,
                        help="the true ν of --data (needed unless it is the shipped example)")
    parser.add_argument("--nu-init", type=float, default=pf.TrainConfig.nu_init,
                        help="ν both tools start from (default pinnfast's, %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=420.0,
                        help="each tool is stopped this long after its process started, so that the script ends "
                             "within about 15 minutes (default %(default)s)")
    parser.add_argument("--log-every", type=int, default=10, help="steps between ν samples (default %(default)s)")
    parser.add_argument("--threads", type=int, help="CPU threads of each tool (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of both tools (default %(default)s)")
    parser.add_argument("--work", type=Path, help="folder for the runs and peer_deepxde.json (default: a new "
                                                  "temporary folder)")
    # the DeepXDE child process: where it writes its log, and when (time.time()) it stops
    parser.add_argument("--deepxde-log", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    for name in ("nu_true", "nu_init", "max_seconds", "log_every", "threads"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            print(f"peer_deepxde: error: --{name.replace('_', '-')} must be positive, got {value}", file=sys.stderr)
            return 2
    if args.deepxde_log is not None:
        args.deepxde_log.write_text(json.dumps(deepxde_run(args.data, args.nu_init, args.seed, args.log_every,
                                                           args.deadline)))
        return 0
    try:  # the user's input first: a bad file is an error whether or not DeepXDE is installed
        pf.load_observations(args.data)
    except pf.PinnfastError as exc:
        print(f"peer_deepxde: error: {exc}", file=sys.stderr)
        return 2
    if args.nu_true is None:
        if Path(args.data).resolve() != default_data_path().resolve():
            print(f"peer_deepxde: error: --nu-true is needed for {args.data}: ν's error cannot be measured without "
                  "the truth", file=sys.stderr)
            return 2
        args.nu_true = DEFAULT_DATA_NU
    if importlib.util.find_spec("deepxde") is None:
        print(SKIP)
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="peer_deepxde_"))
    work.mkdir(parents=True, exist_ok=True)
    records = []
    try:
        for name, run in (("DeepXDE", run_deepxde), ("pinnfast", run_pinnfast)):
            print(f"peer_deepxde: running {name} (at most {args.max_seconds:g} s) ...", file=sys.stderr, flush=True)
            records.append(run(args, work))
    except RuntimeError as exc:
        print(f"peer_deepxde: error: {exc}", file=sys.stderr)
        return 1
    peer, ours = records
    title = (f"{args.data} (ν = {args.nu_true:g}), both started at ν = {args.nu_init:g}, at most "
             f"{args.max_seconds:g} s each; {machine(args.threads or torch.get_num_threads())}")
    (work / "peer_deepxde.json").write_text(json.dumps(dict(title=title, nu_true=args.nu_true, runs=records),
                                                       indent=1))
    print(f"\n== DeepXDE beside pinnfast: {title} ==\n{SETUP}\n")
    print("\n".join(comparison_table(peer, ours, args.nu_true)))
    print(f"\nevery ν sample: {work / 'peer_deepxde.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
