"""Fused Triton kernels (installed as ``pinnfast.kernels``): per op, the ``@triton.jit`` kernels, a host
launcher and one ``torch.autograd.Function``."""
from .jets import DEFAULT_PRECISION, PRECISIONS, burgers_fields, triton_jets

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "burgers_fields", "triton_jets"]
