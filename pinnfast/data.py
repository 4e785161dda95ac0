"""Observation and point files, and the checks every set of observations passes.

Accepted formats (chosen by suffix, case-insensitive):

* ``.npz``: one 1-D numeric array per column (``np.savez(path, x=..., y=..., t=..., u=..., v=...)``).
* ``.csv``: comma-separated, a header line naming the columns, then one row per point. UTF-8, with or without
  a byte-order mark; blank lines and lines starting with ``#`` (comments) are skipped anywhere, also before the
  header; whitespace around names and values is ignored.

Columns are found by name, in any order; ``columns={"x": "X", "t": "time"}`` (CLI: ``--columns x=X,t=time``)
maps our names to the file's. Extra columns are ignored with one :class:`PinnfastWarning`. Every problem is one
:class:`PinnfastError` naming the file and the column, row and value at fault; rows are the file's line numbers
in a CSV (counting comments and blank lines) and 0-based indices otherwise.
"""
import csv
import hashlib
import re
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import PinnfastError, PinnfastWarning
from .limits import check_span

COLUMNS = ("x", "y", "t", "u", "v")
COORDINATES = ("x", "y", "t")
MIN_POINTS = 10
MAX_VALUE = 1e18  # largest |value| a file may hold: float32 training squares values (float32 ends at 3.4e38)
DEFAULT_DATA, DEFAULT_DATA_NU = "burgers_nu0.02.npz", 0.02  # the shipped example and its true ν


def default_data_path():
    """The observations shipped with the package (ν = 0.02, 2000 points, clean): the CLI's default."""
    return Path(str(resources.files("pinnfast") / "data" / DEFAULT_DATA))


def load_observations(path, columns=None):
    """Read and validate an observation file: a dict of float64 arrays keyed by :data:`COLUMNS`."""
    return load_table(path, COLUMNS, columns)


def load_table(path, names, columns=None, min_points=MIN_POINTS):
    """Read the columns ``names`` of a ``.npz`` or ``.csv`` file, renamed by ``columns`` ({our name: file's name}),
    checked as :func:`validate_observations` does (with at least ``min_points`` rows): ``{name: float64 array}``."""
    path = Path(path)
    names = tuple(names)
    in_file = _file_names(names, columns)
    known = set(in_file.values()) | {str(dict(columns or {}).get(c, c)).strip() for c in COLUMNS}  # not "extra"
    if not path.is_file():
        raise PinnfastError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        table, lines = _read_npz(path, names, in_file, known), None
    elif suffix == ".csv":
        table, lines = _read_csv(path, names, in_file, known)
    else:
        raise PinnfastError(f"{path}: unknown data format {path.suffix!r}; use .npz or .csv")
    return _validate(table, path, names, lines, _labels(names, in_file), min_points)


def save_observations(path, columns):
    """Write observations as ``.npz`` or ``.csv`` (by suffix); the CSV round-trips float64 exactly."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        np.savez(path, **{name: np.asarray(columns[name], float) for name in COLUMNS})
    elif suffix == ".csv":
        table = np.column_stack([columns[name] for name in COLUMNS])
        np.savetxt(path, table, delimiter=",", header=",".join(COLUMNS), comments="", fmt="%.17g")
    else:
        raise PinnfastError(f"{path}: unknown data format {path.suffix!r}; use .npz or .csv")


def parse_column_map(text, names=COLUMNS):
    """Turn the ``--columns`` text ``"x=X,y=Y,t=time"`` into ``{"x": "X", "y": "Y", "t": "time"}``."""
    mapping, parts = {}, {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        name, sep, column = (s.strip() for s in part.partition("="))
        if not sep:
            raise PinnfastError(f"--columns: {part!r} is not of the form name=column (e.g. --columns x=X,t=time)")
        if not name or not column:
            side = "name" if not name else "column"
            raise PinnfastError(f"--columns: {part!r} has an empty {side} (e.g. --columns x=X,t=time)")
        if name not in names:
            raise PinnfastError(f"--columns: {part!r}: {name!r} is not one of {', '.join(names)}")
        if name in mapping:
            raise PinnfastError(f"--columns: {name} is mapped twice ({parts[name]!r} and {part!r})")
        mapping[name], parts[name] = column, part
    if not mapping:
        raise PinnfastError(f"--columns: {text!r} maps no column (e.g. --columns x=X,t=time)")
    _check_distinct(mapping, "--columns")
    return mapping


def validate_observations(columns, source, names=COLUMNS):
    """The checks any observations pass, file or Python dict (``source`` names them in messages): every name
    present, 1-D finite numbers of one length, at least :data:`MIN_POINTS`. Returns float64 copies of ``names``."""
    if not isinstance(columns, Mapping):
        raise PinnfastError(f"{source}: expected a mapping of column name to array, got {type(columns).__name__}")
    missing = [name for name in names if name not in columns]
    if missing:
        raise PinnfastError(f"{source}: missing column(s) {', '.join(missing)}")
    return _validate(columns, source, tuple(names))


def check_spread(columns, source, names=COORDINATES):
    """Refuse coordinates with one value only: the observations span the collocation box, which needs hi > lo."""
    for name in names:
        values = np.asarray(columns[name], dtype=np.float64)
        if values.size and values.min() == values.max():
            raise PinnfastError(f"{source}: every point has {name} = {float(values[0])!r}; the observations must "
                                f"span a range in {_and(names)} (they define the collocation box)")
        if values.size:
            check_span(values, name, source)


def observations_sha256(columns):
    """Hex SHA-256 of the observations' values (little-endian float64, :data:`COLUMNS` order): the same data hash
    equal whatever file held them, so that a resumed run recognises its data."""
    digest = hashlib.sha256()
    for name in COLUMNS:
        values = np.ascontiguousarray(np.asarray(columns[name], dtype="<f8").ravel())
        digest.update(f"{name}:{values.size};".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def _file_names(names, columns):
    """{our name: the file's name} for ``names``; a mapping's keys must be known names."""
    columns = dict(columns or {})
    unknown = [key for key in columns if key not in names and key not in COLUMNS]
    if unknown:
        raise PinnfastError(f"columns: unknown name(s) {', '.join(map(str, unknown))}; expected {', '.join(names)}")
    _check_distinct(columns, "columns")
    return {name: str(columns.get(name, name)).strip() for name in names}


def _check_distinct(mapping, flag):
    seen = {}
    for name, column in mapping.items():
        if column in seen:
            raise PinnfastError(f"{flag}: file column {column!r} is mapped to both {seen[column]} and {name}")
        seen[column] = name


def _labels(names, in_file):
    """How a column is named in messages: ours, with the file's when they differ."""
    return {name: name if in_file[name] == name else f"{name} ({in_file[name]!r} in the file)" for name in names}


def _and(names):
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _check_header(path, names, in_file, known, present):
    """Missing names are an error listing what the file has; extra ones a single warning."""
    missing = [name for name in names if in_file[name] not in present]
    if missing:
        listed = ", ".join(name if in_file[name] == name else f"{name} (as {in_file[name]!r})" for name in missing)
        has = ", ".join(present) if present else "none"
        hint = ""
        folded = {column.lower(): column for column in present}
        guesses = [f"{name}={folded[name.lower()]}" for name in missing
                   if in_file[name] == name and name.lower() in folded]
        if guesses:
            hint = f" (map names with --columns, e.g. --columns {','.join(guesses)})"
        elif len(present) == 1 and any(sep in present[0] for sep in ";\t"):
            hint = " (columns must be separated by commas)"
        raise PinnfastError(f"{path}: missing column(s) {listed}; the file's columns are {has}{hint}")
    extra = [column for column in present if column not in known]
    if extra:
        warnings.warn(f"{path}: ignoring extra column(s) {', '.join(extra)}", PinnfastWarning, stacklevel=2)


def _read_npz(path, names, in_file, known):
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise ValueError("a single array, not an archive of named arrays")
    except Exception as exc:  # a corrupt archive: numpy's reasons vary (zipfile, pickle, header errors)
        raise PinnfastError(f"{path}: not a readable .npz file ({exc})") from None
    with archive:
        _check_header(path, names, in_file, known, list(archive.files))
        table = {}
        for name in names:
            try:
                table[name] = archive[in_file[name]]
            except Exception as exc:
                raise PinnfastError(f"{path}: column {in_file[name]}: not readable ({exc})") from None
    return table


def _read_csv(path, names, in_file, known):
    """The named columns as lists of floats, and each row's line number in the file."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        bad_line = raw[:start].count(b"\n") + 1
        raise PinnfastError(f"{path}: line {bad_line} is not UTF-8 text (byte {raw[start]:#04x})") from None
    header, comments, values, lines = None, [], {name: [] for name in names}, []
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            if header is None and stripped:
                comments.append(stripped)
            continue
        row = [field.strip() for field in next(csv.reader([line]))]
        if header is None:
            header = row
            _check_csv_header(path, names, in_file, known, header, number, comments)
            index = {name: header.index(in_file[name]) for name in names}
            continue
        if len(row) != len(header):
            raise PinnfastError(f"{path}: line {number} has {len(row)} fields, the header has {len(header)}")
        for name in names:
            field = row[index[name]]
            try:
                values[name].append(float(field))
            except ValueError:
                problem = "empty field" if not field else f"{field!r} is not a number"
                raise PinnfastError(f"{path}: line {number}, column {_labels(names, in_file)[name]}: "
                                    f"{problem}") from None
        lines.append(number)
    if header is None:
        raise PinnfastError(f"{path}: no header line; the first line must name the columns, e.g. "
                            f"{','.join(in_file[name] for name in names)}")
    return {name: np.asarray(column, dtype=np.float64) for name, column in values.items()}, lines


def _check_csv_header(path, names, in_file, known, header, number, comments):
    def number_like(field):
        try:
            float(field)
            return True
        except ValueError:
            return False

    if header and all(number_like(field) for field in header):
        hint = ""
        if comments and all(in_file[name] in comments[-1] for name in names):
            hint = f"; the comment {comments[-1]!r} is not a header: remove its '#'"
        raise PinnfastError(f"{path}: line {number} holds numbers where the header naming the columns "
                            f"({', '.join(in_file[name] for name in names)}) must come{hint}")
    for column in set(in_file.values()):
        if header.count(column) > 1:
            raise PinnfastError(f"{path}: line {number}: the header names column {column!r} "
                                f"{header.count(column)} times")
    _check_header(path, names, in_file, known, [field if field else f"(unnamed column {k})"
                                         for k, field in enumerate(header, start=1)])


def _validate(columns, source, names, lines=None, labels=None, min_points=MIN_POINTS):
    """1-D finite float64 arrays of one length, at least ``min_points``; ``lines`` numbers a CSV's rows."""
    labels = labels or {name: name for name in names}
    table = {}
    for name in names:
        try:
            array = np.asarray(columns[name])
        except Exception as exc:
            raise PinnfastError(f"{source}: column {labels[name]}: not an array of numbers ({exc})") from None
        if array.ndim != 1:
            raise PinnfastError(f"{source}: column {labels[name]} must be a 1-D array, got shape {array.shape}")
        if array.dtype.kind not in "iuf":
            try:
                if array.dtype.kind != "O":
                    raise TypeError
                array = array.astype(np.float64)
            except (TypeError, ValueError):
                raise PinnfastError(f"{source}: column {labels[name]} must hold real numbers, "
                                    f"got dtype {array.dtype}") from None
        table[name] = np.array(array, dtype=np.float64)  # a copy: the caller's arrays stay theirs
    lengths = {name: len(array) for name, array in table.items()}
    if len(set(lengths.values())) > 1:
        raise PinnfastError(f"{source}: columns have different lengths: "
                            + ", ".join(f"{name}={n}" for name, n in lengths.items()))
    for name, array in table.items():
        overflows = f"is beyond ±{MAX_VALUE:g}, where float32 training overflows; rescale it"
        for outside, why in ((~np.isfinite(array), "is not finite"), (np.abs(array) > MAX_VALUE, overflows)):
            bad = np.flatnonzero(outside)
            if bad.size:
                where = f"line {lines[bad[0]]}" if lines is not None else f"index {bad[0]} (0-based)"
                raise PinnfastError(f"{source}: {where}, column {labels[name]}: value {array[bad[0]]:g} {why} "
                                    f"({bad.size} such value(s) in the column)")
    n = lengths[names[0]] if names else 0
    if n < min_points:
        raise PinnfastError(f"{source}: {n} points; at least {min_points} {'is' if min_points == 1 else 'are'} needed")
    return table
