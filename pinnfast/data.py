"""Observation files: ``.npz`` with 1-D arrays x, y, t, u, v, or ``.csv`` with the header x,y,t,u,v.

Every problem is reported as one :class:`PinnfastError` naming the file, and the column, row and value at fault.
"""
import csv
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import PinnfastError

COLUMNS = ("x", "y", "t", "u", "v")
MIN_POINTS = 10
DEFAULT_DATA = "burgers_nu0.02.npz"


def default_data_path():
    """The observations shipped with the package (ν = 0.02, 2000 points, clean): the CLI's default."""
    return Path(str(resources.files("pinnfast") / "data" / DEFAULT_DATA))


def load_observations(path):
    """Read and validate an observation file; returns a dict of float64 arrays keyed by :data:`COLUMNS`."""
    path = Path(path)
    if not path.is_file():
        raise PinnfastError(f"{path}: no such file")
    if path.suffix == ".npz":
        columns = _read_npz(path)
    elif path.suffix == ".csv":
        columns = _read_csv(path)
    else:
        raise PinnfastError(f"{path}: unknown data format {path.suffix!r}; use .npz or .csv")
    return _validate(path, columns)


def save_observations(path, columns):
    """Write observations as ``.npz`` or ``.csv`` (by suffix)."""
    path = Path(path)
    if path.suffix == ".npz":
        np.savez(path, **{name: np.asarray(columns[name], float) for name in COLUMNS})
    elif path.suffix == ".csv":
        table = np.column_stack([columns[name] for name in COLUMNS])
        np.savetxt(path, table, delimiter=",", header=",".join(COLUMNS), comments="", fmt="%.17g")
    else:
        raise PinnfastError(f"{path}: unknown data format {path.suffix!r}; use .npz or .csv")


def _check_names(path, names):
    missing = [c for c in COLUMNS if c not in names]
    extra = [c for c in names if c not in COLUMNS]
    if missing or extra:
        parts = ([f"missing column(s) {', '.join(missing)}"] if missing else []) + \
                ([f"unexpected column(s) {', '.join(extra)}"] if extra else [])
        raise PinnfastError(f"{path}: {'; '.join(parts)} (expected exactly {', '.join(COLUMNS)})")


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            _check_names(path, list(archive.files))
            columns = {name: archive[name] for name in COLUMNS}
    except PinnfastError:
        raise
    except Exception as exc:  # a corrupt archive: numpy's reasons vary (zipfile, pickle, header errors)
        raise PinnfastError(f"{path}: not a readable .npz file ({exc})") from None
    for name, array in columns.items():
        if array.ndim != 1:
            raise PinnfastError(f"{path}: column {name} must be a 1-D array, got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.number):
            raise PinnfastError(f"{path}: column {name} must be numeric, got dtype {array.dtype}")
    return {name: array.astype(np.float64) for name, array in columns.items()}


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        header = [name.strip() for name in next(rows, [])]
        _check_names(path, header)
        index = [header.index(name) for name in COLUMNS]
        values = {name: [] for name in COLUMNS}
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise PinnfastError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
            for name, k in zip(COLUMNS, index):
                try:
                    values[name].append(float(row[k]))
                except ValueError:
                    raise PinnfastError(f"{path}: line {line}, column {name}: {row[k]!r} is not a number") from None
    return {name: np.asarray(column, dtype=np.float64) for name, column in values.items()}


def _validate(path, columns):
    lengths = {name: len(array) for name, array in columns.items()}
    if len(set(lengths.values())) > 1:
        raise PinnfastError(f"{path}: columns have different lengths: "
                            + ", ".join(f"{name}={n}" for name, n in lengths.items()))
    for name, array in columns.items():
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise PinnfastError(f"{path}: column {name}, point {bad[0]} (0-based): value {array[bad[0]]} is not "
                                f"finite ({bad.size} such value(s) in the column)")
    n = lengths["x"]
    if n < MIN_POINTS:
        raise PinnfastError(f"{path}: {n} points; at least {MIN_POINTS} are needed")
    return columns
