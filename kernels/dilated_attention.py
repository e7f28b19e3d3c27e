"""Triton kernels for single-head dilated local attention over [B, C, L] tensors, and their launchers.

For query position t and tap j = 0..K-1 the key/value position is p = t + (j - K//2)·dilation. A tap whose p
lies outside [0, L) reads zero keys and values but keeps its logit in the softmax denominator:

    s_j = (<q_t, k_p> + bias_j) / sqrt(C) + (log_valid if p in range else log_invalid)
    out_t = sum_j softmax(s)_j · valid_j · v_p

Each program owns BLOCK_L positions of one batch element and walks the channels in chunks of BLOCK_C, so its
registers do not grow with C. The forward accumulates the K dot products of its positions over the channel
chunks ([TAPS, BLOCK_L] tile), takes the softmax, then writes the output chunk by chunk: Q is read once, each
K/V tile once per tap, the output written once, plus one log-sum-exp per position.
The backward is two gathers, no atomics. The query kernel recomputes the logits and dP_j = <dO_t, v_p>,
forms dS = P·(dP - sum P dP) in a cancellation-free pairwise form, writes dQ, P and dS per (tap, position)
and per-program partial sums of the bias gradient. The key kernel lets every key position collect dK and dV
from the K queries that see it, reading P and dS back. Accumulation is fp32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Positions per program, channels per chunk (capped by the padded channel count), warps per program and the
# pipelining depth of the channel loops (None: triton's default). The fastest forward and forward+backward of
# `benchmarks/bench_attention.py --tune` on an H200 (B=4, C=256, L=16384, K=5; benchmarks/RESULTS.md);
# the sweep times alternatives by updating this dict.
LAUNCH_DEFAULTS = {"BLOCK_L": 32, "BLOCK_C": 64, "num_warps": 4, "num_stages": None}


@triton.jit
def _sqrt_channels(channels, ACC: tl.constexpr):
    """sqrt(C), correctly rounded, in the accumulator type (sqrt_rn is fp32-only; tl.cast also takes the
    constexpr that triton substitutes for an integer argument equal to 1)."""
    if ACC == tl.float64:  # noqa: SIM108, SIM300 (a compile-time branch on the constexpr dtype)
        root = tl.sqrt(tl.cast(channels, tl.float64))
    else:
        root = tl.sqrt_rn(tl.cast(channels, tl.float32))
    return root


@triton.jit
def _tap_row(tile, tap_index, tap: tl.constexpr):
    """Row `tap` of a [TAPS, BLOCK_L] tile as a [BLOCK_L] vector."""
    return tl.sum(tl.where(tap_index[:, None] == tap, tile, 0.0), axis=0)


@triton.jit
def _tap_positions(position, tap_index, dilation, DIRECTION: tl.constexpr, KERNEL_SIZE: tl.constexpr):
    """[TAPS, BLOCK_L] positions t + DIRECTION·(j - K//2)·dilation (-1: the queries that see key t)."""
    return position[None, :] + DIRECTION * (tap_index[:, None] - KERNEL_SIZE // 2) * dilation


@triton.jit
def _tap_dots(
    a_ptr,
    b_ptr,
    position,
    in_sequence,
    length,
    channels,
    dilation,
    KERNEL_SIZE: tl.constexpr,
    TAPS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ACC: tl.constexpr,
):
    """[TAPS, BLOCK_L] tile of <a[:, t], b[:, t + (j - K//2)·dilation]>, zero for out-of-range taps."""
    tap_index = tl.arange(0, TAPS)
    dots = tl.zeros([TAPS, BLOCK_L], ACC)
    for start in range(0, channels, BLOCK_C):
        channel = start + tl.arange(0, BLOCK_C)
        channel_mask = channel[:, None] < channels
        a_pointers = a_ptr + channel[:, None] * length + position[None, :]
        a = tl.load(a_pointers, mask=channel_mask & in_sequence[None, :], other=0.0)
        for tap in tl.static_range(KERNEL_SIZE):
            key = position + (tap - KERNEL_SIZE // 2) * dilation
            valid = in_sequence & (key >= 0) & (key < length)
            b_pointers = b_ptr + channel[:, None] * length + key[None, :]
            b = tl.load(b_pointers, mask=channel_mask & valid[None, :], other=0.0)
            dot = tl.sum(a.to(ACC) * b.to(ACC), axis=0)
            dots += tl.where(tap_index[:, None] == tap, dot[None, :], 0.0)
    return dots


@triton.jit
def _tap_combine(
    weights,
    x_ptr,
    out_ptr,
    position,
    in_sequence,
    length,
    channels,
    dilation,
    DIRECTION: tl.constexpr,
    KERNEL_SIZE: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ACC: tl.constexpr,
):
    """out[:, t] = sum_j weights[j, t] · x[:, t + DIRECTION·(j - K//2)·dilation], written chunk by chunk."""
    tap_index = tl.arange(0, weights.shape[0])
    for start in range(0, channels, BLOCK_C):
        channel = start + tl.arange(0, BLOCK_C)
        channel_mask = channel[:, None] < channels
        acc = tl.zeros([BLOCK_C, BLOCK_L], ACC)
        for tap in tl.static_range(KERNEL_SIZE):
            source = position + DIRECTION * (tap - KERNEL_SIZE // 2) * dilation
            valid = in_sequence & (source >= 0) & (source < length)
            x_pointers = x_ptr + channel[:, None] * length + source[None, :]
            x = tl.load(x_pointers, mask=channel_mask & valid[None, :], other=0.0)
            acc += _tap_row(weights, tap_index, tap)[None, :] * x.to(ACC)
        pointers = out_ptr + channel[:, None] * length + position[None, :]
        tl.store(pointers, acc.to(out_ptr.dtype.element_ty), mask=channel_mask & in_sequence[None, :])


@triton.jit
def _tap_logits(
    dots, bias_ptr, valid, channels, log_valid, log_invalid, KERNEL_SIZE: tl.constexpr, ACC: tl.constexpr
):
    """s_j = (q·k + bias_j) / sqrt(C) + log-mask term (spec: the bias goes in before the scale)."""
    tap_index = tl.arange(0, dots.shape[0])
    bias = tl.load(bias_ptr + tap_index, mask=tap_index < KERNEL_SIZE, other=0.0).to(ACC)
    log_mask = tl.where(valid, log_valid, log_invalid).to(ACC)
    return (dots + bias[:, None]) / _sqrt_channels(channels, ACC) + log_mask


@triton.jit
def _forward_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    bias_ptr,
    out_ptr,
    lse_ptr,
    length,
    channels,
    value_channels,
    dilation,
    log_valid,
    log_invalid,
    KERNEL_SIZE: tl.constexpr,
    TAPS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ACC: tl.constexpr,
):
    batch = tl.program_id(1).to(tl.int64)
    position = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    in_sequence = position < length
    tap_index = tl.arange(0, TAPS)
    key = _tap_positions(position, tap_index, dilation, 1, KERNEL_SIZE)
    valid = in_sequence[None, :] & (key >= 0) & (key < length)
    real_tap = (tap_index[:, None] < KERNEL_SIZE) & in_sequence[None, :]
    qk_offset = batch * channels * length
    v_offset = batch * value_channels * length

    dots = _tap_dots(
        q_ptr + qk_offset, k_ptr + qk_offset, position, in_sequence, length, channels, dilation,
        KERNEL_SIZE, TAPS, BLOCK_C, BLOCK_L, ACC,
    )  # fmt: skip
    logits = _tap_logits(dots, bias_ptr, valid, channels, log_valid, log_invalid, KERNEL_SIZE, ACC)
    logits = tl.where(real_tap, logits, float("-inf"))
    # Positions past L have no real tap: give them max 0 and denominator 1 so nothing divides 0 by 0.
    row_max = tl.where(in_sequence, tl.max(logits, axis=0), 0.0)
    exponentials = tl.exp(logits - row_max[None, :])
    denominator = tl.where(in_sequence, tl.sum(exponentials, axis=0), 1.0)
    # Out-of-range taps stay in the denominator but get weight 0 (a_j <- a_j·valid_j).
    weights = tl.where(valid, exponentials / denominator[None, :], 0.0)
    tl.store(lse_ptr + batch * length + position, row_max + tl.log(denominator), mask=in_sequence)
    _tap_combine(
        weights, v_ptr + v_offset, out_ptr + v_offset, position, in_sequence, length, value_channels,
        dilation, 1, KERNEL_SIZE, BLOCK_C, BLOCK_L, ACC,
    )  # fmt: skip


@triton.jit
def _backward_query_kernel(
    q_ptr,
    k_ptr,
    v_ptr,
    bias_ptr,
    grad_out_ptr,
    lse_ptr,
    probability_ptr,
    grad_logit_ptr,
    grad_q_ptr,
    grad_bias_partial_ptr,
    length,
    channels,
    value_channels,
    dilation,
    log_valid,
    log_invalid,
    KERNEL_SIZE: tl.constexpr,
    TAPS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ACC: tl.constexpr,
):
    block = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    position = block * BLOCK_L + tl.arange(0, BLOCK_L)
    in_sequence = position < length
    tap_index = tl.arange(0, TAPS)
    key = _tap_positions(position, tap_index, dilation, 1, KERNEL_SIZE)
    valid = in_sequence[None, :] & (key >= 0) & (key < length)
    real_tap = (tap_index[:, None] < KERNEL_SIZE) & in_sequence[None, :]
    qk_offset = batch * channels * length
    v_offset = batch * value_channels * length

    dots = _tap_dots(
        q_ptr + qk_offset, k_ptr + qk_offset, position, in_sequence, length, channels, dilation,
        KERNEL_SIZE, TAPS, BLOCK_C, BLOCK_L, ACC,
    )  # fmt: skip
    # dP_j = <dO_t, v_p>: zero for out-of-range taps, whose values are zero.
    grad_probability = _tap_dots(
        grad_out_ptr + v_offset, v_ptr + v_offset, position, in_sequence, length, value_channels, dilation,
        KERNEL_SIZE, TAPS, BLOCK_C, BLOCK_L, ACC,
    )  # fmt: skip
    logits = _tap_logits(dots, bias_ptr, valid, channels, log_valid, log_invalid, KERNEL_SIZE, ACC)
    lse = tl.load(lse_ptr + batch * length + position, mask=in_sequence, other=0.0)
    probability = tl.where(real_tap, tl.exp(logits - lse[None, :]), 0.0)
    # dS_j = P_j·(dP_j - sum_i P_i dP_i) = P_j·sum_i P_i (dP_j - dP_i): the pairwise form keeps its digits
    # when one tap dominates (e.g. only the centre tap in range), where dP_j - <dO, O> cancels to noise.
    spread = tl.zeros([TAPS, BLOCK_L], ACC)
    for tap in tl.static_range(KERNEL_SIZE):
        spread += _tap_row(probability, tap_index, tap)[None, :] * (
            grad_probability - _tap_row(grad_probability, tap_index, tap)[None, :]
        )
    grad_logit = probability * spread / _sqrt_channels(channels, ACC)

    scratch = (batch * KERNEL_SIZE + tap_index[:, None]) * length + position[None, :]
    tl.store(probability_ptr + scratch, probability, mask=real_tap)
    tl.store(grad_logit_ptr + scratch, grad_logit, mask=real_tap)
    partial = (batch * tl.num_programs(0) + block) * KERNEL_SIZE + tap_index
    tl.store(grad_bias_partial_ptr + partial, tl.sum(grad_logit, axis=1), mask=tap_index < KERNEL_SIZE)
    _tap_combine(
        grad_logit, k_ptr + qk_offset, grad_q_ptr + qk_offset, position, in_sequence, length, channels,
        dilation, 1, KERNEL_SIZE, BLOCK_C, BLOCK_L, ACC,
    )  # fmt: skip


@triton.jit
def _backward_key_kernel(
    q_ptr,
    grad_out_ptr,
    probability_ptr,
    grad_logit_ptr,
    grad_k_ptr,
    grad_v_ptr,
    length,
    channels,
    value_channels,
    dilation,
    KERNEL_SIZE: tl.constexpr,
    TAPS: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ACC: tl.constexpr,
):
    batch = tl.program_id(1).to(tl.int64)
    position = tl.program_id(0) * BLOCK_L + tl.arange(0, BLOCK_L)
    in_sequence = position < length
    tap_index = tl.arange(0, TAPS)
    # Key position u is tap j of query t = u - (j - K//2)·dilation; only in-range queries contribute.
    query = _tap_positions(position, tap_index, dilation, -1, KERNEL_SIZE)
    valid = (tap_index[:, None] < KERNEL_SIZE) & in_sequence[None, :] & (query >= 0) & (query < length)
    scratch = (batch * KERNEL_SIZE + tap_index[:, None]) * length + query
    probability = tl.load(probability_ptr + scratch, mask=valid, other=0.0)
    grad_logit = tl.load(grad_logit_ptr + scratch, mask=valid, other=0.0)
    qk_offset = batch * channels * length
    v_offset = batch * value_channels * length
    _tap_combine(
        grad_logit, q_ptr + qk_offset, grad_k_ptr + qk_offset, position, in_sequence, length, channels,
        dilation, -1, KERNEL_SIZE, BLOCK_C, BLOCK_L, ACC,
    )  # fmt: skip
    _tap_combine(
        probability, grad_out_ptr + v_offset, grad_v_ptr + v_offset, position, in_sequence, length,
        value_channels, dilation, -1, KERNEL_SIZE, BLOCK_C, BLOCK_L, ACC,
    )  # fmt: skip


def new_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer a kernel writes comes from here (tests replace it to poison outputs with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


def launch_config(channels: int, value_channels: int, length: int, batch: int, kernel_size: int) -> dict:
    """Grid and meta-parameters shared by the three kernels."""
    block_l = LAUNCH_DEFAULTS["BLOCK_L"]
    config = {
        "grid": (triton.cdiv(length, block_l), batch),
        "KERNEL_SIZE": kernel_size,
        "TAPS": triton.next_power_of_2(kernel_size),
        "BLOCK_C": min(LAUNCH_DEFAULTS["BLOCK_C"], triton.next_power_of_2(max(channels, value_channels))),
        "BLOCK_L": block_l,
        "num_warps": LAUNCH_DEFAULTS["num_warps"],
    }
    if LAUNCH_DEFAULTS["num_stages"] is not None:
        config["num_stages"] = LAUNCH_DEFAULTS["num_stages"]
    return config


def _accumulator(dtype: torch.dtype) -> tuple[tl.dtype, torch.dtype]:
    return (tl.float64, torch.float64) if dtype == torch.float64 else (tl.float32, torch.float32)


def attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    dilation: int,
    log_valid: float,
    log_invalid: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output [B, Cv, L] in v's dtype and log-sum-exp [B, L] in the accumulator type; inputs contiguous."""
    batch, channels, length = q.shape
    value_channels = v.shape[1]
    acc, acc_dtype = _accumulator(q.dtype)
    out = new_buffer((batch, value_channels, length), v.dtype, q.device)
    lse = new_buffer((batch, length), acc_dtype, q.device)
    meta = launch_config(channels, value_channels, length, batch, bias.shape[0])
    grid = meta.pop("grid")
    _forward_kernel[grid](
        q, k, v, bias, out, lse, length, channels, value_channels, dilation, log_valid, log_invalid,
        ACC=acc, **meta,
    )  # fmt: skip
    return out, lse


def attention_backward(
    grad_out: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    lse: torch.Tensor,
    dilation: int,
    log_valid: float,
    log_invalid: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """dQ, dK, dV (input dtypes) and the per-tap bias gradient (accumulator type); inputs contiguous.

    The query kernel leaves P and dS per (tap, position) in two [B, K, L] scratch buffers (K/C of the
    traffic of q) for the key kernel to gather from.
    """
    batch, channels, length = q.shape
    value_channels = v.shape[1]
    kernel_size = bias.shape[0]
    acc, acc_dtype = _accumulator(q.dtype)
    meta = launch_config(channels, value_channels, length, batch, kernel_size)
    grid = meta.pop("grid")
    probability = new_buffer((batch, kernel_size, length), acc_dtype, q.device)
    grad_logit = new_buffer((batch, kernel_size, length), acc_dtype, q.device)
    grad_bias_partial = new_buffer((batch * grid[0], kernel_size), acc_dtype, q.device)
    grad_q, grad_k = new_buffer(q.shape, q.dtype, q.device), new_buffer(k.shape, k.dtype, q.device)
    grad_v = new_buffer(v.shape, v.dtype, q.device)
    _backward_query_kernel[grid](
        q, k, v, bias, grad_out, lse, probability, grad_logit, grad_q, grad_bias_partial,
        length, channels, value_channels, dilation, log_valid, log_invalid, ACC=acc, **meta,
    )  # fmt: skip
    _backward_key_kernel[grid](
        q, grad_out, probability, grad_logit, grad_k, grad_v, length, channels, value_channels, dilation,
        ACC=acc, **meta,
    )  # fmt: skip
    return grad_q, grad_k, grad_v, grad_bias_partial.sum(dim=0)
