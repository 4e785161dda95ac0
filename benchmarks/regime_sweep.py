"""ν recovery across regimes with the default command: `pinnfast infer` on exact Burgers data of many kinds.

    python3 benchmarks/regime_sweep.py --work /tmp/sweep [--jobs 2] [--cases A,B] [-- extra infer options]

Each case makes its data with ``make_observations`` (Fletcher's travelling wave or the two-front Cole–Hopf field;
ν from 0.005 to 0.1; boxes of different size and offset; 300–4000 points; 0–3 % noise) and runs the default
``pinnfast infer`` with ν started 3–5× away from the truth, below or above. ``--jobs`` runs cases side by side,
one CPU thread each (their seconds are then those of a shared machine: say so when quoting them). Prints one
markdown table (error, reported ± spread, steps, seconds, warnings) and writes sweep.json to ``--work``.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import pinnfast as pf

UNIT = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
# name: (field, nu, box, points, noise, nu_init)
CASES = {
    "A": ("wave", 0.08, UNIT, 2000, 0.0, 0.02),
    "B": ("wave", 0.08, UNIT, 2000, 0.0, 0.3),
    "C": ("wave", 0.005, pf.burgers.DEMO_BOX, 3000, 0.0, 0.02),
    "D": ("cole-hopf", 0.005, ((3.0, 3.0, 1.0), (4.0, 4.0, 2.0)), 3000, 0.0, 0.015),
    "E": ("cole-hopf", 0.05, ((-2.0, -2.0, 0.0), (2.0, 2.0, 2.0)), 4000, 0.0, 0.01),
    "F": ("wave", 0.1, ((-2.0, -2.0, 0.0), (2.0, 2.0, 1.0)), 300, 0.0, 0.4),
    "G": ("cole-hopf", 0.02, UNIT, 1000, 0.0, 0.005),
    "H": ("wave", 0.02, pf.burgers.DEMO_BOX, 1000, 0.01, 0.06),
    "I": ("cole-hopf", 0.01, ((0.5, 0.5, 0.0), (1.5, 1.5, 1.0)), 500, 0.02, 0.03),
    "J": ("wave", 0.05, pf.burgers.DEMO_BOX, 2000, 0.03, 0.015),
    "K": ("cole-hopf", 0.1, ((1.0, 1.0, 0.0), (3.0, 3.0, 2.0)), 800, 0.01, 0.03),
    "L": ("wave", 0.01, pf.burgers.DEMO_BOX, 4000, 0.01, 0.05),
    # issue 13's grid: ν from 0.005 to 0.1, clean and 1 % noise, started 2–5× away on both sides, sparse data
    "M": ("wave", 0.005, pf.burgers.DEMO_BOX, 2000, 0.01, 0.001),
    "N": ("cole-hopf", 0.01, UNIT, 2000, 0.0, 0.04),
    "O": ("wave", 0.05, ((2.0, 2.0, 1.0), (4.0, 4.0, 2.0)), 500, 0.01, 0.2),
    "P": ("wave", 0.1, pf.burgers.DEMO_BOX, 2000, 0.0, 0.02),
    # held out: added after the error bar (ν's sub-box spread) was designed on A–P, to check its coverage
    "Q": ("wave", 0.06, ((0.0, 0.0, 0.0), (2.0, 2.0, 1.0)), 1500, 0.0, 0.015),
    "R": ("cole-hopf", 0.03, pf.burgers.DEMO_BOX, 2500, 0.0, 0.1),
    "S": ("wave", 0.04, ((1.0, 1.0, 0.5), (2.0, 2.0, 1.5)), 800, 0.01, 0.12),
    "T": ("cole-hopf", 0.07, ((0.0, 0.0, 0.0), (2.0, 2.0, 2.0)), 1200, 0.0, 0.02),
    "U": ("wave", 0.015, pf.burgers.DEMO_BOX, 3000, 0.03, 0.045),
    "V": ("wave", 0.08, pf.burgers.DEMO_BOX, 1000, 0.0, 0.02),
}


def run_case(job):
    """Make the case's data, run the default infer on it (one thread), return its row."""
    name, work, extra = job
    field, nu, box, points, noise, nu_init = CASES[name]
    data = Path(work) / f"{name}.npz"
    pf.save_observations(data, pf.make_observations(nu, points, noise, seed=1, box=box, field=field))
    out = Path(work) / f"run_{name}"
    command = [sys.executable, "-m", "pinnfast", "infer", "--data", str(data), "--out", str(out), "--overwrite",
               "--nu-init", str(nu_init), "--nu-true", str(nu), "--quiet", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    row = dict(case=name, field=field, nu_true=nu, box=box, points=points, noise=noise, nu_init=nu_init,
               command=" ".join(command[1:]), returncode=done.returncode,
               notes=[line for line in done.stderr.splitlines() + done.stdout.splitlines() if "note:" in line
                      or "error:" in line])
    if done.returncode == 0:
        result = json.loads((out / "result.json").read_text())
        row.update({k: result.get(k) for k in ("nu", "nu_std", "nu_spread", "nu_sigma", "nu_error", "nu_drift",
                                                "nu_warning", "steps", "seconds", "rmse_u", "rmse_v")})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="folder for the data and runs (created)")
    parser.add_argument("--jobs", type=int, default=1, help="cases side by side (default 1)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names (default all)")
    parser.add_argument("extra", nargs="*", help="options passed on to `pinnfast infer` (after --)")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    jobs = [(name, str(work), args.extra) for name in args.cases.split(",")]
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        rows = []
        for row in pool.map(run_case, jobs):
            rows.append(row)
            print(json.dumps(row), flush=True)
    (work / "sweep.json").write_text(json.dumps(rows, indent=1))
    print(f"\n== regime sweep: pinnfast infer {' '.join(args.extra)} ==")
    print("| case | field | ν | box | points | noise | ν start | ν reported ± error bar | error | error / bar | "
          "warning | steps | s | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        box = "×".join(f"[{lo:g},{hi:g}]" for lo, hi in zip(*r["box"]))
        if r["returncode"] != 0:
            print(f"| {r['case']} | {r['field']} | {r['nu_true']} | {box} | {r['points']} | {r['noise']:.0%} | "
                  f"{r['nu_init']} | failed ({r['returncode']}) | | | | | | {'; '.join(r['notes'])} |")
            continue
        bar, ratio = r.get("nu_sigma"), _bars(r)
        print(f"| {r['case']} | {r['field']} | {r['nu_true']} | {box} | {r['points']} | {r['noise']:.0%} | "
              f"{r['nu_init']} | {r['nu']:.5g} ± {'∞' if bar is None else f'{bar:.2g}'} | {r['nu_error']:+.2%} | "
              f"{'' if ratio is None else f'{ratio:.2f}'} | {'yes' if r.get('nu_warning') else 'no'} | "
              f"{r['steps']} | {r['seconds']:.0f} | "
              f"{'; '.join(n.split('note: ')[-1] for n in r['notes'] if 'not identified well' not in n)} |")
    ratios = [ratio for ratio in map(_bars, rows) if ratio is not None]
    if ratios:
        print(f"\ntruth within ±1 error bar: {sum(q <= 1 for q in ratios)} of {len(ratios)} cases; within ±2: "
              f"{sum(q <= 2 for q in ratios)}")


def _bars(row):
    """|error| in error bars (the truth's distance from the reported ν, in units of ``nu_sigma``), or None."""
    if row["returncode"] != 0 or row.get("nu_sigma") is None:
        return None
    return abs(row["nu"] - row["nu_true"]) / row["nu_sigma"]


if __name__ == "__main__":
    main()
