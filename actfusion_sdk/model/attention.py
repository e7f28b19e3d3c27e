"""The single seam between the model and the attention implementations (spec §2).

`dilated_attention(q, k, v, bias, dilation, kernel_size, impl)` computes, for every query position t,
a softmax over exactly K taps at positions t + (j - K//2)·dilation. Out-of-range taps have zero keys and
values but stay in the softmax denominator with logit bias_j/sqrt(C) + ln(1e-6); valid taps get
+ln(1 + 1e-6) (both in fp32, as the official code adds log(mask + 1e-6)). The per-tap bias is added
before the 1/sqrt(C) scale.

Implementations: "reference" (gather, the test oracle), "torch" (per-tap shifted slices, no gathered copies),
"triton" (fused kernels in actfusion_sdk.kernels, imported lazily) and "auto" (triton on CUDA when available,
else torch; float64 always takes torch). On a CPU, inference with "auto" can go further, outside this seam:
the CPU engine (actfusion_sdk.kernels.engine) runs a whole layer's conv, attention and norm in one kernel
pass.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os

import torch

from ..errors import KernelError

IMPLEMENTATIONS = ("auto", "reference", "torch", "triton")
# "auto" sends these CUDA dtypes to the Triton kernels; float64 stays on the torch path there.
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _validate(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    kernel_size: int,
) -> None:
    if (
        q.dim() != 3
        or k.shape != q.shape
        or v.dim() != 3
        or v.shape[0] != q.shape[0]
        or v.shape[2] != q.shape[2]
    ):
        raise KernelError(
            f"dilated_attention expects q, k as [B, C, L] and v as [B, Cv, L]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype) or not (q.device == k.device == v.device):
        raise KernelError(
            f"q, k, v must share dtype and device; got {q.dtype}/{q.device}, {k.dtype}/{k.device}, "
            f"{v.dtype}/{v.device}"
        )
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise KernelError(f"kernel_size must be odd and positive, got {kernel_size}")
    if dilation < 1:
        raise KernelError(f"dilation must be >= 1, got {dilation}")
    if bias is not None and bias.shape != (kernel_size,):
        raise KernelError(
            f"bias must have shape [{kernel_size}] (one value per tap), got {tuple(bias.shape)}"
        )


@functools.cache
def log_mask_terms() -> tuple[float, float]:
    """(ln(fp32(1e-6)), ln(fp32(1 + 1e-6))): the official log(mask + 1e-6) terms in fp32 (spec §2)."""
    invalid, valid = (torch.log(torch.tensor([0.0, 1.0], dtype=torch.float32) + 1e-6)).tolist()
    return invalid, valid


def rel_tap_bias(table: torch.Tensor, dilation: int, kernel_size: int) -> torch.Tensor:
    """Per-tap 'rel' bias beta_j = table[10000 + min(j·dilation, 100)] from a [20000, 1] embedding (spec §2).

    Not a signed relative offset: one learned value per tap, taps with j·dilation >= 100 share one entry.
    """
    # Rows built on the table's device: no host-to-device copy, so CUDA-graph capture can record it.
    rows = (torch.arange(kernel_size, device=table.device) * dilation).clamp(max=100) + 10000
    return table.reshape(-1)[rows]


def reference_dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    kernel_size: int,
) -> torch.Tensor:
    """Gather implementation, the test oracle: materialises the K gathered keys and values."""
    batch, channels, length = q.shape
    half = kernel_size // 2
    pad = half * dilation
    k_pad = torch.nn.functional.pad(k, (pad, pad))
    v_pad = torch.nn.functional.pad(v, (pad, pad))
    # index[t, j] = t + j·dilation in padded coordinates, i.e. position t + (j - K//2)·dilation.
    index = torch.arange(length, device=q.device)[:, None] + dilation * torch.arange(
        kernel_size, device=q.device
    )
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


@functools.lru_cache(maxsize=256)
def tap_ranges(length: int, dilation: int, kernel_size: int) -> tuple[tuple[int, int, int], ...]:
    """Per tap j: (offset, first, stop) such that query t in [first, stop) sees key t + offset in range."""
    ranges = []
    for j in range(kernel_size):
        offset = (j - kernel_size // 2) * dilation
        first = min(length, max(0, -offset))
        ranges.append((offset, first, max(first, min(length, length - offset))))
    return tuple(ranges)


@functools.lru_cache(maxsize=256)
def _log_mask(
    length: int, dilation: int, kernel_size: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The [K, L] term log(valid + 1e-6) of spec §2, built once per shape (the DDIM loop reuses it)."""
    with torch.inference_mode(False):  # a normal tensor, usable under autograd after an inference call
        positions = torch.arange(length, device=device)
        ranges = tap_ranges(length, dilation, kernel_size)
        valid = torch.stack([(positions >= first) & (positions < stop) for _, first, stop in ranges])
        log_invalid, log_valid = log_mask_terms()
        return torch.where(valid, log_valid, log_invalid).to(dtype)


def torch_dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    kernel_size: int,
) -> torch.Tensor:
    """Shifted-slice implementation: one [B, C, L] product per tap, never the K gathered copies.

    Computes in fp32 (float64 for float64 inputs) and returns the input dtype; differentiable by autograd.
    """
    batch, channels, length = q.shape
    dtype = q.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    q, k, v = q.to(compute), k.to(compute), v.to(compute)
    ranges = tap_ranges(length, dilation, kernel_size)
    # Out-of-range taps keep q·k = 0 (zero-padded keys): only the in-range slice of each row is written.
    scores = q.new_zeros((batch, kernel_size, length))
    for j, (offset, first, stop) in enumerate(ranges):
        if stop > first:
            scores[:, j, first:stop] = (q[:, :, first:stop] * k[:, :, first + offset : stop + offset]).sum(1)
    if bias is not None:
        scores = scores + bias.to(compute)[:, None]
    scores = scores / math.sqrt(channels)
    weights = torch.softmax(scores + _log_mask(length, dilation, kernel_size, q.device, compute), dim=1)
    out = torch.zeros((batch, v.shape[1], length), dtype=compute, device=q.device)
    for j, (offset, first, stop) in enumerate(ranges):
        if stop > first:
            # Invalid taps get weight 0 (spec §2: a_j <- a_j·valid_j); only the in-range slice contributes.
            out[:, :, first:stop].addcmul_(
                weights[:, j : j + 1, first:stop], v[:, :, first + offset : stop + offset]
            )
    return out.to(dtype)


@functools.cache
def _triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def _triton_dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    kernel_size: int,
) -> torch.Tensor:
    if not _triton_importable():
        raise KernelError(
            "attention impl 'triton' needs the triton package, which is not installed; "
            "install triton or use impl='torch'"
        )
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise KernelError(
            f"attention impl 'triton' needs CUDA tensors, got tensors on {q.device}; move them to a GPU, "
            "use impl='torch' (or 'auto'), or set TRITON_INTERPRET=1 before triton is imported "
            "to use its interpreter"
        )
    from ..kernels.autograd import fused_dilated_attention

    log_invalid, log_valid = log_mask_terms()
    return fused_dilated_attention(
        q, k, v, bias, dilation, kernel_size, log_valid=log_valid, log_invalid=log_invalid
    )


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    kernel_size: int,
    impl: str = "auto",
) -> torch.Tensor:
    """Single-head dilated local attention over [B, C, L] tensors; `bias` holds one value per tap."""
    _validate(q, k, v, bias, dilation, kernel_size)
    if impl == "auto":
        on_gpu = q.device.type == "cuda" and q.dtype in _TRITON_DTYPES
        impl = "triton" if on_gpu and _triton_importable() else "torch"
    if impl == "reference":
        return reference_dilated_attention(q, k, v, bias, dilation, kernel_size)
    if impl == "torch":
        return torch_dilated_attention(q, k, v, bias, dilation, kernel_size)
    if impl == "triton":
        return _triton_dilated_attention(q, k, v, bias, dilation, kernel_size)
    raise KernelError(
        f"unknown attention implementation {impl!r}; choose one of {', '.join(IMPLEMENTATIONS)}"
    )
