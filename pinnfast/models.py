"""The networks: plain tanh MLP (M1/M2) and the paper's modified MLP (M3/M4), both propagating jets.

``forward(x)`` is the value channel of :meth:`taylor`, so the value and its derivatives come from one code path.
``members=K`` makes an ensemble: K independently initialised networks of the same shape evaluated as one batched
model (weights with a leading member axis; points ``(N, in)`` shared or ``(K, N, in)`` per member; outputs
``(K, N, out)``).
"""
import math

import torch
from torch import nn

from .errors import PinnfastError
from .jets import VALUE_ONLY, difference_jet, gate_jet, input_jet, linear_jet, stacked, tanh_jet


class MemberLinear(nn.Module):
    """``members`` independent linear layers applied at once: weight ``(K, out, in)``, bias ``(K, 1, out)``."""

    def __init__(self, fan_in, fan_out, members):
        super().__init__()
        std = math.sqrt(2.0 / (fan_in + fan_out))  # Xavier normal, per member
        self.weight = nn.Parameter(torch.randn(members, fan_out, fan_in) * std)
        self.bias = nn.Parameter(torch.zeros(members, 1, fan_out))


def _xavier_linear(fan_in, fan_out, members=None):
    if members is not None:
        return MemberLinear(fan_in, fan_out, members)
    layer = nn.Linear(fan_in, fan_out)
    nn.init.xavier_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def domain_box(network):
    """The (lo, hi) box that the network's input normalisation maps to [−1, 1]."""
    lo = ((-1 - network.in_shift) / network.in_scale).tolist()
    hi = ((1 - network.in_shift) / network.in_scale).tolist()
    return lo, hi


class _JetNetwork(nn.Module):
    """Shared shape checks and input normalisation ``x̃ = 2 (x − lo) / (hi − lo) − 1`` per coordinate."""

    def __init__(self, in_dim, out_dim, width, depth, domain, members=None):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width), ("depth", depth)):
            if int(value) != value or value < 1:
                raise PinnfastError(f"{type(self).__name__}: {name} must be an integer >= 1, got {value!r}")
        if members is not None and (int(members) != members or members < 1):
            raise PinnfastError(f"{type(self).__name__}: members must be an integer >= 1, got {members!r}")
        self.in_dim, self.out_dim, self.width, self.depth = int(in_dim), int(out_dim), int(width), int(depth)
        self.members = None if members is None else int(members)
        scale, shift = torch.ones(self.in_dim), torch.zeros(self.in_dim)
        if domain is not None:
            lo = torch.as_tensor(domain[0], dtype=torch.float64).reshape(-1)
            hi = torch.as_tensor(domain[1], dtype=torch.float64).reshape(-1)
            if lo.numel() != self.in_dim or hi.numel() != self.in_dim or not bool((hi > lo).all()):
                raise PinnfastError(f"domain must be (lo, hi) with {self.in_dim} bounds each and hi > lo, "
                                    f"got lo={lo.tolist()}, hi={hi.tolist()}")
            scale = (2.0 / (hi - lo)).float()
            shift = (-1.0 - lo * 2.0 / (hi - lo)).float()
        self.register_buffer("in_scale", scale)
        self.register_buffer("in_shift", shift)

    def forward(self, x):
        return self.taylor(x, VALUE_ONLY)[0]

    def member(self, k):
        """Member ``k`` of an ensemble as a network of its own (same class, domain and weights)."""
        if self.members is None or not 0 <= k < self.members:
            raise PinnfastError(f"member {k} does not exist: this network has "
                                f"{'no members' if self.members is None else f'members 0 to {self.members - 1}'}")
        single = type(self)(self.in_dim, self.out_dim, self.width, self.depth).to(self.in_scale)
        shapes = {name: value.shape for name, value in single.state_dict().items()}
        single.load_state_dict({name: value if name in ("in_scale", "in_shift") else value[k].reshape(shapes[name])
                                for name, value in self.state_dict().items()})
        return single

    def _input_jet(self, x, weight, bias, spec):
        return input_jet(x, self.in_scale, self.in_shift, weight, bias, spec)


class MLP(_JetNetwork):
    """Plain tanh MLP: ``H_1 = tanh(X W_1 + b_1)``, then ``depth`` layers ``H ← tanh(H W_k + b_k)``, linear output.

    ``depth`` counts the width-to-width layers, as for :class:`ModifiedMLP`, so M1 and M3 have the same widths.
    """

    def __init__(self, in_dim, out_dim, width, depth, domain=None, members=None):
        super().__init__(in_dim, out_dim, width, depth, domain, members)
        self.input_layer = _xavier_linear(self.in_dim, self.width, members)
        self.hidden = nn.ModuleList(_xavier_linear(self.width, self.width, members) for _ in range(self.depth))
        self.output = _xavier_linear(self.width, self.out_dim, members)

    def taylor(self, x, spec):
        """Jets ``(C, ..., N, out)`` in ``spec``'s channel order (value, first, second)."""
        h = tanh_jet(self._input_jet(x, self.input_layer.weight, self.input_layer.bias, spec), spec)
        for layer in self.hidden:
            h = tanh_jet(linear_jet(h, layer), spec)
        return stacked(linear_jet(h, self.output))


class ModifiedMLP(_JetNetwork):
    """The modified MLP of Wang, Teng & Perdikaris (2020), eqs. 43–46 (docs/math.md).

    ``U, V, H_1 = tanh(X W + b)`` (encoders and first layer), then ``depth`` gate layers
    ``Z_k = tanh(H_k W_z,k + b_z,k)``, ``H_{k+1} = U + Z_k ⊙ (V − U)``, and a linear output.
    """

    def __init__(self, in_dim, out_dim, width, depth, domain=None, members=None):
        super().__init__(in_dim, out_dim, width, depth, domain, members)
        self.encoder_u = _xavier_linear(self.in_dim, self.width, members)
        self.encoder_v = _xavier_linear(self.in_dim, self.width, members)
        self.input_layer = _xavier_linear(self.in_dim, self.width, members)
        self.gates = nn.ModuleList(_xavier_linear(self.width, self.width, members) for _ in range(self.depth))
        self.output = _xavier_linear(self.width, self.out_dim, members)

    def taylor(self, x, spec):
        u, v, h = self._encoders_jet(x, spec)
        d = difference_jet(u, v, spec)
        for gate in self.gates:
            h = gate_jet(u, d, tanh_jet(linear_jet(h, gate), spec), spec)
        return stacked(linear_jet(h, self.output))

    def _encoders_jet(self, x, spec):
        """The jets of ``U``, ``V`` and ``H_1``: the three input layers as one batched layer (an axis of 3 just
        before the points', so that any leading axes of ``x`` or of an ensemble's weights broadcast as in
        ``nn.Linear``): one matmul and one tanh rule serve all three (a third of the operations), split after."""
        layers = (self.encoder_u, self.encoder_v, self.input_layer)
        weight = torch.stack([layer.weight for layer in layers], -3)
        bias = torch.stack([layer.bias.reshape(*layer.weight.shape[:-2], 1, -1) for layer in layers], -3)
        jet = tanh_jet(self._input_jet(x.unsqueeze(-3), weight, bias, spec), spec)
        return zip(*(group.unbind(-3) if group is not None else (None,) * 3 for group in jet))
