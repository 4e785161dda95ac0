"""Several runs sharing the machine's cores: K default runs started together against one alone.

    python benchmarks/concurrent_runs.py --runs 2 --steps 2000 [--threads auto] [--out results.json]

Each run is ``pinnfast infer --fixed-steps --steps N --compile --quiet`` in its own folder (compile cache warmed first by a
run that is not timed). Reports each run's training seconds (result.json) and wall time, and the slowdown of the
shared runs against the lone one. The goal on a 2-core machine: two runs together within 2.5x of one alone.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def start(out, steps, threads):
    argv = [sys.executable, "-m", "pinnfast", "infer", "--out", str(out), "--fixed-steps", "--steps", str(steps),
            "--compile", "--quiet"]  # compiled, as a default run of 5000 steps or more is on a CPU
    if threads is not None:
        argv += ["--threads", threads]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), time.perf_counter()


def finish(process, began, out):
    _, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a run failed ({process.returncode}): {err.strip()[-400:]}")
    result = json.loads((Path(out) / "result.json").read_text())
    return {"training_s": result["seconds"] - result["compile_seconds"], "wall_s": time.perf_counter() - began}


def measure(runs, steps, threads, folder):
    """Train ``runs`` runs together; their timings."""
    started = [(start(folder / f"run{k}", steps, threads), folder / f"run{k}") for k in range(runs)]
    return [finish(process, began, out) for (process, began), out in started]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", help="passed to pinnfast --threads (default: pinnfast's own)")
    parser.add_argument("--out", help="write the numbers here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        measure(1, 200, args.threads, scratch / "warm")  # fills torch's compile cache
        alone = measure(1, args.steps, args.threads, scratch / "alone")[0]
        together = measure(args.runs, args.steps, args.threads, scratch / "together")
    worst = max(run["training_s"] for run in together)
    report = {"cpus": os.cpu_count(), "runs": args.runs, "steps": args.steps, "threads": args.threads or "default",
              "alone": alone, "together": together, "slowdown": worst / alone["training_s"]}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
