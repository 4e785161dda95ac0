"""A run folder holds one run or nothing: its checkpoint, its metrics CSV, its result and its plot, the checkpoints
kept at chosen steps (``checkpoints/step_<n>.pt``) and what ``pinnfast diagnose`` wrote about them.

A fresh run starts only in a missing or empty folder (``overwrite`` removes a previous run, and only when the
folder holds nothing else), a resumed run's metrics must match its checkpoint, and every file is replaced
atomically, so that no number from another run, or from half a write, can reach the reported ν.
"""
import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from .errors import PinnfastError

CHECKPOINT, METRICS_CSV, RESULT, PLOT = "checkpoint.pt", "metrics.csv", "result.json", "training.png"
DIAGNOSE_PNG, DIAGNOSE_NPZ, DIAGNOSE_JSON = "gradients.png", "diagnose.npz", "diagnose.json"
KEPT = "checkpoints"  # the folder of checkpoints kept at chosen steps
RUN_FILES = tuple(name + tmp for name in (CHECKPOINT, METRICS_CSV, RESULT, PLOT, DIAGNOSE_PNG, DIAGNOSE_NPZ,
                                          DIAGNOSE_JSON) for tmp in ("", ".tmp"))
_KEPT_NAME = re.compile(r"step_(\d+)\.pt(\.tmp)?")


def check_claimable(out_dir, overwrite=False):
    """Refuse, changing nothing, unless ``out_dir`` is missing, empty, or (with ``overwrite``) holds only a run."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PinnfastError(f"--out {out_dir} is a file, not a folder")
    held = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if not held:
        return
    foreign = [name for name in held if name not in RUN_FILES and not (name == KEPT and _only_kept(out_dir / KEPT))]
    if overwrite and foreign:
        raise PinnfastError(f"{out_dir} holds files that are not a pinnfast run's ({', '.join(foreign)}); nothing "
                            "was deleted: choose another output folder")
    if not overwrite:
        what = "a run (checkpoint.pt); continue it with --resume or" if CHECKPOINT in held else \
            f"{', '.join(held)} but no checkpoint to resume;"
        raise PinnfastError(f"{out_dir} already holds {what} start again with --overwrite")


def claim_empty(out_dir, overwrite=False):
    """Make ``out_dir`` an empty folder for a new run (see :func:`check_claimable`)."""
    check_claimable(out_dir, overwrite)
    out_dir = Path(out_dir)
    for name in RUN_FILES:
        (out_dir / name).unlink(missing_ok=True)
    if (out_dir / KEPT).is_dir():
        for path in (out_dir / KEPT).iterdir():
            path.unlink()
        (out_dir / KEPT).rmdir()
    out_dir.mkdir(parents=True, exist_ok=True)


def _only_kept(folder):
    """Whether ``folder`` holds nothing but kept checkpoints (``step_<n>.pt``)."""
    return folder.is_dir() and all(path.is_file() and _KEPT_NAME.fullmatch(path.name) for path in folder.iterdir())


def kept_path(run_dir, step):
    """Where the checkpoint kept at ``step`` lives."""
    return Path(run_dir) / KEPT / f"step_{step}.pt"


def kept_steps(run_dir):
    """The steps whose checkpoints the run folder keeps, in order."""
    folder = Path(run_dir) / KEPT
    names = (_KEPT_NAME.fullmatch(path.name) for path in folder.iterdir()) if folder.is_dir() else ()
    return sorted(int(match[1]) for match in names if match and not match[2])


def load_checkpoint(run_dir, step=None):
    """The checkpoint of a run folder (``step``: the one kept at that step) as a dict loaded on the CPU, or a
    one-line error."""
    path = Path(run_dir) / CHECKPOINT if step is None else kept_path(run_dir, step)
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise PinnfastError(f"{run_dir} is a file, not a run folder")
    if not path.is_file():
        raise PinnfastError(f"{path}: no checkpoint; train with `pinnfast infer --out {run_dir}` first")
    try:
        return torch.load(path, weights_only=False, map_location="cpu")
    except Exception as exc:  # truncated or foreign file: torch's reasons vary (pickle, zip, EOF)
        raise PinnfastError(f"{path}: not a readable pinnfast checkpoint ({exc})") from None


def save_checkpoint(run_dir, state, step=None):
    """Write the run's checkpoint, or (``step``) the copy kept at that step."""
    path = Path(run_dir) / CHECKPOINT if step is None else kept_path(run_dir, step)
    path.parent.mkdir(exist_ok=True)
    _replace(path, lambda tmp: torch.save(state, tmp))


def write_result(run_dir, result):
    text = json.dumps(result, indent=2) + "\n"
    _replace(Path(run_dir) / RESULT, lambda tmp: Path(tmp).write_text(text))


def read_result(run_dir):
    """The run's result.json as a dict, or ``{}`` when there is none or it cannot be read."""
    try:
        return json.loads((Path(run_dir) / RESULT).read_text())
    except (OSError, ValueError):
        return {}


def metrics_table(path):
    """A metrics CSV (a run folder's, or the file itself) as a structured array, one field per column."""
    path = Path(path)
    path = path / METRICS_CSV if path.is_dir() else path
    return np.atleast_1d(np.genfromtxt(path, delimiter=",", names=True))


def metrics_header(run_dir):
    """The column names of a run folder's metrics CSV (empty when it has none)."""
    path = Path(run_dir) / METRICS_CSV
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return next(csv.reader(handle), [])


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
    path = Path(run_dir) / METRICS_CSV
    rows = []
    if path.is_file():
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    steps = [row[0] for row in rows[1:step + 1]]
    if not rows or rows[0] != list(header) or steps != [str(k) for k in range(1, step + 1)]:
        raise PinnfastError(f"{path} does not match {CHECKPOINT} (at step {step}): it belongs to another run; "
                            "start again with --overwrite")
    text = io.StringIO()
    csv.writer(text).writerows(rows[:step + 1])
    _replace(path, lambda tmp: Path(tmp).write_text(text.getvalue()))


def _replace(path, write):
    """Write through a temporary file and rename: a crash mid-write leaves the previous file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
