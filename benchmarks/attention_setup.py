"""What the attention scripts share: the problem's options, its random tensors and the implementations.

Used by bench_attention.py (correctness and speed), bench_attention_memory.py and tune_attention.py.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
from collections.abc import Callable

import torch

from actfusion_sdk.runtime import resolve_device as resolved

DEFAULT_DILATIONS = ",".join(str(2**i) for i in range(12))
CUDA_IMPLS = "triton,reference,compiled,flex"
CPU_IMPLS = ("reference", "torch")
Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def add_problem_arguments(parser: argparse.ArgumentParser, *, devices: bool = True) -> None:
    """The problem size and dtype (and the device, unless the script is CUDA-only)."""
    if devices:
        parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--kernel-size", type=int, default=5)
    parser.add_argument("--dilations", default=DEFAULT_DILATIONS, help="comma-separated")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="CUDA dtype")


def resolve_device(requested: str) -> str:
    """'auto' -> cuda when available; on CPU the Triton kernels run in the interpreter."""
    device = resolved(None if requested == "auto" else requested).type
    if device == "cpu":
        # The interpreter flag is read when triton's jit decorators run, i.e. before the kernels import.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    return device


def dilations(args: argparse.Namespace) -> list[int]:
    return [int(d) for d in args.dilations.split(",")]


def dtype_of(args: argparse.Namespace) -> torch.dtype:
    return torch.float32 if args.dtype == "fp32" else torch.bfloat16


def random_problem(
    shape: tuple[int, ...], dtype: torch.dtype, device: str, seed: int
) -> tuple[torch.Tensor, ...]:
    """q, k, v, bias of shape (batch, C, Cv, L, dilation, K), leaves that require gradients."""
    batch, channels, value_channels, length, _, kernel_size = shape
    generator = torch.Generator().manual_seed(seed)
    tensors = (
        torch.randn(batch, channels, length, generator=generator) * 2,
        torch.randn(batch, channels, length, generator=generator),
        torch.randn(batch, value_channels, length, generator=generator),
        torch.randn(kernel_size, generator=generator) * 3,
    )
    return tuple(t.to(device=device, dtype=dtype).requires_grad_(True) for t in tensors)


def cpu_problem(args: argparse.Namespace) -> tuple[torch.Tensor, ...]:
    """q, k, v, bias of the options' size in fp32 on the CPU, without gradients."""
    shape = (args.batch, args.channels, args.channels, args.length, 1, args.kernel_size)
    return tuple(t.detach() for t in random_problem(shape, torch.float32, "cpu", 0))


def cuda_problem(
    args: argparse.Namespace,
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, list[torch.Tensor]]:
    """(q, k, v, bias) without gradients, an upstream gradient, and copies of (q, k, v, bias) as leaves."""
    dtype = dtype_of(args)
    generator = torch.Generator(device="cuda").manual_seed(0)
    shape = (args.batch, args.channels, args.length)
    q, k, v, upstream = (
        torch.randn(shape, device="cuda", generator=generator, dtype=dtype) for _ in range(4)
    )
    bias = torch.randn(args.kernel_size, device="cuda", generator=generator, dtype=dtype)
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v, bias)]
    return (q, k, v, bias), upstream, leaves


def implementations(names: list[str], dilation: int, kernel_size: int) -> dict[str, Attention]:
    """The named implementations at one dilation: triton, torch, reference, compiled (reference), flex."""
    from actfusion_sdk.model.attention import dilated_attention, reference_dilated_attention

    def seam(impl: str) -> Attention:
        return lambda q, k, v, b: dilated_attention(q, k, v, b, dilation, kernel_size, impl=impl)

    def reference(q, k, v, b):
        return reference_dilated_attention(q, k, v, b, dilation, kernel_size)

    def compiled(q, k, v, b):
        return compiled_reference()(q, k, v, b, dilation, kernel_size)

    table = {"triton": seam("triton"), "torch": seam("torch"), "reference": reference, "compiled": compiled}
    if "flex" in names:  # built only when asked: it imports and wraps FlexAttention
        table["flex"] = flex_attention_op(dilation, kernel_size)
    return {name: table[name] for name in names}


@functools.cache
def compiled_reference() -> Callable:
    """torch.compile(reference) once per process, dynamic so one graph serves every dilation."""
    from actfusion_sdk.model.attention import reference_dilated_attention

    return torch.compile(reference_dilated_attention, dynamic=True)


def flex_attention_op(dilation: int, kernel_size: int, compile_flex: bool = True) -> Attention:
    """The op in FlexAttention: K/V zero-padded by P = d·(K//2) on both sides so out-of-range taps exist as
    real zero keys (they must stay in the softmax denominator, spec §2), a mask keeping the K dilated taps,
    and a score_mod adding bias_j/sqrt(C) plus the log-mask term. Pays the padded copies and a [B, 1, L, C]
    transpose; scores of masked-out positions inside a 128x128 block are still computed."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    from actfusion_sdk.model.attention import log_mask_terms

    compiled = torch.compile(flex_attention) if compile_flex else flex_attention
    half = kernel_size // 2
    pad = half * dilation
    log_invalid, log_valid = log_mask_terms()
    cache = {}

    def run(q, k, v, bias):
        batch, channels, length = q.shape
        if length not in cache:

            def tap_mask(b, h, q_idx, kv_idx):
                offset = kv_idx - q_idx
                return (offset >= 0) & (offset <= 2 * pad) & (offset % dilation == 0)

            cache[length] = create_block_mask(tap_mask, None, None, length, length + 2 * pad, device=q.device)
        tap_bias = bias / math.sqrt(channels)

        def add_bias(score, b, h, q_idx, kv_idx):
            # score_mod also runs on masked-out pairs inside a block: clamp so the bias lookup stays in range.
            tap = torch.clamp((kv_idx - q_idx) // dilation, 0, kernel_size - 1)
            key = q_idx + (tap - half) * dilation
            in_range = (key >= 0) & (key < length)
            return score + tap_bias[tap] + torch.where(in_range, log_valid, log_invalid)

        padded = [torch.nn.functional.pad(t, (pad, pad)).transpose(1, 2)[:, None] for t in (k, v)]
        out = compiled(q.transpose(1, 2)[:, None], *padded, score_mod=add_bias, block_mask=cache[length])
        return out[:, 0].transpose(1, 2)

    return run
