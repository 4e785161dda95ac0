"""Loss weights λ_i for ``L = L_r + Σ λ_i L_i``: fixed (M1, M3) or learning-rate annealing (M2, M4; Algorithm 1).

Annealing, every ``period`` steps:  λ̂_i = max_θ |∇_θ L_r| / mean_θ |∇_θ L_i|,  λ_i ← (1 − α) λ_i + α λ̂_i.
Conventions (docs/math.md), as options; the defaults are the paper's formula:
- ``grads="all"``: every network parameter; ``"weights"``: the trunk's weight matrices only (input, hidden and
  output layers; no biases, no encoder weights), as in the authors' code. ν is never included.
- ``mean="global"``: each parameter counts once; ``"per-layer"``: mean of the per-tensor means (authors' code).
- ``weighted=False``: ∇L_i; ``True``: ∇(λ_i L_i) with the current λ_i (authors' code; fixed point λ² = ratio).
λ lives on the parameters' device and is updated there, so a step never waits for the host.
"""
import torch

from .errors import PinnfastError

GRAD_SETS = ("all", "weights")
MEAN_KINDS = ("global", "per-layer")


class FixedWeights:
    """Constant λ_i (1 by default): the weighting of M1 and M3. An ensemble (``members`` = K) has one λ per term
    and member: ``(n_terms, K)``."""

    def __init__(self, n_terms, device="cpu", value=1.0, members=None):
        shape = (n_terms,) if members is None else (n_terms, members)
        self.lambdas = torch.full(shape, float(value), device=device)

    def due(self, step):
        return False

    def state_dict(self):
        return {"lambdas": self.lambdas.clone()}

    def load_state_dict(self, state):
        self.lambdas.copy_(state["lambdas"])


class Annealing(FixedWeights):
    """Algorithm 1 of Wang, Teng & Perdikaris (2020), with the conventions above as options."""

    def __init__(self, n_terms, device="cpu", period=10, alpha=0.1, grads="all", mean="global", weighted=False,
                 members=None):
        super().__init__(n_terms, device, members=members)
        if grads not in GRAD_SETS:
            raise PinnfastError(f"annealing grads must be one of {GRAD_SETS}, got {grads!r}")
        if mean not in MEAN_KINDS:
            raise PinnfastError(f"annealing mean must be one of {MEAN_KINDS}, got {mean!r}")
        if int(period) != period or period < 1:
            raise PinnfastError(f"annealing period must be an integer >= 1, got {period!r}")
        if not 0 < alpha <= 1:
            raise PinnfastError(f"annealing alpha must be in (0, 1], got {alpha!r}")
        self.period, self.alpha, self.grads, self.mean, self.weighted = int(period), alpha, grads, mean, weighted

    def due(self, step):
        return step % self.period == 0

    def selected(self, named_params):
        """Indices of the parameters whose gradients enter the statistic."""
        names = [name for name, _ in named_params]
        if self.grads == "all":
            return list(range(len(names)))
        return [k for k, name in enumerate(names) if name.endswith("weight") and "encoder" not in name]

    def imbalance(self, grad_r, grads_terms):
        """The imbalance ratio max|∇L_r| / mean|∇L_i| for every term (and member), from gradient lists aligned
        with the selected parameters; an ensemble's gradients are member-stacked ``(K, ...)`` and each member gets
        its own ratio. It is λ̂ of the paper's formula; the weighted form divides it by λ_i."""
        members = self.lambdas[0].numel()

        def magnitudes(g):  # |g| per member: (members, elements of one member)
            return g.abs().reshape(members, -1)

        max_r = torch.stack([magnitudes(g).max(1).values for g in grad_r]).max(0).values
        ratios = []
        for grads in grads_terms:
            if self.mean == "global":
                mean = sum(magnitudes(g).sum(1) for g in grads) / sum(g.numel() // members for g in grads)
            else:
                mean = torch.stack([magnitudes(g).mean(1) for g in grads]).mean(0)
            ratios.append(max_r / mean)
        return torch.stack(ratios).reshape(self.lambdas.shape)

    def statistic(self, grad_r, grads_terms):
        """λ̂_i for every term (and member)."""
        return self._lambda_hat(self.imbalance(grad_r, grads_terms))

    def update(self, grad_r, grads_terms):
        """λ ← (1 − α) λ + α λ̂, in place on the device; returns the imbalance ratio (for the metrics)."""
        ratio = self.imbalance(grad_r, grads_terms)
        statistic = self._lambda_hat(ratio)  # before λ changes: the weighted form reads λ
        self.lambdas.mul_(1 - self.alpha).add_(self.alpha * statistic)
        return ratio

    def _lambda_hat(self, ratio):
        """λ̂ from the imbalance ratio: the ratio itself, or divided by the current λ when weighted."""
        return ratio / self.lambdas if self.weighted else ratio
