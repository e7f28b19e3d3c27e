"""Triton kernels for single-head dilated local attention over [B, C, L] tensors, and their launchers.

For query position t and tap j = 0..K-1 the key/value position is p = t + (j - K//2)·dilation. A tap whose p
lies outside [0, L) reads zero keys and values but keeps its logit in the softmax denominator:

    s_j = (<q_t, k_p> + bias_j) / sqrt(C) + (log_valid if p in range else log_invalid)
    out_t = sum_j softmax(s)_j · valid_j · v_p

The forward kernel keeps an online softmax over the K taps, reads each Q/K/V tile once per tap and writes the
output once plus one log-sum-exp per position. The backward is two gathers, no atomics: the query kernel
recomputes the probabilities P and logit gradients dS of its positions, writes dQ, P, dS and per-block partial
sums of the bias gradient; the key kernel lets every key position collect dK and dV from the K queries that
see it.
Accumulation is fp32 (float64 for float64 inputs); C and Cv are padded to powers of two with masks.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Register budget per tile (elements of the widest [channels, positions] tile a program holds).
_TILE_ELEMENTS = 4096


@triton.jit
def _load_tile(base, channel, position, channel_mask, position_mask, length, ACC: tl.constexpr):
    """[BLOCK_C, BLOCK_L] tile of a contiguous [C, L] slab, zero where masked, in the accumulator type."""
    pointers = base + channel[:, None] * length + position[None, :]
    mask = channel_mask[:, None] & position_mask[None, :]
    return tl.load(pointers, mask=mask, other=0.0).to(ACC)


@triton.jit
def _store_tile(base, tile, channel, position, channel_mask, position_mask, length):
    pointers = base + channel[:, None] * length + position[None, :]
    mask = channel_mask[:, None] & position_mask[None, :]
    tl.store(pointers, tile.to(base.dtype.element_ty), mask=mask)


@triton.jit
def _sqrt_channels(channels, ACC: tl.constexpr):
    """sqrt(C) correctly rounded in the accumulator type (sqrt_rn is fp32-only, fp64 sqrt is exact)."""
    if ACC == tl.float64:  # noqa: SIM108, SIM300 (a compile-time branch on the constexpr dtype)
        root = tl.sqrt(channels.to(tl.float64))
    else:
        root = tl.sqrt_rn(channels.to(tl.float32))
    return root


@triton.jit
def _tap_logit(dot, bias_ptr, tap: tl.constexpr, valid, channels, log_valid, log_invalid, ACC: tl.constexpr):
    """s_j = (q·k + bias_j) / sqrt(C) + log-mask term; the bias goes in before the scale."""
    sqrt_c = _sqrt_channels(channels, ACC)
    bias = tl.load(bias_ptr + tap).to(ACC)
    return (dot + bias) / sqrt_c + tl.where(valid, log_valid, log_invalid).to(ACC)


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
    BLOCK_C: tl.constexpr,
    BLOCK_CV: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ACC: tl.constexpr,
):
    block = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    position = block * BLOCK_L + tl.arange(0, BLOCK_L)
    channel = tl.arange(0, BLOCK_C)
    value_channel = tl.arange(0, BLOCK_CV)
    in_sequence = position < length
    channel_mask = channel < channels
    value_mask = value_channel < value_channels
    qk_base = batch * channels * length
    v_base = batch * value_channels * length

    q = _load_tile(q_ptr + qk_base, channel, position, channel_mask, in_sequence, length, ACC)
    running_max = tl.full([BLOCK_L], float("-inf"), ACC)
    denominator = tl.zeros([BLOCK_L], ACC)
    acc = tl.zeros([BLOCK_CV, BLOCK_L], ACC)
    for tap in tl.static_range(KERNEL_SIZE):
        key = position + (tap - KERNEL_SIZE // 2) * dilation
        valid = in_sequence & (key >= 0) & (key < length)
        k = _load_tile(k_ptr + qk_base, channel, key, channel_mask, valid, length, ACC)
        logit = _tap_logit(tl.sum(q * k, axis=0), bias_ptr, tap, valid, channels, log_valid, log_invalid, ACC)
        new_max = tl.maximum(running_max, logit)
        rescale = tl.exp(running_max - new_max)
        weight = tl.exp(logit - new_max)
        denominator = denominator * rescale + weight
        v = _load_tile(v_ptr + v_base, value_channel, key, value_mask, valid, length, ACC)
        acc = acc * rescale[None, :] + weight[None, :] * v
        running_max = new_max

    _store_tile(
        out_ptr + v_base, acc / denominator[None, :], value_channel, position, value_mask, in_sequence, length
    )
    tl.store(lse_ptr + batch * length + position, running_max + tl.log(denominator), mask=in_sequence)


@triton.jit
def _tap_row(tile, tap_index, tap: tl.constexpr):
    """Row `tap` of a [TAPS, BLOCK_L] tile as a [BLOCK_L] vector."""
    return tl.sum(tl.where(tap_index[:, None] == tap, tile, 0.0), axis=0)


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
    BLOCK_CV: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ACC: tl.constexpr,
):
    block = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    position = block * BLOCK_L + tl.arange(0, BLOCK_L)
    channel = tl.arange(0, BLOCK_C)
    value_channel = tl.arange(0, BLOCK_CV)
    tap_index = tl.arange(0, TAPS)
    in_sequence = position < length
    channel_mask = channel < channels
    value_mask = value_channel < value_channels
    tap_mask = tap_index < KERNEL_SIZE
    qk_base = batch * channels * length
    v_base = batch * value_channels * length

    q = _load_tile(q_ptr + qk_base, channel, position, channel_mask, in_sequence, length, ACC)
    grad_out = _load_tile(
        grad_out_ptr + v_base, value_channel, position, value_mask, in_sequence, length, ACC
    )
    lse = tl.load(lse_ptr + batch * length + position, mask=in_sequence, other=0.0).to(ACC)
    logits = tl.zeros([TAPS, BLOCK_L], ACC)
    grad_probability = tl.zeros([TAPS, BLOCK_L], ACC)  # dP_j = <dO_t, v_p>, zero for out-of-range taps
    for tap in tl.static_range(KERNEL_SIZE):
        key = position + (tap - KERNEL_SIZE // 2) * dilation
        valid = in_sequence & (key >= 0) & (key < length)
        k = _load_tile(k_ptr + qk_base, channel, key, channel_mask, valid, length, ACC)
        v = _load_tile(v_ptr + v_base, value_channel, key, value_mask, valid, length, ACC)
        logit = _tap_logit(tl.sum(q * k, axis=0), bias_ptr, tap, valid, channels, log_valid, log_invalid, ACC)
        logits = tl.where(tap_index[:, None] == tap, logit[None, :], logits)
        grad_probability = tl.where(
            tap_index[:, None] == tap, tl.sum(grad_out * v, axis=0)[None, :], grad_probability
        )
    tile_mask = tap_mask[:, None] & in_sequence[None, :]
    probability = tl.where(tile_mask, tl.exp(logits - lse[None, :]), 0.0)
    # dS_j = P_j·(dP_j - sum_i P_i dP_i) = P_j·sum_i P_i (dP_j - dP_i): the pairwise form has no cancellation
    # when one tap dominates (e.g. only the centre tap in range), where dP_j - <dO, O> would lose all digits.
    spread = tl.zeros([TAPS, BLOCK_L], ACC)
    for tap in tl.static_range(KERNEL_SIZE):
        spread += _tap_row(probability, tap_index, tap)[None, :] * (
            grad_probability - _tap_row(grad_probability, tap_index, tap)[None, :]
        )
    grad_logit = probability * spread / _sqrt_channels(channels, ACC)

    scratch = (batch * KERNEL_SIZE + tap_index[:, None]) * length + position[None, :]
    tl.store(probability_ptr + scratch, probability, mask=tile_mask)
    tl.store(grad_logit_ptr + scratch, grad_logit, mask=tile_mask)
    partial = (batch * tl.num_programs(0) + block) * KERNEL_SIZE + tap_index
    tl.store(grad_bias_partial_ptr + partial, tl.sum(grad_logit, axis=1), mask=tap_mask)

    grad_q = tl.zeros([BLOCK_C, BLOCK_L], ACC)
    for tap in tl.static_range(KERNEL_SIZE):
        key = position + (tap - KERNEL_SIZE // 2) * dilation
        valid = in_sequence & (key >= 0) & (key < length)
        k = _load_tile(k_ptr + qk_base, channel, key, channel_mask, valid, length, ACC)
        grad_q += _tap_row(grad_logit, tap_index, tap)[None, :] * k
    _store_tile(grad_q_ptr + qk_base, grad_q, channel, position, channel_mask, in_sequence, length)


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
    BLOCK_C: tl.constexpr,
    BLOCK_CV: tl.constexpr,
    BLOCK_L: tl.constexpr,
    ACC: tl.constexpr,
):
    block = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    position = block * BLOCK_L + tl.arange(0, BLOCK_L)
    channel = tl.arange(0, BLOCK_C)
    value_channel = tl.arange(0, BLOCK_CV)
    in_sequence = position < length
    channel_mask = channel < channels
    value_mask = value_channel < value_channels
    qk_base = batch * channels * length
    v_base = batch * value_channels * length

    grad_k = tl.zeros([BLOCK_C, BLOCK_L], ACC)
    grad_v = tl.zeros([BLOCK_CV, BLOCK_L], ACC)
    for tap in tl.static_range(KERNEL_SIZE):
        # Key position u is tap j of query t = u - (j - K//2)·dilation; only in-range queries contribute.
        query = position - (tap - KERNEL_SIZE // 2) * dilation
        valid = in_sequence & (query >= 0) & (query < length)
        scratch = (batch * KERNEL_SIZE + tap) * length + query
        probability = tl.load(probability_ptr + scratch, mask=valid, other=0.0)
        grad_logit = tl.load(grad_logit_ptr + scratch, mask=valid, other=0.0)
        grad_out = _load_tile(grad_out_ptr + v_base, value_channel, query, value_mask, valid, length, ACC)
        grad_v += probability[None, :] * grad_out
        q = _load_tile(q_ptr + qk_base, channel, query, channel_mask, valid, length, ACC)
        grad_k += grad_logit[None, :] * q

    _store_tile(grad_k_ptr + qk_base, grad_k, channel, position, channel_mask, in_sequence, length)
    _store_tile(grad_v_ptr + v_base, grad_v, value_channel, position, value_mask, in_sequence, length)


def new_buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer a kernel writes comes from here (tests replace it to poison outputs with NaN)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _launch_shape(
    channels: int, value_channels: int, length: int, batch: int
) -> tuple[dict, tuple[int, int]]:
    block_c = triton.next_power_of_2(channels)
    block_cv = triton.next_power_of_2(value_channels)
    block_l = max(16, min(128, _TILE_ELEMENTS // max(block_c, block_cv)))
    meta = {
        "BLOCK_C": block_c,
        "BLOCK_CV": block_cv,
        "BLOCK_L": block_l,
        "num_warps": 8 if block_l * block_c >= 4096 else 4,
    }
    return meta, (triton.cdiv(length, block_l), batch)


def _accumulator(dtype: torch.dtype) -> tl.dtype:
    return tl.float64 if dtype == torch.float64 else tl.float32


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
    acc = _accumulator(q.dtype)
    out = new_buffer((batch, value_channels, length), v.dtype, q.device)
    lse = new_buffer((batch, length), torch.float64 if acc == tl.float64 else torch.float32, q.device)
    meta, grid = _launch_shape(channels, value_channels, length, batch)
    _forward_kernel[grid](
        q, k, v, bias, out, lse, length, channels, value_channels, dilation, log_valid, log_invalid,
        KERNEL_SIZE=bias.shape[0], ACC=acc, **meta,
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
    acc = _accumulator(q.dtype)
    meta, grid = _launch_shape(channels, value_channels, length, batch)
    probability = new_buffer((batch, kernel_size, length), lse.dtype, q.device)
    grad_logit = new_buffer((batch, kernel_size, length), lse.dtype, q.device)
    grad_bias_partial = new_buffer((batch * grid[0], kernel_size), lse.dtype, q.device)
    grad_q, grad_k = new_buffer(q.shape, q.dtype, q.device), new_buffer(k.shape, k.dtype, q.device)
    grad_v = new_buffer(v.shape, v.dtype, q.device)
    _backward_query_kernel[grid](
        q, k, v, bias, grad_out, lse, probability, grad_logit, grad_q, grad_bias_partial,
        length, channels, value_channels, dilation, log_valid, log_invalid,
        KERNEL_SIZE=kernel_size, TAPS=triton.next_power_of_2(kernel_size), ACC=acc, **meta,
    )  # fmt: skip
    _backward_key_kernel[grid](
        q, grad_out, probability, grad_logit, grad_k, grad_v, length, channels, value_channels, dilation,
        KERNEL_SIZE=kernel_size, ACC=acc, **meta,
    )  # fmt: skip
    return grad_q, grad_k, grad_v, grad_bias_partial.sum(dim=0)
