"""A run folder holds one run or nothing: its checkpoint, its metrics CSV, its result and its plot.

A fresh run starts only in a missing or empty folder (``overwrite`` first removes a previous run's files, never
anyone else's), and a resumed run's metrics must match its checkpoint, so that no number from another run can
leak into the reported ν.
"""
import csv
import os
from pathlib import Path

import torch

from .errors import PinnfastError

CHECKPOINT, METRICS_CSV, RESULT, PLOT = "checkpoint.pt", "metrics.csv", "result.json", "training.png"
RUN_FILES = (CHECKPOINT, CHECKPOINT + ".tmp", METRICS_CSV, RESULT, PLOT)


def claim_empty(out_dir, overwrite=False):
    """Make ``out_dir`` an empty folder for a new run, or refuse in one line."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PinnfastError(f"--out {out_dir} is a file, not a folder")
    if out_dir.is_dir():
        if overwrite:
            for name in RUN_FILES:
                (out_dir / name).unlink(missing_ok=True)
        held = sorted(p.name for p in out_dir.iterdir())
        if held:
            if overwrite:
                raise PinnfastError(f"{out_dir} holds files that are not a pinnfast run's ({', '.join(held)}); "
                                    "choose another output folder")
            what = "a run (checkpoint.pt); continue it with --resume or" if CHECKPOINT in held else \
                f"{', '.join(held)} but no checkpoint to resume;"
            raise PinnfastError(f"{out_dir} already holds {what} start again with --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)


def load_checkpoint(run_dir):
    """The checkpoint of a run folder as a dict (loaded on the CPU), or a one-line error."""
    path = Path(run_dir) / CHECKPOINT
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise PinnfastError(f"{run_dir} is a file, not a run folder")
    if not path.is_file():
        raise PinnfastError(f"{path}: no checkpoint; train with `pinnfast infer --out {run_dir}` first")
    try:
        return torch.load(path, weights_only=False, map_location="cpu")
    except Exception as exc:  # truncated or foreign file: torch's reasons vary (pickle, zip, EOF)
        raise PinnfastError(f"{path}: not a readable pinnfast checkpoint ({exc})") from None


def save_checkpoint(run_dir, state):
    """Write atomically: a crash mid-write leaves the previous checkpoint whole."""
    tmp = Path(run_dir) / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, Path(run_dir) / CHECKPOINT)


def read_metrics(run_dir):
    """Header and rows (as written) of a run's metrics CSV; no file → ``(None, [])``."""
    path = Path(run_dir) / METRICS_CSV
    if not path.is_file():
        return None, []
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return (rows[0] if rows else None), rows[1:]


def append_metrics(run_dir, header, rows):
    path = Path(run_dir) / METRICS_CSV
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(header)
        writer.writerows(rows)


def cut_metrics_at(run_dir, header, step):
    """Keep exactly the rows of steps 1..``step`` (a resume starts there), or refuse if they are not all there
    under the same header: then the CSV belongs to another run."""
    found, rows = read_metrics(run_dir)
    steps = [row[0] for row in rows[:step]]
    if found != list(header) or steps != [str(k) for k in range(1, step + 1)]:
        raise PinnfastError(f"{Path(run_dir) / METRICS_CSV} does not match {CHECKPOINT} (at step {step}): it "
                            "belongs to another run; start again with --overwrite")
    with open(Path(run_dir) / METRICS_CSV, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows[:step]])
