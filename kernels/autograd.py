"""torch.autograd.Function around the fused dilated-attention kernels."""

from __future__ import annotations

import torch

from .dilated_attention import attention_backward, attention_forward


class DilatedAttentionFunction(torch.autograd.Function):
    """Forward saves q, k, v, bias and one log-sum-exp per position; backward recomputes the rest."""

    @staticmethod
    def forward(ctx, q, k, v, bias, has_bias, dilation, log_valid, log_invalid):
        out, lse = attention_forward(q, k, v, bias, dilation, log_valid, log_invalid)
        ctx.save_for_backward(q, k, v, bias, lse)
        ctx.has_bias = has_bias
        ctx.constants = (dilation, log_valid, log_invalid)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias, lse = ctx.saved_tensors
        grad_q, grad_k, grad_v, grad_bias = attention_backward(
            grad_out.contiguous(), q, k, v, bias, lse, *ctx.constants
        )
        grad_bias = grad_bias.to(bias.dtype) if ctx.has_bias else None
        return grad_q, grad_k, grad_v, grad_bias, None, None, None, None


def fused_dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    kernel_size: int,
    *,
    log_valid: float,
    log_invalid: float,
) -> torch.Tensor:
    """Dilated attention through the Triton kernels (q, k: [B, C, L], v: [B, Cv, L], bias: [K] or None).

    `log_valid` / `log_invalid` are the logit offsets of in-range / out-of-range taps.
    """
    has_bias = bias is not None
    if has_bias:
        tap_bias = bias.to(device=q.device).contiguous()
    else:
        tap_bias = torch.zeros(kernel_size, dtype=q.dtype, device=q.device)
    return DilatedAttentionFunction.apply(
        q.contiguous(), k.contiguous(), v.contiguous(), tap_bias, has_bias, dilation, log_valid, log_invalid
    )
