"""The single seam between the model and the attention implementations (spec §2).

`dilated_attention(q, k, v, bias, dilation, kernel_size, impl)` computes, for every query position t,
a softmax over exactly K taps at positions t + (j - K//2)·dilation. Out-of-range taps have zero keys and
values but stay in the softmax denominator with logit bias_j/sqrt(C) + ln(1e-6); valid taps get
+ln(1 + 1e-6) (both in fp32, as the official code adds log(mask + 1e-6)). The per-tap bias is added
before the 1/sqrt(C) scale.
"""

from __future__ import annotations

import math

import torch

from ..errors import KernelError

IMPLEMENTATIONS = ("auto", "reference", "torch", "triton")


def _validate(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
              dilation: int, kernel_size: int) -> None:
    if q.dim() != 3 or k.shape != q.shape or v.shape[0] != q.shape[0] or v.shape[2] != q.shape[2]:
        raise KernelError(
            f"dilated_attention expects q, k as [B, C, L] and v as [B, Cv, L]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise KernelError(f"kernel_size must be odd and positive, got {kernel_size}")
    if dilation < 1:
        raise KernelError(f"dilation must be >= 1, got {dilation}")
    if bias is not None and bias.shape != (kernel_size,):
        raise KernelError(f"bias must have shape [{kernel_size}] (one value per tap), got {tuple(bias.shape)}")


def reference_dilated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                                dilation: int, kernel_size: int) -> torch.Tensor:
    """Gather implementation, the test oracle: materialises the K gathered keys and values."""
    batch, channels, length = q.shape
    half = kernel_size // 2
    pad = half * dilation
    k_pad = torch.nn.functional.pad(k, (pad, pad))
    v_pad = torch.nn.functional.pad(v, (pad, pad))
    # index[t, j] = t + j·dilation in padded coordinates, i.e. position t + (j - K//2)·dilation.
    index = torch.arange(length, device=q.device)[:, None] + dilation * torch.arange(kernel_size, device=q.device)
    valid = (index >= pad) & (index < length + pad)
    k_taps = k_pad[:, :, index]  # [B, C, L, K]
    v_taps = v_pad[:, :, index]  # [B, Cv, L, K]
    scores = torch.einsum("bcl,bclk->blk", q, k_taps)
    if bias is not None:
        scores = scores + bias
    scores = scores / math.sqrt(channels)
    scores = scores + torch.log(valid.to(torch.float32) + 1e-6).to(scores.dtype)
    weights = torch.softmax(scores, dim=-1) * valid
    return torch.einsum("blk,bclk->bcl", weights, v_taps)


def dilated_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                      dilation: int, kernel_size: int, impl: str = "auto") -> torch.Tensor:
    """Single-head dilated local attention over [B, C, L] tensors; `bias` holds one value per tap."""
    _validate(q, k, v, bias, dilation, kernel_size)
    if impl == "reference":
        return reference_dilated_attention(q, k, v, bias, dilation, kernel_size)
    raise KernelError(f"unknown attention implementation {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}")
