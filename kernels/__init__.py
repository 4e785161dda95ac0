"""Fused Triton kernels (installed as ``pinnfast.kernels``): per op, the ``@triton.jit`` kernels, a host
launcher and one ``torch.autograd.Function``."""
from .backward import burgers_loss, triton_jets
from .jets import DEFAULT_PRECISION, PRECISIONS, burgers_fields, forget_packed_weights

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "burgers_fields", "burgers_loss", "forget_packed_weights",
           "triton_jets"]
