"""The backward's tiles, warps and persistent programs, chosen by timing on the GPU it will run on.

    python3 benchmarks/tune_backward.py                        # GPU: ms per configuration, JSON to $OUT
    python3 benchmarks/tune_backward.py --json FILE --write     # anywhere: BACKWARD_LAUNCH_TABLE from those timings

The static report (benchmarks/sm90_static.py --search --backward) gives each of the backward's kernels the first
tile that spills nothing; whether that is also the fastest, and how many persistent programs pay, only a GPU says.
Candidates: the table's own tiles (one per kernel), and one tile and warps for every kernel; a uniform winner is
written into every kernel's entry. Workloads: the trainer's — the fused Burgers loss (M3, Nr points) and the data
term's value-only jets backward (Nd points) — at the widths of the GPU report and of the main job. Compiles run
side by side in spawned processes first (benchmarks/side_by_side.py).
"""
import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/

import pinnfast as pf  # noqa: E402
from pinnfast.burgers import FIRST, SECOND  # noqa: E402
from pinnfast.jets import JetSpec  # noqa: E402
from pinnfast.kernels import backward, jets as kernel  # noqa: E402
from side_by_side import run_side_by_side  # noqa: E402
from timing import timed  # noqa: E402
import sm90_static  # noqa: E402

# (None, None): the table's tile and warps for each kernel. Tiles of 16 points and more were left out: the first GPU
# run of this script spent its 105 s compiling the single-launch backward's, which spilled ~8 KB per thread
CANDIDATES = [(None, None), (4, 8), (8, 4), (8, 8)]
PROGRAMS_PER_SM = [1, 2, 4]
# points per chunk: None = as many as the stash allows (few launches, the stash in HBM), 2048 = a stash that L2 holds
# (about 50 MB at W=64 L=4) in more launches; timed with the table's tiles, reported, not written into the table
CHUNKS = [None, 2048]
DIFFERS_AT_MOST = 1e-4  # relative, from the first candidate's gradients: more is a wrong kernel, never a choice
# (name, width, depth, points, Burgers loss or value-only jets backward)
WORKLOADS = [("burgers_loss", 64, 4, 16384, True), ("burgers_loss", 128, 6, 16384, True),
             ("burgers_loss", 32, 3, 512, True), ("data_jets", 64, 4, 2048, False),
             ("data_jets", 128, 6, 2048, False), ("data_jets", 32, 3, 512, False)]


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a dry run under TRITON_INTERPRET=1 (--smoke)


def setup(width, depth, n, burgers, seed=0):
    torch.manual_seed(seed)
    model = pf.ModifiedMLP(3, 2, width, depth).to(DEVICE)
    x = torch.rand(n, 3, device=DEVICE)
    spec = JetSpec(FIRST, SECOND) if burgers else JetSpec((), ())
    grad_out = None if burgers else torch.randn(spec.n_outputs, n, 2, device=DEVICE)
    nu = torch.tensor(0.02, device=DEVICE)
    return model, x, spec, grad_out, nu


def call(model, x, spec, grad_out, nu, block, warps, programs, chunk=None):
    return backward.launch_backward(model, x, spec, "tf32x3", grad_out=grad_out, nu=nu, block=block, warps=warps,
                                    programs=programs, chunk=chunk)


def compile_one(width, depth, n, burgers, block, warps):
    call(*setup(width, depth, n, burgers), block, warps, None)
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    return True


def measure(workers, workloads=WORKLOADS, candidates=CANDIDATES, programs_per_sm=PROGRAMS_PER_SM, chunks=CHUNKS):
    """Rows of (workload, width, depth, N, tile, warps, programs_per_sm, chunk, ms) on this GPU."""
    jobs = [(compile_one, (w, d, n, burgers, block, warps)) for _, w, d, n, burgers in
            sorted(workloads, key=lambda job: -job[1]) for block, warps in candidates]
    outcomes = run_side_by_side(jobs, workers, lambda k, s: print(f"compiled {k}/{len(jobs)} in {s:.0f} s", flush=True))
    failed = {args[:2] + args[3:]: error for (_, args), (_, error) in zip(jobs, outcomes) if error is not None}
    cuda = DEVICE == "cuda"
    sms = torch.cuda.get_device_properties(0).multi_processor_count if cuda else 1
    print(f"{torch.cuda.get_device_name() if cuda else 'cpu (dry run)'}: the backward, tf32x3, ms (median) per tile × "
          f"warps, programs per SM ({sms} SMs) and chunk size")
    rows = []
    for name, width, depth, n, burgers in workloads:
        model, x, spec, grad_out, nu = setup(width, depth, n, burgers)
        reference = None
        for block, warps in candidates:
            error = failed.get((width, depth, burgers, block, warps))
            if error is not None:
                print(f"{name} W={width} L={depth} {block}×{warps}: failed: {error.strip().splitlines()[-1][:120]}")
                continue
            for chunk in chunks if block is None else [None]:
                # every tile and chunk size must give the same gradients (the first's, checked against float64
                # autograd by gpu_report.py), to float32 rounding
                sums = call(model, x, spec, grad_out, nu, block, warps, None, chunk)
                reference = reference or sums
                differs = max(((sums[k] - reference[k]).norm() / reference[k].norm().clamp_min(1e-30)).item()
                              for k in sums)
                for per_sm in programs_per_sm:
                    ms = timed(lambda: call(model, x, spec, grad_out, nu, block, warps, per_sm * sms, chunk), not cuda)
                    rows.append(dict(workload=name, width=width, depth=depth, N=n, burgers=burgers, tile=block,
                                     warps=warps, programs_per_sm=per_sm, chunk=chunk, ms=ms, differs=differs))
                    tiles = "the table's tiles" if block is None else f"tile {block:2d} × {warps} warps"
                    print(f"{name:13s} W={width:3d} L={depth} N={n:5d} {tiles}, {per_sm} per SM, chunks of "
                          f"{chunk or 'all'}: {ms:8.3f} ms (gradients differ from the first's by {differs:.1e})",
                          flush=True)
    return rows


def fastest(rows):
    """BACKWARD_LAUNCH_TABLE entries, per stage: the fastest uniform (tile, warps) of each workload where it beat
    the table's own tiles (both with all points in one chunk), keyed as the launcher keys it. The fastest chunk size
    is printed: it is set by hand (``STASH_FLOATS``)."""
    table = {}
    for workload in sorted({(r["workload"], r["width"], r["depth"]) for r in rows}):
        valid = [r for r in rows if (r["workload"], r["width"], r["depth"]) == workload
                 and r["differs"] < DIFFERS_AT_MOST]
        chunked, whole = [r for r in valid if r.get("chunk")], [r for r in valid if not r.get("chunk")]
        for best in [min(rows_, key=lambda r: r["ms"]) for rows_ in (chunked, whole) if rows_]:
            tiles = "the table's tiles" if best["tile"] is None else f"tile {best['tile']} × {best['warps']} warps"
            print(f"best {workload[0]} W={workload[1]} L={workload[2]} N={best['N']}: {best['ms']:.3f} ms at {tiles}, "
                  f"{best['programs_per_sm']} programs per SM, chunks of {best.get('chunk') or 'all'} points")
        if not whole:
            continue
        best = min(whole, key=lambda r: r["ms"])
        if best["tile"] is None:  # the table's tiles won
            continue
        spec = JetSpec(FIRST, SECOND) if best["burgers"] else JetSpec((), ())
        meta = kernel.pack_weights(pf.ModifiedMLP(3, 2, best["width"], best["depth"]), spec, "cpu")["meta"]
        for name in backward.STAGES:
            table.setdefault(name, {})[kernel.launch_key(meta, best["burgers"], "tf32x3")] = (best["tile"], best["warps"])
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="timings from an earlier run (tune_backward.json) instead of measuring")
    parser.add_argument("--write", action="store_true", help="rewrite BACKWARD_LAUNCH_TABLE with the fastest tiles")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="compiles side by side")
    parser.add_argument("--smoke", action="store_true", help="CPU interpreter dry run: tiny sizes, two tiles")
    args = parser.parse_args()
    if args.json:
        rows = json.loads(Path(args.json).read_text())
    elif args.smoke:
        rows = measure(2, [("burgers_loss", 16, 1, 37, True), ("data_jets", 16, 1, 37, False)],
                       [(None, None), (4, 4)], [1], [None, 16])
    else:
        rows = measure(args.workers)
    if not args.json:
        (Path(os.environ.get("OUT", ".")) / "tune_backward.json").write_text(json.dumps(rows, indent=1))
    table = fastest(rows)
    if args.write:
        sm90_static.write_table(kernel.LAUNCH_TABLE, {name: {**kernel.BACKWARD_LAUNCH_TABLE.get(name, {}),
                                                             **table.get(name, {})}
                                                      for name in backward.STAGES})
        print(f"wrote {sm90_static.TABLE_FILE}")


if __name__ == "__main__":
    main()
