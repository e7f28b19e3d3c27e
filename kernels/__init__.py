"""Fused Triton kernels (installed as `actfusion_sdk.kernels`); importing this package imports triton."""

from .autograd import fused_dilated_attention

__all__ = ["fused_dilated_attention"]
