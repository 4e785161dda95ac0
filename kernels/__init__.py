"""Fused Triton kernels (installed as ``pinnfast.kernels``): per op, the ``@triton.jit`` kernels, a host
launcher and one ``torch.autograd.Function``."""
from .backward import burgers_loss, triton_jets
from .jets import DEFAULT_PRECISION, PRECISIONS, burgers_fields

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "burgers_fields", "burgers_loss", "triton_jets"]
