"""pinnfast: fast physics-informed neural networks — the modified MLP (M3), learning-rate annealing (M4),
forward-mode Taylor jets, and fused Triton kernels, first applied to inferring ν of the 2D coupled Burgers equation;
any problem declared as a :class:`PDE` trains the same way.
"""
from ._version import __version__
from .annealing import Annealing, FixedWeights
from .burgers import BurgersInverse, ExactBurgers, burgers_residuals, exact_solution, make_observations
from .data import load_observations, save_observations
from .errors import PinnfastError, PinnfastWarning
from .evaluate import evaluate_residuals
from .jets import JetSpec, taylor_jets
from .models import MLP, ModifiedMLP
from .pde import PDE, Condition, Faces, Unknown
from .problems import Helmholtz, KleinGordon, PDEProblem, Problem
from .trainer import Run, TrainConfig, Trainer, load_run

__all__ = [
    "Annealing", "BurgersInverse", "Condition", "ExactBurgers", "Faces", "FixedWeights", "Helmholtz", "JetSpec",
    "KleinGordon", "MLP", "ModifiedMLP", "PDE", "PDEProblem", "PinnfastError", "PinnfastWarning", "Problem", "Run",
    "TrainConfig", "Trainer", "Unknown", "__version__",
    "burgers_residuals", "evaluate_residuals", "exact_solution", "load_observations", "load_run", "make_observations",
    "save_observations", "taylor_jets",
]
