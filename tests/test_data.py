"""Observation files as users have them (BOM, comments, extra or renamed columns), one clear message per problem."""
import re
import warnings

import numpy as np
import pytest

import pinnfast as pf
from pinnfast.data import (COLUMNS, check_spread, load_observations, load_table, observations_sha256,
                           parse_column_map, validate_observations)
from pinnfast.errors import PinnfastError, PinnfastWarning

GOOD = pf.make_observations(0.05, 40, seed=1)


def _rows(columns, names=COLUMNS):
    table = np.column_stack([columns[c] for c in names])
    return [",".join(repr(float(v)) for v in row) for row in table]


def _csv(tmp_path, lines, name="obs.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding=encoding)
    return path


def _assert_loaded(loaded, expected=GOOD, names=COLUMNS):
    assert list(loaded) == list(names)
    for name in names:
        assert loaded[name].dtype == np.float64 and loaded[name].ndim == 1
        np.testing.assert_array_equal(loaded[name], expected[name])


def _no_warnings(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return function(*args, **kwargs)


def _error(function, *args, **kwargs):
    with pytest.raises(PinnfastError) as info:
        function(*args, **kwargs)
    return str(info.value)


def test_csv_with_bom_comments_blank_lines_and_spaces(tmp_path):
    rows = _rows(GOOD)
    lines = ["# made by hand", "  # indented comment", "", " x , y ,t, u,v ", "", *rows[:20], "# half way",
             "   ", *(" , ".join(row.split(",")) for row in rows[20:]), "# the end"]
    path = _csv(tmp_path, lines, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    _assert_loaded(_no_warnings(load_observations, path))


def test_csv_with_windows_line_ends(tmp_path):
    path = tmp_path / "obs.csv"
    path.write_bytes(("x,y,t,u,v\r\n" + "\r\n".join(_rows(GOOD)) + "\r\n").encode())
    _assert_loaded(_no_warnings(load_observations, path))


def test_extra_columns_are_ignored_with_one_warning(tmp_path):
    rows = [f"{row},{k},7" for k, row in enumerate(_rows(GOOD))]
    path = _csv(tmp_path, ["x,y,t,u,v,id,w", *rows])
    with pytest.warns(PinnfastWarning) as record:
        loaded = load_observations(path)
    assert [str(w.message) for w in record] == [f"{path}: ignoring extra column(s) id, w"]
    _assert_loaded(loaded)

    npz = tmp_path / "obs.npz"
    np.savez(npz, w=GOOD["u"], **GOOD, id=np.arange(40))
    with pytest.warns(PinnfastWarning) as record:
        loaded = load_observations(npz)
    assert [str(w.message) for w in record] == [f"{npz}: ignoring extra column(s) w, id"]
    _assert_loaded(loaded)


def test_column_mapping_for_csv_and_npz(tmp_path):
    mapping = parse_column_map(" x = X ,t=time,v=V ")
    assert mapping == {"x": "X", "t": "time", "v": "V"}
    path = _csv(tmp_path, ["time,X,y,u,V", *_rows(GOOD, ("t", "x", "y", "u", "v"))])
    _assert_loaded(_no_warnings(load_observations, path, mapping))
    npz = tmp_path / "obs.npz"
    np.savez(npz, X=GOOD["x"], y=GOOD["y"], time=GOOD["t"], u=GOOD["u"], V=GOOD["v"])
    _assert_loaded(_no_warnings(load_observations, npz, mapping))
    _assert_loaded(_no_warnings(load_table, npz, ("x", "y", "t"), mapping), names=("x", "y", "t"))


def test_prediction_points_ignore_u_and_v_quietly(tmp_path):
    path = _csv(tmp_path, ["x,y,t,u,v", *_rows(GOOD)])
    _assert_loaded(_no_warnings(load_table, path, ("x", "y", "t")), names=("x", "y", "t"))


def test_missing_columns_name_the_file_the_mapping_and_what_it_has(tmp_path):
    path = _csv(tmp_path, ["x,y,t,u,w", *_rows(GOOD)])
    assert _error(load_observations, path) == f"{path}: missing column(s) v; the file's columns are x, y, t, u, w"
    npz = tmp_path / "obs.npz"
    np.savez(npz, **GOOD)
    assert _error(load_observations, npz, {"x": "X", "t": "time"}) == (
        f"{npz}: missing column(s) x (as 'X'), t (as 'time'); the file's columns are x, y, t, u, v")
    upper = _csv(tmp_path, ["X,Y,t,u,v", *_rows(GOOD)], name="upper.csv")
    assert _error(load_observations, upper) == (
        f"{upper}: missing column(s) x, y; the file's columns are X, Y, t, u, v "
        "(map names with --columns, e.g. --columns x=X,y=Y)")


@pytest.mark.parametrize("text,message", [
    ("x", "--columns: 'x' is not of the form name=column (e.g. --columns x=X,t=time)"),
    ("x=,y=Y", "--columns: 'x=' has an empty column (e.g. --columns x=X,t=time)"),
    ("=X", "--columns: '=X' has an empty name (e.g. --columns x=X,t=time)"),
    ("x=X,w=W", "--columns: 'w=W': 'w' is not one of x, y, t, u, v"),
    ("x=X,y=Y,x=Z", "--columns: x is mapped twice ('x=X' and 'x=Z')"),
    ("x=A,y=A", "--columns: file column 'A' is mapped to both x and y"),
    (" , ", "--columns: ' , ' maps no column (e.g. --columns x=X,t=time)"),
])
def test_parse_column_map_errors(text, message):
    assert _error(parse_column_map, text) == message


def test_csv_messages_use_the_file_line_numbers(tmp_path):
    rows = _rows(GOOD)
    head = ["# comment", "", "x,y,t,u,v", "  # another", ""]  # the header is line 3, rows start at line 6
    nan = list(rows)
    for k in (3, 10, 11):
        nan[k] = nan[k].rsplit(",", 1)[0] + ",nan"
    path = _csv(tmp_path, head + nan, encoding="utf-8-sig")
    assert _error(load_observations, path) == (
        f"{path}: line 9, column v: value nan is not finite (3 such value(s) in the column)")

    inf = list(rows)
    inf[0] = "0.1,0.2,-inf,0.3,0.4"
    path = _csv(tmp_path, head + inf, name="inf.csv")
    assert _error(load_observations, path) == (
        f"{path}: line 6, column t: value -inf is not finite (1 such value(s) in the column)")

    oops = rows[:4] + ["# skip", "0.1, 0.2 ,oops,0.3,0.4"] + rows[4:]
    path = _csv(tmp_path, head + oops, name="oops.csv")
    assert _error(load_observations, path) == f"{path}: line 11, column t: 'oops' is not a number"

    empty = rows[:2] + ["0.1,0.2,0.3,,0.4"] + rows[2:]
    path = _csv(tmp_path, head + empty, name="empty.csv")
    assert _error(load_observations, path) == f"{path}: line 8, column u: empty field"

    ragged = rows[:5] + ["", "1,2,3"] + rows[5:]
    path = _csv(tmp_path, head + ragged, name="ragged.csv")
    assert _error(load_observations, path) == f"{path}: line 12 has 3 fields, the header has 5"

    renamed = _csv(tmp_path, ["x,y,t,u,V", *nan], name="renamed.csv")
    assert _error(load_observations, renamed, {"v": "V"}) == (
        f"{renamed}: line 5, column v ('V' in the file): value nan is not finite (3 such value(s) in the column)")


def test_npz_messages_use_0_based_indices(tmp_path):
    npz = tmp_path / "obs.npz"
    np.savez(npz, **dict(GOOD, v=np.where(np.arange(40) == 7, np.nan, GOOD["v"])))
    assert _error(load_observations, npz) == (
        f"{npz}: index 7 (0-based), column v: value nan is not finite (1 such value(s) in the column)")


def test_npz_keeps_its_checks(tmp_path):
    npz = tmp_path / "obs.npz"
    np.savez(npz, **dict(GOOD, u=GOOD["u"].reshape(20, 2)))
    assert _error(load_observations, npz) == f"{npz}: column u must be a 1-D array, got shape (20, 2)"
    np.savez(npz, **dict(GOOD, t=GOOD["t"].astype(str)))
    assert _error(load_observations, npz) == (
        f"{npz}: column t must hold real numbers, got dtype {GOOD['t'].astype(str).dtype}")
    npz.write_bytes(b"not a zip file")
    assert _error(load_observations, npz).startswith(f"{npz}: not a readable .npz file (")


def test_csv_header_problems(tmp_path):
    path = _csv(tmp_path, ["# x,y,t,u,v", *_rows(GOOD)])
    assert _error(load_observations, path) == (
        f"{path}: line 2 holds numbers where the header naming the columns (x, y, t, u, v) must come; "
        "the comment '# x,y,t,u,v' is not a header: remove its '#'")
    path = _csv(tmp_path, ["# nothing here", ""], name="empty.csv")
    assert _error(load_observations, path) == (
        f"{path}: no header line; the first line must name the columns, e.g. x,y,t,u,v")
    path = _csv(tmp_path, ["x;y;t;u;v", *(row.replace(",", ";") for row in _rows(GOOD))], name="semi.csv")
    assert _error(load_observations, path) == (
        f"{path}: missing column(s) x, y, t, u, v; the file's columns are x;y;t;u;v "
        "(columns must be separated by commas)")
    path = _csv(tmp_path, ["x,y,t,u,v,x", *(row + ",0" for row in _rows(GOOD))], name="twice.csv")
    assert _error(load_observations, path) == f"{path}: line 1: the header names column 'x' 2 times"
    path = tmp_path / "latin.csv"
    path.write_bytes(b"x,y,t,u,v\n" + "\n".join(_rows(GOOD)).encode() + b"\n# caf\xe9\n")
    assert _error(load_observations, path) == f"{path}: line 42 is not UTF-8 text (byte 0xe9)"


def test_validate_observations_checks_python_dicts():
    no_v = {c: a for c, a in GOOD.items() if c != "v"}
    assert _error(validate_observations, no_v, "observations") == "observations: missing column(s) v"
    short = dict(GOOD, u=GOOD["u"][:-1])
    assert _error(validate_observations, short, "observations") == (
        "observations: columns have different lengths: x=40, y=40, t=40, u=39, v=40")
    few = {c: a[:9] for c, a in GOOD.items()}
    assert _error(validate_observations, few, "observations") == "observations: 9 points; at least 10 are needed"
    text = dict(GOOD, x=["a"] * 40)
    assert _error(validate_observations, text, "observations") == (
        "observations: column x must hold real numbers, got dtype <U1")
    lists = {c: [float(v) for v in a] for c, a in dict(GOOD, id=GOOD["x"]).items()}
    checked = validate_observations(lists, "observations")
    _assert_loaded(checked)
    mine = dict(GOOD)
    checked = validate_observations(mine, "observations")
    checked["x"][0] = 99.0
    assert mine["x"][0] != 99.0  # copies


def test_check_spread_names_the_coordinate(tmp_path):
    path = _csv(tmp_path, ["x,y,t,u,v", *_rows(dict(GOOD, t=np.full(40, 0.5)))])
    observations = load_observations(path)
    assert _error(check_spread, observations, path) == (
        f"{path}: every point has t = 0.5; the observations must span a range in x, y and t "
        "(they define the collocation box)")
    check_spread(GOOD, "observations")


def test_hash_depends_on_content_not_format(tmp_path):
    csv_path, npz_path = tmp_path / "obs.csv", tmp_path / "obs.npz"
    pf.save_observations(csv_path, GOOD)
    np.savez(npz_path, **{c: GOOD[c] for c in reversed(COLUMNS)})
    digest = observations_sha256(load_observations(csv_path))
    assert re.fullmatch("[0-9a-f]{64}", digest)
    assert digest == observations_sha256(load_observations(npz_path)) == observations_sha256(GOOD)
    changed = dict(GOOD, u=GOOD["u"].copy())
    changed["u"][5] += 1e-12
    assert observations_sha256(changed) != digest
