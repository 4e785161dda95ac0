"""The named values of a declared problem: which names exist (inputs, outputs, their first and pure second
derivatives), where each value lives in the network's jets, and the functions written on them, called once on
stand-ins to find the names they use and the unknowns they take."""
import inspect

import torch

from .errors import PinnfastError
from .jets import JetSpec

STAND_INS = 2  # points in the stand-in call that finds the names a function uses


class Derivatives:
    """The named values at a point set: ``d.u_x`` or ``d["u_x"]`` (the names: see :mod:`pinnfast.pde`)."""

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
