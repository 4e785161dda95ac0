"""The parts of a declared problem besides its residual: the unknowns to learn, and the conditions (data,
boundary, initial) as point sets with targets or equations, checked into :class:`Term` loss terms."""
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .channels import Expression
from .errors import PinnfastError


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

