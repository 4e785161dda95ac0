"""Declaring a PINN problem in a few lines: named inputs and outputs, a residual written on named derivatives,
unknown physical parameters, and conditions (data, boundary, initial) as point sets with targets::

    pde = pf.PDE(inputs=("x", "t"), outputs=("u",),
                 residual=lambda d, lam1, lam2: d.u_t + lam1 * d.u * d.u_x - lam2 * d.u_xx,
                 unknowns={"lam1": 0.0, "lam2": pf.Unknown(0.01, positive=True)},
                 conditions={"d": pf.Condition(points, values=u)})

A name is an input (``x``), an output (``u``), a first derivative (``u_x``) or a pure second derivative (``u_xx``):
the output, an underscore, the input once or twice; ``d.u_x`` and ``d["u_x"]`` are the same. Each function is
called once on stand-ins when the problem is declared, which finds the names it uses (and refuses those no jet can
give), so every point set carries exactly the jet channels its expressions need. Unknowns reach a function as the
keyword arguments its signature names. A :class:`PDE` holds no network: the trainer builds one from its config
(:class:`~pinnfast.problems.PDEProblem`).
"""
import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import PinnfastError
from .jets import JetSpec
from .names import GREEK, symbol  # noqa: F401 (importable from here)

TAKEN = ("step", "loss", "lr")  # metric columns; names starting with loss_ or lambda_ are the terms' columns
RESERVED_TERMS = ("r", "collocation")  # loss_r is the residual's column; "collocation" its batch entry
STAND_INS = 2  # points in the stand-in call that finds the names a function uses


@dataclass(frozen=True)
class Unknown:
    """A physical parameter to learn from ``init``. A ``positive`` one is learned as its logarithm, so that it stays
    positive; ``lr`` is its own Adam learning rate (default: the run's ``nu_lr``); ``true``, for synthetic data,
    adds the error of the learned value to the result."""

    init: float
    positive: bool = False
    lr: float = None
    true: float = None

    def checked(self, name):
        def finite(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not finite(self.init) or (self.positive and self.init <= 0):
            kind = "a positive number (it is positive=True)" if self.positive else "a finite number"
            raise PinnfastError(f"unknown {name!r}: init must be {kind}, got {self.init!r}")
        if self.lr is not None and not (finite(self.lr) and self.lr > 0):
            raise PinnfastError(f"unknown {name!r}: lr must be a positive number, got {self.lr!r}")
        if self.true is not None and not (finite(self.true) and self.true != 0):
            raise PinnfastError(f"unknown {name!r}: true must be a finite non-zero number (errors are relative), "
                                f"got {self.true!r}")
        return self


class Faces:
    """Points drawn fresh each step on faces of the box: ``Faces(t="lo")`` the face t = its lower bound (an initial
    condition), ``Faces(x=("lo", "hi"))`` both ends in x, a number a coordinate fixed at that value; ``n`` points
    per face (default: the run's collocation count)."""

    def __init__(self, n=None, **faces):
        self.n = n
        self.faces = [(name, value) for name, values in faces.items()
                      for value in (values if isinstance(values, (tuple, list)) else (values,))]


class Condition:
    """A loss term with its own weight λ, at ``points``: an ``(N, d)`` array or a dict of 1-D arrays by input name
    (``batch_size`` of them drawn per step, default the run's ``batch_size``), or :class:`Faces`.

    Its loss is ``mean |outputs − values|²`` over the points, with ``values`` an ``(N, k)`` array (``(N,)`` for
    one output) or a function of the inputs (``lambda d: torch.sin(d.x)``), or a dict of either by output name to
    target some outputs only; or ``Σ_k mean(e_k²)`` of ``equation(d, ...)``, which returns a tensor or a tuple of
    them (e.g. ``lambda d: d.u_t`` for a fluid at rest)."""

    def __init__(self, points, values=None, equation=None, batch_size=None):
        self.points, self.values, self.equation, self.batch_size = points, values, equation, batch_size


class Derivatives:
    """The named values at a point set: ``d.u_x`` or ``d["u_x"]`` (see the module docstring for the names)."""

    def __init__(self, lookup):
        self._lookup = lookup

    def __getitem__(self, name):
        return self._lookup(name)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._lookup(name)


class Channels:
    """Every name an expression may use, and where its value lives: ``("input", None, i)``, ``("value", o, None)``,
    ``("first", o, i)`` or ``("second", o, i)`` for output ``o`` and input ``i``."""

    def __init__(self, inputs, outputs):
        self.inputs, self.outputs = inputs, outputs
        entries = [(name, ("input", None, i)) for i, name in enumerate(inputs)]
        for o, out in enumerate(outputs):
            entries.append((out, ("value", o, None)))
            entries += [(f"{out}_{name}", ("first", o, i)) for i, name in enumerate(inputs)]
            entries += [(f"{out}_{name}{name}", ("second", o, i)) for i, name in enumerate(inputs)]
        self.table = {}
        for name, where in entries:
            if name in self.table:
                raise PinnfastError(f"the name {name!r} would mean two things with inputs {inputs} and outputs "
                                    f"{outputs}; rename one of them")
            self.table[name] = where

    def resolve(self, name, user):
        if name in self.table:
            return self.table[name]
        raise PinnfastError(f"{user} asks for {name!r}, but {self._why(name)}; it can use "
                            f"{', '.join(self.table)}")

    def _why(self, name):
        for out in sorted(self.outputs, key=len, reverse=True):
            if name.startswith(out + "_"):
                suffix = name[len(out) + 1:]
                parts = self._split(suffix)
                if parts is None:
                    return f"{suffix!r} is not an input (the inputs are {', '.join(self.inputs)})"
                if len(parts) == 2:
                    return (f"mixed second derivatives such as {name} are not available (the jets carry first "
                            "and pure second derivatives)")
                return f"derivatives of order {len(parts)} are not available (the jets carry orders 1 and 2)"
        return (f"it is neither an input ({', '.join(self.inputs)}) nor an output ({', '.join(self.outputs)}) nor a "
                "derivative of an output")

    def _split(self, text):
        """``text`` as a sequence of input names, or None."""
        if not text:
            return []
        for name in self.inputs:
            if text.startswith(name):
                rest = self._split(text[len(name):])
                if rest is not None:
                    return [name] + rest
        return None


def at_points(channels, x, jets, spec, user="an expression"):
    """Named access to ``jets`` (laid out as ``spec``: value, first..., second...) of the network at points
    ``x`` (``(..., N, d)``; None when only outputs and derivatives are asked for)."""
    position = {("value", None): 0}
    position.update({("first", i): 1 + k for k, i in enumerate(spec.first)})
    position.update({("second", i): 1 + len(spec.first) + k for k, i in enumerate(spec.second)})
    # one copy with the (channel, output) pairs first, then one unbind: each name is a view of it whose gradient is
    # stacked back once with the others' (indexing jets[c][..., o] would allocate and zero a whole jet per name in
    # the backward pass; an unbind per channel and per output costs one such stack each)
    columns = [] if jets is None else jets.movedim(-1, 1).flatten(0, 1).unbind(0)

    def lookup(name):
        kind, output, direction = channels.resolve(name, user)
        if kind == "input":
            return x[..., direction]
        channel = position.get((kind, None if kind == "value" else direction))
        if channel is None:
            raise PinnfastError(f"{user} asks for {name!r}, which its first call did not ask for, so it was not "
                                "computed; an expression must ask for the same names at every call")
        return columns[channel * jets.shape[-1] + output]

    return Derivatives(lookup)


class Expression:
    """A function of named values (and of unknowns, by name): the unknowns it takes, and the jet channels it
    needs, found by calling it once on stand-ins (``inputs_only``: it may use the coordinates only)."""

    def __init__(self, function, user, channels, unknowns, inputs_only=False):
        if not callable(function):
            raise PinnfastError(f"{user} must be a function of the named values d, e.g. lambda d: d.u_t - d.u_xx; "
                                f"got {type(function).__name__}")
        self.function, self.user = function, user
        self.takes = () if inputs_only else _takes(function, user, unknowns)
        used = []

        def record(name):
            where = channels.resolve(name, user)
            if inputs_only and where[0] != "input":
                raise PinnfastError(f"{user} is a function of the inputs ({', '.join(channels.inputs)}) only; it asks "
                                    f"for {name!r}")
            used.append(where)
            return torch.full((STAND_INS,), 0.5, dtype=torch.float64)

        stand_ins = {name: torch.tensor(float(unknowns[name].init), dtype=torch.float64) for name in self.takes}
        self(Derivatives(record), stand_ins, check=True)
        self.spec = JetSpec(tuple(sorted({i for kind, _, i in used if kind == "first"})),
                            tuple(sorted({i for kind, _, i in used if kind == "second"})))

    def __call__(self, d, unknowns, check=False):
        """The function's parts (one tensor per equation) at the named values ``d``."""
        result = self.function(d, **{name: unknowns[name] for name in self.takes})
        parts = tuple(result) if isinstance(result, (tuple, list)) else (result,)
        if check:
            for part in parts:
                if not torch.is_tensor(part) or part.shape != (STAND_INS,):
                    got = f"shape {tuple(part.shape)}" if torch.is_tensor(part) else type(part).__name__
                    raise PinnfastError(f"{_capitalised(self.user)} must return one value per point (a tensor shaped "
                                        f"like d.x, or a tuple of them), got {got}")
        return parts


def _capitalised(text):
    return text[:1].upper() + text[1:]


def _takes(function, user, unknowns):
    """The unknowns ``function`` takes by name after the named values (all of them for ``**kwargs``)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # no signature to read (a builtin): it takes the named values only
        return ()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.VAR_POSITIONAL)
    if not parameters or parameters[0].kind not in positional:
        raise PinnfastError(f"{user} must take the named values as its first argument, e.g. lambda d, nu: ...")
    takes = []
    for parameter in parameters[1:]:
        if parameter.kind == inspect.Parameter.VAR_KEYWORD:
            return tuple(unknowns)
        if parameter.name in unknowns:
            takes.append(parameter.name)
        elif parameter.default is inspect.Parameter.empty and parameter.kind != inspect.Parameter.VAR_POSITIONAL:
            raise PinnfastError(f"{user} takes {parameter.name!r}, which is not an unknown of the problem (unknowns: "
                                f"{', '.join(unknowns) or 'none'})")
    return tuple(takes)


class Term:
    """A validated :class:`Condition`: fixed ``points`` ``(N, d)`` float64 (or ``faces`` as ``(input index,
    "lo" | "hi" | number)``), and ``equation``, or the target ``columns`` with fixed ``values`` ``(N, k)`` or one
    ``functions`` expression per column."""

    def __init__(self, name, condition, pde):
        self.name, self.batch_size, self.n = name, condition.batch_size, None
        user = f"condition {name!r}"
        if not isinstance(condition, Condition):
            raise PinnfastError(f"{user} must be a pinnfast.Condition, got {type(condition).__name__}")
        if (condition.values is None) == (condition.equation is None):
            raise PinnfastError(f"{user} needs values= (targets of the outputs) or equation= (a residual), one of "
                                "them")
        self.points, self.faces = None, None
        if isinstance(condition.points, Faces):
            self.faces, self.n = self._faces(condition.points, pde, user), condition.points.n
            if self.n is not None and not _count(self.n):
                raise PinnfastError(f"{user}: Faces n must be an integer >= 1, got {self.n!r}")
        else:
            self.points = _points(condition.points, pde.inputs, user)
        if self.batch_size is not None and not _count(self.batch_size):
            raise PinnfastError(f"{user}: batch_size must be an integer >= 1, got {self.batch_size!r}")
        self.equation, self.values, self.functions = None, None, None
        if condition.equation is not None:
            self.equation = Expression(condition.equation, f"the equation of {user}", pde.channels, pde.unknowns)
            return
        targets = condition.values if isinstance(condition.values, Mapping) else _all_outputs(condition.values, pde,
                                                                                              user)
        unknown = [name for name in targets if name not in pde.outputs]
        if unknown or not targets:
            raise PinnfastError(f"{user}: values are keyed by output name ({', '.join(pde.outputs)}), got "
                                f"{', '.join(map(repr, unknown)) or 'none'}")
        self.columns = [pde.outputs.index(name) for name in targets]
        if all(callable(target) for target in targets.values()):
            self.functions = [Expression(target, f"the values of {user} for {name}", pde.channels, {}, True)
                              for name, target in targets.items()]
        elif self.points is None:
            raise PinnfastError(f"{user}: points drawn each step (Faces) need values given as functions of the "
                                "inputs, not arrays")
        else:
            self.values = np.column_stack([_column(target, len(self.points), f"{user}, values of {name}")
                                           for name, target in targets.items()])

    @staticmethod
    def _faces(faces, pde, user):
        if not faces.faces:
            raise PinnfastError(f"{user}: Faces needs at least one face, e.g. Faces(t='lo')")
        resolved = []
        for name, value in faces.faces:
            if name not in pde.inputs:
                raise PinnfastError(f"{user}: Faces({name}=...) names no input (the inputs are "
                                    f"{', '.join(pde.inputs)})")
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if value not in ("lo", "hi") and not number:
                raise PinnfastError(f"{user}: Faces({name}={value!r}): a face is 'lo', 'hi' or a number")
            resolved.append((pde.inputs.index(name), value))
        return resolved


class PDE:
    """A PINN problem: ``inputs`` and ``outputs`` by name, the ``residual`` (a function of the named values and of
    the unknowns it names, returning one tensor per point or a tuple of them, one per equation: ``L_r`` is the sum
    of their mean squares), the ``unknowns`` (name → :class:`Unknown`, or a number as shorthand for
    ``Unknown(number)``), the ``conditions`` (name → :class:`Condition`; each is a term with its own λ), and the
    ``box`` ``(lo, hi)`` where collocation points are drawn and the network normalises its inputs (default: the
    bounding box of the conditions' fixed points). ``name`` labels the run."""

    def __init__(self, inputs, outputs, residual, unknowns=None, conditions=None, box=None, name="pde"):
        self.inputs, self.outputs = _names(inputs, "inputs"), _names(outputs, "outputs")
        both = set(self.inputs) & set(self.outputs)
        if both:
            raise PinnfastError(f"{', '.join(sorted(both))} cannot be both an input and an output")
        if not isinstance(name, str) or not name:
            raise PinnfastError(f"the problem's name must be a non-empty text, got {name!r}")
        self.name, self.factory = name, None
        self.channels = Channels(self.inputs, self.outputs)
        self.unknowns = {}
        for key, unknown in dict(unknowns or {}).items():
            _metric_name(key, "unknown")
            unknown = unknown if isinstance(unknown, Unknown) else Unknown(unknown)
            self.unknowns[key] = unknown.checked(key)
        self.residual = Expression(residual, "the residual", self.channels, self.unknowns)
        self.conditions = {}
        for key, condition in dict(conditions or {}).items():
            _metric_name(key, "condition")
            if key in RESERVED_TERMS:
                raise PinnfastError(f"condition {key!r}: the name is taken ({', '.join(RESERVED_TERMS)}); choose "
                                    "another")
            self.conditions[key] = Term(key, condition, self)
        used = set(self.residual.takes).union(*(term.equation.takes for term in self.conditions.values()
                                                if term.equation is not None))
        idle = [key for key in self.unknowns if key not in used]
        if idle:
            raise PinnfastError(f"unknown(s) {', '.join(idle)} appear in no residual or equation, so nothing could "
                                "learn them; add them to the residual's arguments")
        self.box = _box(box, self)

    @property
    def in_dim(self):
        return len(self.inputs)

    @property
    def out_dim(self):
        return len(self.outputs)

    def data_sha256(self):
        """Hex SHA-256 of the conditions' fixed points and target values (float64): a resumed run recognises its
        data by it."""
        digest = hashlib.sha256()
        for name, term in self.conditions.items():
            for label, array in (("points", term.points), ("values", term.values)):
                if array is not None:
                    digest.update(f"{name}.{label}:{array.shape};".encode())
                    digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        return digest.hexdigest()


def from_factory(spec, data=None, folder=None):
    """The :class:`PDE` that ``spec`` returns: ``module:function`` (imported from ``folder``, default the current
    one) or ``path/to/file.py:function``, called as ``function(data)`` when a data file is given. The PDE
    remembers the factory (``pde.factory``: the spec, and the SHA-256 of its module's source, so that a resumed run
    can tell that it is given the same code again; a run folder never names code to import)."""
    text = str(spec)
    where, sep, attribute = text.rpartition(":")
    if not sep or not where or not attribute.isidentifier():
        raise PinnfastError(f"--problem {text}: expected MODULE:FUNCTION or FILE.py:FUNCTION, e.g. "
                            "examples/heat_inverse.py:make_problem")
    folder = Path(folder or Path.cwd()).resolve()
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = (folder / where).resolve()
        module = _module_from_file(path, text)
        factory, label = f"{path}:{attribute}", f"{path.name}:{attribute}"
    else:
        module = _module_by_name(where, folder, text)
        factory, label = text, text
    function = getattr(module, attribute, None)
    if function is None:
        defined = sorted(name for name, value in vars(module).items() if inspect.isfunction(value) and
                         value.__module__ == module.__name__ and not name.startswith("_"))
        raise PinnfastError(f"--problem {text}: {label.rpartition(':')[0]} has no function {attribute!r} (its "
                            f"functions: {', '.join(defined) or 'none'})")
    if not callable(function):
        raise PinnfastError(f"--problem {text}: {attribute} is a {type(function).__name__}, not a function")
    if data is not None:
        try:
            inspect.signature(function).bind(str(data))
        except TypeError:
            raise PinnfastError(f"--problem {text}: {attribute}() takes no data argument, so --data {data} cannot "
                                f"reach it; define {attribute}(data=None)") from None
        except ValueError:  # no signature to check: let the call say
            pass
    pde = function(str(data)) if data is not None else function()
    if not isinstance(pde, PDE):
        raise PinnfastError(f"--problem {text}: {label}() returned {type(pde).__name__}, not a pinnfast.PDE")
    source = getattr(module, "__file__", None)
    pde.factory = {"spec": factory, "folder": str(folder),
                   "sha256": hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else None}
    return pde


def _module_from_file(path, text):
    if not path.is_file():
        raise PinnfastError(f"--problem {text}: no file {path}")
    name = f"pinnfast_problem_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as import does: dataclasses and pickle look modules up there
    sys.path.insert(0, str(path.parent))  # its own neighbours import as they would when run as a script
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def _module_by_name(name, folder, text):
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise PinnfastError(f"--problem {text}: no module {name!r} in {folder} or on the Python path; run from "
                                f"its folder or give its file, e.g. path/to/{name.replace('.', '/')}.py:"
                                f"{text.rpartition(':')[2]}") from None
        raise
    finally:
        sys.path.remove(str(folder))


def _names(names, what):
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise PinnfastError(f"{what}: at least one name is needed")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise PinnfastError(f"{what}: {name!r} is not a name (letters, digits, _; not starting with _ or a digit)")
    if len(set(names)) != len(names):
        raise PinnfastError(f"{what}: {names} repeats a name")
    return names


def _metric_name(name, what):
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise PinnfastError(f"{what} {name!r}: names must be identifiers (letters, digits, _), not starting with _")
    if name in TAKEN or name.startswith(("loss", "lambda_")):
        raise PinnfastError(f"{what} {name!r}: the name is taken by a metric column (step, loss, lr, loss_*, "
                            "lambda_*); choose another, e.g. lam1 for λ1")


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _array(values, user):
    try:
        array = np.asarray(values.detach().cpu() if torch.is_tensor(values) else values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PinnfastError(f"{user}: not an array of numbers ({exc})") from None
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        raise PinnfastError(f"{user}: value {array[tuple(bad[0])]} at index {tuple(int(i) for i in bad[0])} is not "
                            f"finite ({len(bad)} such value(s))")
    return array


def _points(points, inputs, user):
    if isinstance(points, Mapping):
        missing = [name for name in inputs if name not in points]
        if missing:
            raise PinnfastError(f"{user}: points lack the input(s) {', '.join(missing)}")
        columns = [_array(points[name], f"{user}, points {name}") for name in inputs]
        if any(column.ndim != 1 for column in columns) or len({len(column) for column in columns}) > 1:
            raise PinnfastError(f"{user}: the points' columns must be 1-D arrays of one length, got shapes "
                                f"{', '.join(f'{n}={c.shape}' for n, c in zip(inputs, columns))}")
        array = np.column_stack(columns)
    else:
        array = _array(points, f"{user}, points")
        if array.ndim == 1 and len(inputs) == 1:
            array = array[:, None]
    if array.ndim != 2 or array.shape[1] != len(inputs) or len(array) == 0:
        raise PinnfastError(f"{user}: points must have shape (N, {len(inputs)}) for ({', '.join(inputs)}), N >= 1, "
                            f"got {array.shape}")
    return array


def _all_outputs(values, pde, user):
    """Values given without output names: a function of the inputs (one output), or an array over all outputs."""
    if callable(values):
        if pde.out_dim > 1:
            raise PinnfastError(f"{user}: with several outputs ({', '.join(pde.outputs)}), give values as a dict "
                                "by output name")
        return {pde.outputs[0]: values}
    array = _array(values, f"{user}, values")
    array = array[:, None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] != pde.out_dim:
        raise PinnfastError(f"{user}: values must have shape (N, {pde.out_dim}) for ({', '.join(pde.outputs)}), or "
                            f"be a dict by output name, got {array.shape}")
    return {name: array[:, k] for k, name in enumerate(pde.outputs)}


def _column(values, n, user):
    column = _array(values, user)
    if column.shape != (n,):
        raise PinnfastError(f"{user}: expected {n} values (one per point), got shape {column.shape}")
    return column


def _box(box, pde):
    """``(lo, hi)`` float64 arrays: the given box, or the bounding box of the conditions' fixed points."""
    if box is not None:
        try:
            lo, hi = (np.asarray(bound, dtype=np.float64).reshape(-1) for bound in box)
        except (TypeError, ValueError):
            raise PinnfastError(f"box must be (lo, hi) with {pde.in_dim} numbers each, got {box!r}") from None
        if lo.shape != (pde.in_dim,) or hi.shape != (pde.in_dim,) or not np.all(np.isfinite(lo) & np.isfinite(hi)) \
                or not np.all(hi > lo):
            raise PinnfastError(f"box must be (lo, hi) with {pde.in_dim} finite numbers each and hi > lo, got "
                                f"lo={lo.tolist()}, hi={hi.tolist()}")
        return lo, hi
    fixed = [term.points for term in pde.conditions.values() if term.points is not None]
    if not fixed:
        raise PinnfastError("give box=(lo, hi): the problem has no fixed points to take its box from")
    points = np.concatenate(fixed)
    lo, hi = points.min(0), points.max(0)
    for k, name in enumerate(pde.inputs):
        if not hi[k] > lo[k]:
            raise PinnfastError(f"every fixed point has {name} = {float(lo[k])!r}; the points must span a range in "
                                "each input (they define the box), or give box=(lo, hi)")
    return lo, hi
