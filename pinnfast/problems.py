"""The problem interface the trainer drives, the module that trains any declared :class:`~pinnfast.pde.PDE`, and the
forward problems of the paper, Helmholtz and Klein–Gordon, declared with it.

A problem is an ``nn.Module`` holding the ``network`` and any learnable physical parameters (``physical``, e.g.
log ν). Each step it draws a fresh batch from the trainer's generator (``sample``) and returns the residual loss
and one loss per named term (``losses`` → ``(L_r, [L_i, ...])``); every term gets its own weight λ_i.
"""
import math

import torch
from torch import nn

from .errors import PinnfastError
from .jets import VALUE_ONLY, taylor_jets
from .pde import PDE, Condition, Faces, at_points


def uniform(generator, n, lo, hi):
    """``n`` uniform points in the box ``[lo, hi]`` (tensors on the generator's device)."""
    return lo + (hi - lo) * torch.rand(n, lo.numel(), generator=generator, device=lo.device)


class FunctionModule(nn.Module):
    """A closed-form function ``(N, in_dim) → (N, out_dim)`` as a module, e.g. an exact solution, so that it can go
    through the ``autograd`` jets like a network."""

    def __init__(self, function, in_dim, out_dim):
        super().__init__()
        self.function, self.in_dim, self.out_dim = function, in_dim, out_dim

    def forward(self, x):
        return self.function(x)


class Problem(nn.Module):
    """Base: a network, a box, named loss terms; subclasses define ``sample`` and ``losses``, evaluating the
    network through :meth:`jets` and :meth:`outputs`, so that the trainer's ``backend`` reaches every term."""

    term_names = ()
    backend = "torch"  # jets backend of the losses: "torch", or "triton" (fused kernels, CUDA) set by the trainer

    def __init__(self, network, lo, hi):
        super().__init__()
        self.network = network
        self.register_buffer("lo", torch.as_tensor(lo, dtype=torch.float32), persistent=False)
        self.register_buffer("hi", torch.as_tensor(hi, dtype=torch.float32), persistent=False)

    def jets(self, x, first, second):
        """The network's jets at ``x`` on the trainer's backend."""
        return taylor_jets(self.network, x, first, second, backend=self.backend)

    def outputs(self, x):
        """The network's values at ``x`` on the trainer's backend (the plain forward on torch)."""
        return self.network(x) if self.backend == "torch" else self.jets(x, (), ())[0]

    def physical(self):
        """Learnable physical parameters (own learning rate, never part of the annealing statistic)."""
        return []

    def physical_groups(self, lr):
        """Optimiser groups for the physical parameters: one per parameter, at learning rate ``lr``."""
        return [{"params": [parameter], "lr": lr} for parameter in self.physical()]

    def logged(self):
        """Extra per-step values for the metrics, as ``{name: 0-d tensor}``."""
        return {}

    def data_fit(self):
        """How well the network fits the problem's data, for the run's result (e.g. RMSE per output)."""
        return {}


class PDEProblem(Problem):
    """A declared :class:`~pinnfast.pde.PDE` on a network: its unknowns as parameters (a positive one as
    ``log_<name>``), its conditions' fixed points and values as buffers, and the losses of the trainer's contract.

    Each step draws the conditions' :class:`~pinnfast.pde.Faces` points, then ``n_collocation`` uniform points
    in the box, then ``batch_size`` of each condition's fixed points (all of them when there are fewer). An
    ensemble network (``members=K``) gets one value of each unknown per member, its own collocation and face
    points and its own batches of every fixed point set (all of it, or with ``bootstrap`` = a seed its own
    bootstrap resample, drawn once), so that the members' spread measures how far their training leaves the
    unknowns apart; losses are then per member, ``(K,)``.
    """

    def __init__(self, pde, network, n_collocation=512, batch_size=512, bootstrap=None):
        super().__init__(network, *pde.box)
        if (network.in_dim, network.out_dim) != (pde.in_dim, pde.out_dim):
            raise PinnfastError(f"the network maps {network.in_dim} → {network.out_dim} values, the problem "
                                f"{pde.in_dim} inputs to {pde.out_dim} outputs")
        self.pde, self.n_collocation, self.batch_size = pde, n_collocation, batch_size
        self.term_names = tuple(pde.conditions)
        self.members = getattr(network, "members", None)  # an exact solution as a FunctionModule has none
        shape = () if self.members is None else (self.members,)
        for name, unknown in pde.unknowns.items():
            attribute = self._attribute(name)
            if hasattr(self, attribute):
                raise PinnfastError(f"unknown {name!r}: the name {attribute} is taken inside the problem; choose "
                                    "another")
            start = math.log(unknown.init) if unknown.positive else float(unknown.init)
            self.register_parameter(attribute, nn.Parameter(torch.full(shape, start)))
        resample = None if bootstrap is None else torch.Generator().manual_seed(bootstrap)
        for name, term in pde.conditions.items():
            if term.points is None:
                continue
            points = torch.tensor(term.points, dtype=torch.float32)
            values = None if term.values is None else torch.tensor(term.values, dtype=torch.float32)
            if self.members is not None and resample is not None:  # each member its own resample: (K, N, ·)
                index = torch.randint(len(points), (self.members, len(points)), generator=resample)
                points, values = points[index], None if values is None else values[index]
            elif self.members is not None:  # every member all of them: (K, N, ·) views
                points = points.expand(self.members, *points.shape)
                values = None if values is None else values.expand(self.members, *values.shape)
            self.register_buffer(f"points_{name}", points, persistent=False)
            self.register_buffer(f"values_{name}", values, persistent=False)

    @property
    def in_dim(self):
        return self.pde.in_dim

    @property
    def out_dim(self):
        return self.pde.out_dim

    def _attribute(self, name):
        return f"log_{name}" if self.pde.unknowns[name].positive else name

    def value(self, name):
        """The unknown ``name`` (positive ones from their log): 0-d, or ``(K,)`` for an ensemble."""
        parameter = getattr(self, self._attribute(name))
        return parameter.exp() if self.pde.unknowns[name].positive else parameter

    def unknown_values(self):
        """Every unknown as its expressions see it: 0-d, or ``(K, 1)`` for an ensemble (against ``(K, N)``)."""
        return {name: self.value(name) if self.members is None else self.value(name)[:, None]
                for name in self.pde.unknowns}

    def physical(self):
        return [getattr(self, self._attribute(name)) for name in self.pde.unknowns]

    def physical_groups(self, lr):
        """One optimiser group per unknown, at its own learning rate or ``lr``."""
        return [{"params": [parameter], "lr": lr if unknown.lr is None else unknown.lr}
                for parameter, unknown in zip(self.physical(), self.pde.unknowns.values())]

    def logged(self):
        logged = {}
        for name in self.pde.unknowns:
            value = self.value(name).detach()
            if self.members is None:
                logged[name] = value
            else:
                logged[name] = value.mean()
                logged.update({f"{name}_{k}": value[k] for k in range(self.members)})
        return logged

    def derivatives(self, x, spec=VALUE_ONLY, user="an expression", backend=None):
        """The named values (inputs, outputs and the derivatives of ``spec``) of the network at points ``x``, with
        jets by ``backend`` (default: the trainer's)."""
        if backend is None:
            jets = self.jets(x, spec.first, spec.second) if spec != VALUE_ONLY else self.outputs(x).unsqueeze(0)
        else:
            jets = taylor_jets(self.network, x, spec.first, spec.second, backend)
        return at_points(self.pde.channels, x, jets, spec, user)

    def residuals(self, x, backend="torch"):
        """The residual at points ``x``: one tensor per equation (differentiable; to map or to check it; jets by
        ``backend``, as :func:`~pinnfast.jets.taylor_jets`)."""
        residual = self.pde.residual
        return residual(self.derivatives(x, residual.spec, residual.user, backend), self.unknown_values())

    def sample(self, generator, n_collocation=None, every_point=False):
        """One step's batch: ``n_collocation`` (default the problem's) uniform collocation points, each
        condition's face points, and a random batch of each condition's fixed points (``every_point``: all of
        them, for a full-batch optimiser)."""
        lead = () if self.members is None else (self.members,)
        n_collocation = n_collocation or self.n_collocation
        batch = {}
        for name, term in self.pde.conditions.items():
            if term.faces is not None:
                batch[name] = self._on_faces(term, generator, lead)
        collocation = uniform(generator, math.prod(lead) * n_collocation, self.lo, self.hi)
        batch["collocation"] = collocation.reshape(*lead, n_collocation, self.pde.in_dim)
        for name, term in self.pde.conditions.items():
            if term.points is not None:
                batch.update(self._fixed_batch(name, term, generator, lead, every_point))
        return batch

    def _on_faces(self, term, generator, lead):
        """``n`` points per face, uniform in the box with the face's coordinate fixed, faces stacked in order."""
        n = term.n or self.n_collocation
        faces = []
        for index, where in term.faces:
            points = uniform(generator, math.prod(lead) * n, self.lo, self.hi)
            points[:, index] = self.lo[index] if where == "lo" else self.hi[index] if where == "hi" else where
            faces.append(points.reshape(*lead, n, self.pde.in_dim))
        return torch.cat(faces, -2)

    def _fixed_batch(self, name, term, generator, lead, every_point=False):
        points, values = getattr(self, f"points_{name}"), getattr(self, f"values_{name}")
        size, n_points = term.batch_size or self.batch_size, points.shape[-2]
        if size < n_points and not every_point:
            index = torch.randint(n_points, (*lead, size), generator=generator, device=points.device)
            rows = index if self.members is None else (torch.arange(self.members, device=index.device)[:, None], index)
            points, values = points[rows], None if values is None else values[rows]
        return {name: points} if values is None else {name: points, f"{name}.values": values}

    def losses(self, batch):
        """``L_r``, the sum of the residual's mean squares at the collocation points, and each condition's loss
        (per member for an ensemble)."""
        unknowns = self.unknown_values()
        loss_r = self.residual_loss(batch["collocation"], unknowns)
        terms = []
        for name, term in self.pde.conditions.items():
            x = batch[name]
            if term.equation is not None:
                terms.append(self._mean_squares(term.equation, x, unknowns))
                continue
            if term.values is not None:
                target = batch[f"{name}.values"]
            else:
                inputs = at_points(self.pde.channels, x, None, VALUE_ONLY)
                target = torch.stack([function(inputs, {})[0] for function in term.functions], -1)
            terms.append(self._misfit(self.outputs(x), term, target).square().sum(-1).mean(-1))
        return loss_r, terms

    def residual_loss(self, x, unknowns):
        """``L_r``: the sum of the residual's mean squares at the collocation points ``x``."""
        return self._mean_squares(self.pde.residual, x, unknowns)

    def _misfit(self, value, term, target):
        """The term's output columns minus its target; columns picked one by one (an index list would be copied to
        the device at every step, which a CUDA graph cannot capture)."""
        if term.columns != list(range(self.pde.out_dim)):
            value = torch.stack([value[..., column] for column in term.columns], -1)
        return value - target

    def _mean_squares(self, expression, x, unknowns):
        parts = expression(self.derivatives(x, expression.spec, expression.user), unknowns)
        return sum(part.square().mean(-1) for part in parts)

    def data_fit(self, chunk=1 << 16):
        """Root-mean-square misfit of each targeted output over each condition's fixed points (chunked: point
        sets may be large), as ``rmse_<output>``, or ``rmse_<condition>_<output>`` when several conditions have
        fixed values; an ensemble's over its members' own resamples."""
        fixed = [(name, term) for name, term in self.pde.conditions.items() if term.values is not None]
        fit = {}
        for name, term in fixed:
            points, values = getattr(self, f"points_{name}"), getattr(self, f"values_{name}")
            squares = sum(self._misfit(self.network(x), term, target).square().flatten(0, -2).sum(0)
                          for x, target in zip(points.split(chunk, -2), values.split(chunk, -2)))
            rmse = (squares / points.shape[:-1].numel()).sqrt().tolist()
            prefix = "rmse_" if len(fixed) == 1 else f"rmse_{name}_"
            fit.update({prefix + self.pde.outputs[column]: value for column, value in zip(term.columns, rmse)})
        return fit


def helmholtz_solution(x, y, a1, a2):
    return torch.sin(a1 * math.pi * x) * torch.sin(a2 * math.pi * y)


def helmholtz_forcing(x, y, a1, a2, k):
    return (k ** 2 - math.pi ** 2 * (a1 ** 2 + a2 ** 2)) * helmholtz_solution(x, y, a1, a2)


class Helmholtz(PDEProblem):
    """u_xx + u_yy + k²u = q on [−1, 1]², exact u = sin(a1 πx) sin(a2 πy); Dirichlet data on the four edges."""

    def __init__(self, network, n_points=128, a1=1.0, a2=4.0, k=1.0):
        pde = PDE(("x", "y"), ("u",), lambda d: d.u_xx + d.u_yy + k ** 2 * d.u - helmholtz_forcing(d.x, d.y, a1, a2, k),
                  conditions={"bc": Condition(Faces(x=("lo", "hi"), y=("lo", "hi")),
                                              values=lambda d: helmholtz_solution(d.x, d.y, a1, a2))},
                  box=((-1.0, -1.0), (1.0, 1.0)), name="helmholtz")
        super().__init__(pde, network, n_collocation=n_points)
        self.a1, self.a2, self.k = a1, a2, k

    def exact(self, x):
        return helmholtz_solution(x[:, :1], x[:, 1:2], self.a1, self.a2)

    def forcing(self, x):
        return helmholtz_forcing(x[:, :1], x[:, 1:2], self.a1, self.a2, self.k)


def klein_gordon_solution(x, t):
    return x * torch.cos(5 * math.pi * t) + (x * t) ** 3


def klein_gordon_forcing(x, t):
    u_tt = -25 * math.pi ** 2 * x * torch.cos(5 * math.pi * t) + 6 * x ** 3 * t
    u_xx = 6 * x * t ** 3
    return u_tt - u_xx + klein_gordon_solution(x, t) ** 3


class KleinGordon(PDEProblem):
    """u_tt − u_xx + u³ = f on (x, t) ∈ [0, 1]², exact u = x cos(5πt) + (xt)³; initial u and u_t at t = 0
    (one term) and Dirichlet data at x = 0 and x = 1 (another term)."""

    def __init__(self, network, n_points=128):
        pde = PDE(("x", "t"), ("u",), lambda d: d.u_tt - d.u_xx + d.u ** 3 - klein_gordon_forcing(d.x, d.t),
                  conditions={"ic": Condition(Faces(t="lo"), equation=lambda d: (
                      d.u - klein_gordon_solution(d.x, d.t), d.u_t)),  # exact u_t(x, 0) = 0
                      "bc": Condition(Faces(x=("lo", "hi")), values=lambda d: klein_gordon_solution(d.x, d.t))},
                  box=((0.0, 0.0), (1.0, 1.0)), name="klein-gordon")
        super().__init__(pde, network, n_collocation=n_points)

    @staticmethod
    def exact(x):
        return klein_gordon_solution(x[:, :1], x[:, 1:2])

    @staticmethod
    def forcing(x):
        return klein_gordon_forcing(x[:, :1], x[:, 1:2])
