"""A run folder holds one run or nothing: its checkpoint, its metrics CSV, its result and its plot, the checkpoints
kept at chosen steps (``checkpoints/step_<n>.pt``) and what ``pinnfast diagnose`` wrote about them.

A fresh run starts only in a missing or empty folder (``overwrite`` removes a previous run, and only when the
folder holds nothing else), a resumed run's metrics must match its checkpoint, and every file is replaced
atomically, so that no number from another run, or from half a write, can reach the reported ν.

A run folder is data, never code: checkpoints load with ``weights_only=True`` (tensors, numbers, strings, lists
and dicts; nothing is unpickled that could run), every write goes through a temporary file of a fresh random
name (so a symlink planted in the folder is never followed), and :func:`locked` gives one process at a time the
right to write it (an OS lock the kernel releases when the process dies, so a killed run leaves no stale lock).
"""
import contextlib
import csv
import importlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import PinnfastError

CHECKPOINT, METRICS_CSV, RESULT, PLOT = "checkpoint.pt", "metrics.csv", "result.json", "training.png"
DIAGNOSE_PNG, DIAGNOSE_NPZ, DIAGNOSE_JSON = "gradients.png", "diagnose.npz", "diagnose.json"
LBFGS_CSV = "lbfgs.csv"
KEPT = "checkpoints"  # the folder of checkpoints kept at chosen steps
LOCK = ".pinnfast.lock"  # held by the process that writes the folder; removed when it is done
NAMES = (CHECKPOINT, METRICS_CSV, RESULT, PLOT, DIAGNOSE_PNG, DIAGNOSE_NPZ, DIAGNOSE_JSON, LBFGS_CSV)
CHECKPOINT_KEYS = {"config": dict, "step": int, "seconds": float, "problem": dict, "optimizer": dict,
                   "scheduler": dict, "weights": dict}  # what every pinnfast checkpoint holds, and its type
_KEPT_NAME = re.compile(r"step_(\d+)\.pt")
_WRITES = {"count": 0}  # atomic renames by this process (counted for the fault-injection hook of the tests)


def is_run_file(name):
    """Whether ``name`` is a file a run writes in its folder, or the temporary file of such a write."""
    return _written(name) in NAMES


def _written(name):
    """The file that ``name`` is, or is the temporary file of (``.<file>.<random>.tmp``; an older pinnfast wrote
    ``<file>.tmp``)."""
    stem = name.removesuffix(".tmp")
    if stem == name:
        return name
    return stem[1:].rpartition(".")[0] if stem.startswith(".") else stem


def check_claimable(out_dir, overwrite=False):
    """Refuse, changing nothing, unless ``out_dir`` is missing, empty, holds only the remains of a run that stopped
    before its first checkpoint (its metrics and plot: nothing to resume, no result), or (with ``overwrite``) holds
    only a run."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise PinnfastError(f"--out {out_dir} is a file, not a folder")
    held = sorted(p.name for p in out_dir.iterdir() if p.name != LOCK) if out_dir.is_dir() else []
    if not held:
        return
    foreign = [name for name in held if not is_run_file(name) and not (name == KEPT and _only_kept(out_dir / KEPT))]
    if foreign and overwrite:
        raise PinnfastError(f"{out_dir} holds files that are not a pinnfast run's ({', '.join(foreign)}); nothing "
                            "was deleted: choose another output folder")
    if not overwrite and (foreign or {CHECKPOINT, KEPT, RESULT} & set(held)):
        what = "a run (checkpoint.pt); continue it with --resume or" if CHECKPOINT in held else \
            f"{', '.join(held)} but no checkpoint to resume;"
        raise PinnfastError(f"{out_dir} already holds {what} start again with --overwrite")


def claim_empty(out_dir, overwrite=False):
    """Make ``out_dir`` an empty folder for a new run (see :func:`check_claimable`)."""
    check_claimable(out_dir, overwrite)
    out_dir = Path(out_dir)
    for path in out_dir.iterdir() if out_dir.is_dir() else ():
        if is_run_file(path.name):
            path.unlink()
    if (out_dir / KEPT).is_dir():
        for path in (out_dir / KEPT).iterdir():
            path.unlink()
        (out_dir / KEPT).rmdir()
    out_dir.mkdir(parents=True, exist_ok=True)


def _only_kept(folder):
    """Whether ``folder`` holds nothing but kept checkpoints (``step_<n>.pt``) and their temporary files."""
    return folder.is_dir() and all(path.is_file() and _KEPT_NAME.fullmatch(_written(path.name))
                                   for path in folder.iterdir())


def kept_path(run_dir, step):
    """Where the checkpoint kept at ``step`` lives."""
    return Path(run_dir) / KEPT / f"step_{step}.pt"


def kept_steps(run_dir):
    """The steps whose checkpoints the run folder keeps, in order."""
    folder = Path(run_dir) / KEPT
    names = (_KEPT_NAME.fullmatch(path.name) for path in folder.iterdir()) if folder.is_dir() else ()
    return sorted(int(match[1]) for match in names if match)


@contextlib.contextmanager
def locked(run_dir):
    """Hold the exclusive right to write ``run_dir`` (created if missing) for the block, or refuse in one line
    naming the process that holds it. Re-entrant within a process; released by the kernel if the process dies."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise PinnfastError(f"--out {run_dir} is a file, not a folder")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = _acquire(run_dir / LOCK)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            (run_dir / LOCK).unlink()  # still ours: a waiting process checks that the file it locked is the path's
        handle.close()
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if nothing was written: a refused run leaves no folder behind


@contextlib.contextmanager
def locked_by_main(run_dir, ranks):
    """:func:`locked` on rank 0 of ``ranks`` (which writes the folder) for the block; if it is refused, every rank
    stops with the same error."""
    with contextlib.ExitStack() as stack:
        ranks.on_main(lambda: stack.enter_context(locked(run_dir)))
        yield


_HELD = {}  # resolved run folder → how many nested `locked` blocks of this process hold it


def _acquire(path):
    """Open and lock ``path`` (never through a symlink): the open lock file, with this process's PID in it."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise PinnfastError(f"{path}: cannot create the run folder's lock ({exc.strerror or exc})") from None
        handle = os.fdopen(fd, "r+")
        if not _try_lock(handle):
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise PinnfastError(f"{path.parent} is in use by another pinnfast process (PID {holder}); wait for it to "
                                "finish or choose another --out")
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file as we opened it: take the new one
            handle.truncate(0)
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()


def _try_lock(handle):
    """An exclusive, non-blocking OS lock on an open file: whether it was granted."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def load_checkpoint(run_dir, step=None):
    """The checkpoint of a run folder (``step``: the one kept at that step) as a dict loaded on the CPU, or a
    one-line error. Loaded as data only (``weights_only=True``, numpy arrays and scalars allowed, as older
    checkpoints may hold them): a checkpoint that needs code to load is refused."""
    path = Path(run_dir) / CHECKPOINT if step is None else kept_path(run_dir, step)
    if Path(run_dir).exists() and not Path(run_dir).is_dir():
        raise PinnfastError(f"{run_dir} is a file, not a run folder")
    if not path.is_file():
        raise PinnfastError(f"{path}: no checkpoint; train with `pinnfast infer --out {run_dir}` first")
    try:
        with torch.serialization.safe_globals(_NUMPY_DATA):
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # truncated, foreign, or holding objects that only code could rebuild
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise PinnfastError(f"{path}: not a readable pinnfast checkpoint ({reason})") from None
    check_structure(state, path)
    return state


def _numpy_data():
    """What unpickles numpy arrays and scalars (data that older checkpoints may hold, e.g. a ``nu_true`` given as
    ``np.float64``) and nothing else: numpy's array and scalar constructors and its dtypes."""
    multiarray = importlib.import_module("numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray")
    dtypes = {type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"}
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes]


_NUMPY_DATA = _numpy_data()


def check_structure(state, path):
    """One line for the first way ``state`` is not the structure of a pinnfast checkpoint."""
    if not isinstance(state, dict):
        raise PinnfastError(f"{path}: not a pinnfast checkpoint (it holds a {type(state).__name__}, not a dict)")
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise PinnfastError(f"{path}: not a whole pinnfast checkpoint (no {', '.join(missing)})")
    for key, kind in CHECKPOINT_KEYS.items():
        value = state[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            raise PinnfastError(f"{path}: its {key!r} is of type {type(value).__name__}, not {kind.__name__}")
    if state["step"] < 0 or not math.isfinite(state["seconds"]):
        raise PinnfastError(f"{path}: its step ({state['step']}) or seconds ({state['seconds']}) cannot be a run's")


def plain(value):
    """``value`` with numpy numbers and arrays as Python numbers and lists: what a checkpoint may hold so that it
    loads as data (``weights_only=True``)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_checkpoint(run_dir, state, step=None):
    """Write the run's checkpoint, or (``step``) the copy kept at that step."""
    path = Path(run_dir) / CHECKPOINT if step is None else kept_path(run_dir, step)
    path.parent.mkdir(exist_ok=True)
    write_file(path, lambda tmp: torch.save(state, tmp))


def write_result(run_dir, result):
    write_text(Path(run_dir) / RESULT, json.dumps(result, indent=2) + "\n")


def read_result(run_dir):
    """The run's result.json as a dict, or ``{}`` when there is none or it cannot be read."""
    try:
        result = json.loads((Path(run_dir) / RESULT).read_text())
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}


def metrics_table(path):
    """A metrics CSV (a run folder's, or the file itself) as a structured array, one field per column."""
    path = Path(path)
    path = path / METRICS_CSV if path.is_dir() else path
    with open(path, newline=None) as handle:  # any line ends
        text = handle.read()
    try:
        return np.atleast_1d(np.genfromtxt(io.StringIO(text), delimiter=",", names=True))
    except ValueError as exc:
        raise PinnfastError(f"{path}: not a metrics table ({exc})") from None


def metrics_header(run_dir):
    """The column names of a run folder's metrics CSV (empty when it has none)."""
    path = Path(run_dir) / METRICS_CSV
    if not path.is_file():
        return []
    with open(path, newline=None) as handle:
        return next(csv.reader(handle), [])


def append_metrics(run_dir, header, rows):
    """Append ``rows`` to the run's metrics CSV (with ``header`` first when it is new); never through a symlink."""
    path = Path(run_dir) / METRICS_CSV
    text = io.StringIO()
    writer = csv.writer(text)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "a", newline="") as handle:
            if handle.tell() == 0:
                writer.writerow(header)
            writer.writerows(rows)
            handle.write(text.getvalue())
    except OSError as exc:
        raise PinnfastError(f"{path}: cannot write ({exc.strerror or exc})") from None


def cut_metrics_at(run_dir, header, step):
    """Keep exactly the rows of steps 1..``step`` (a resume starts there), or refuse if they are not all there
    under the same header: then the CSV belongs to another run."""
    path = Path(run_dir) / METRICS_CSV
    rows = []
    if path.is_file():
        with open(path, newline=None) as handle:  # any line ends; a blank line is no row
            rows = [row for row in csv.reader(handle) if row]
    steps = [row[0] for row in rows[1:step + 1]]
    if not rows or rows[0] != list(header) or steps != [str(k) for k in range(1, step + 1)]:
        raise PinnfastError(f"{path} does not match {CHECKPOINT} (at step {step}): it belongs to another run; "
                            "start again with --overwrite")
    text = io.StringIO()
    csv.writer(text).writerows(rows[:step + 1])
    write_text(path, text.getvalue())


def write_text(path, text):
    """Replace the text file ``path`` atomically (see :func:`write_file`)."""
    write_file(path, lambda tmp: Path(tmp).write_text(text))


def write_npz(path, arrays):
    """Replace the .npz file ``path`` atomically with ``arrays`` (name → array)."""
    def write(tmp):
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    write_file(path, write)


def write_file(path, write):
    """Replace ``path`` atomically: ``write(tmp)`` fills a temporary file of a fresh random name in the same folder
    (created with O_EXCL, so a planted symlink is never followed), which then replaces ``path`` (a symlink at
    ``path`` is replaced, not followed). A crash mid-write leaves the previous file whole; a failed write (a full
    disk) removes the temporary file and says which file could not be written."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise PinnfastError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0][:200]
        raise PinnfastError(f"{path}: cannot write ({reason})") from None
    _after_write()


def _after_write():
    """The tests' fault injection: with ``PINNFAST_TEST_KILL_AFTER_WRITE=N`` the process dies, as if killed, right
    after its N-th atomic write (unset: nothing happens)."""
    _WRITES["count"] += 1
    if os.environ.get("PINNFAST_TEST_KILL_AFTER_WRITE") == str(_WRITES["count"]):
        os._exit(137)
