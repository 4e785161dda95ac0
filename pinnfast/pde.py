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

import numpy as np

from .channels import Channels, Derivatives, Expression, at_points  # noqa: F401 (importable from here)
from .conditions import Condition, Faces, Term, Unknown  # noqa: F401 (importable from here)
from .errors import PinnfastError
from .factory import call_factory
from .names import GREEK, symbol  # noqa: F401 (importable from here)

TAKEN = ("step", "loss", "lr")  # metric columns; names starting with loss_ or lambda_ are the terms' columns
RESERVED_TERMS = ("r", "collocation")  # loss_r is the residual's column; "collocation" its batch entry


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
    pde, factory = call_factory(spec, data, folder, PDE)
    pde.factory = factory
    return pde


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
