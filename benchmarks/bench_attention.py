"""Speed of the dilated-attention implementations, after a correctness sweep (issue 3).

On CUDA: correctness of the Triton kernels in fp32/bf16 with gradients, then forward and forward+backward
time (triton.testing.do_bench, median) of triton vs reference vs torch.compile(reference) vs FlexAttention,
with achieved GB/s against a device-to-device copy measured in the same run (minimum bytes: Q, K, V read
once, output written once). On CPU: the Triton interpreter correctness sweep and torch vs reference time.
Memory is bench_attention_memory.py's question, launch configurations tune_attention.py's.
Writes a markdown table to stdout and, when $OUT is set, to $OUT/attention.md.

    python benchmarks/bench_attention.py --device cuda --batch 4 --channels 256 --length 16384
    python benchmarks/bench_attention.py --device cpu --batch 1 --channels 256 --length 4096
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings

import torch
from attention_setup import (
    CPU_IMPLS,
    CUDA_IMPLS,
    add_problem_arguments,
    cpu_problem,
    cuda_problem,
    dilations,
    dtype_of,
    flex_attention_op,
    implementations,
    random_problem,
    resolve_device,
)
from harness import emit, repeated_seconds

# Random shapes of the correctness sweep: (batch, C, Cv, L, dilation, K); odd L, L < dilation, C not 2^n.
SWEEP_SHAPES = [
    (2, 7, 7, 41, 8, 5),
    (3, 10, 6, 17, 32, 9),
    (1, 24, 24, 200, 1, 3),
    (2, 5, 9, 13, 3, 7),
    (1, 256, 256, 301, 64, 5),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_problem_arguments(parser)
    parser.add_argument("--impls", default=CUDA_IMPLS, help="CUDA implementations to time, comma-separated")
    parser.add_argument("--no-check", action="store_true", help="skip the correctness sweep")
    parser.add_argument("--repeats", type=int, default=3, help="CPU timing repeats (median)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------- correctness


def relative_errors(shape: tuple[int, ...], dtype: torch.dtype, device: str, seed: int) -> list[float]:
    """Relative L2 error of out, dq, dk, dv, dbias of impl='triton' vs the float64 reference."""
    from actfusion_sdk.model.attention import dilated_attention, reference_dilated_attention

    dilation, kernel_size = shape[4], shape[5]
    inputs = random_problem(shape, dtype, device, seed)
    inputs64 = tuple(t.detach().double().requires_grad_(True) for t in inputs)
    out = dilated_attention(*inputs, dilation, kernel_size, impl="triton")
    expected = reference_dilated_attention(*inputs64, dilation, kernel_size)
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    upstream = upstream.to(device)
    grads = torch.autograd.grad(out, inputs, upstream.to(dtype))
    grads64 = torch.autograd.grad(expected, inputs64, upstream)
    return [
        ((got.double() - want).norm() / want.norm()).item()
        for got, want in zip((out, *grads), (expected, *grads64), strict=True)
    ]


def correctness_sweep(device: str, dtypes: list[torch.dtype]) -> bool:
    """Triton forward and gradients vs float64 reference; fp32 limits 1e-5/1e-4, bf16/fp16 1e-2."""
    lines = [
        f"### Triton correctness vs float64 reference ({device}, relative L2 error)",
        "",
        "| dtype | B, C, Cv, L, d, K | out | dq | dk | dv | dbias | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    all_ok = True
    for dtype in dtypes:
        limits = (1e-5, 1e-4) if dtype in (torch.float32, torch.float64) else (1e-2, 1e-2)
        for seed, shape in enumerate(SWEEP_SHAPES):
            errors = relative_errors(shape, dtype, device, seed)
            ok = errors[0] <= limits[0] and all(e <= limits[1] for e in errors[1:])
            all_ok &= ok
            cells = " | ".join(f"{e:.1e}" for e in errors)
            lines.append(f"| {str(dtype)[6:]} | {shape} | {cells} | {'yes' if ok else 'NO'} |")
    emit([*lines, ""], "attention.md")
    return all_ok


def flex_formulation_check() -> bool:
    """FlexAttention, eager on CPU, vs the reference at a small size: the formulation the GPU run times."""
    from actfusion_sdk.model.attention import reference_dilated_attention

    lines = [
        "### FlexAttention formulation (eager, CPU) vs reference",
        "",
        "| d | max abs diff |",
        "|---|---|",
    ]
    ok = True
    for dilation in (1, 16, 64):
        q, k, v, bias = (
            t.detach() for t in random_problem((1, 16, 16, 100, dilation, 5), torch.float32, "cpu", 1)
        )
        with warnings.catch_warnings():  # eager flex_attention warns that it is meant to be compiled
            warnings.simplefilter("ignore")
            out = flex_attention_op(dilation, 5, compile_flex=False)(q, k, v, bias)
        diff = (out - reference_dilated_attention(q, k, v, bias, dilation, 5)).abs().max().item()
        ok &= diff <= 1e-5
        lines.append(f"| {dilation} | {diff:.1e} |")
    emit([*lines, ""], "attention.md")
    return ok


# ----------------------------------------------------------------------------------------------------- CUDA


def copy_bandwidth() -> float:
    """Device-to-device copy GB/s (bytes read + written) of a 2 GiB buffer, do_bench median."""
    import triton.testing

    source = torch.randn(2**29, device="cuda")
    target = torch.empty_like(source)
    milliseconds = triton.testing.do_bench(lambda: target.copy_(source), return_mode="median")
    return 2 * source.numel() * 4 / milliseconds / 1e6


def cuda_benchmark(args: argparse.Namespace) -> None:
    """One row per (dilation, implementation), emitted as it is measured; totals at the end."""
    import triton.testing

    batch, channels, length, kernel_size = args.batch, args.channels, args.length, args.kernel_size
    element = torch.finfo(dtype_of(args)).bits // 8
    minimum_bytes = 4 * batch * channels * length * element  # Q, K, V read once, output written once
    bandwidth = copy_bandwidth()
    emit(
        [
            f"### Dilated attention on {torch.cuda.get_device_name()}: B={batch}, C={channels}, L={length}, "
            f"K={kernel_size}, {args.dtype}; copy bandwidth {bandwidth:.0f} GB/s; "
            f"minimum bytes {minimum_bytes / 1e6:.0f} MB; times are do_bench medians",
            "",
            "| d | impl | fwd ms | fwd GB/s | % copy | fwd / first impl | fwd+bwd ms | fwd+bwd / first impl "
            "| rel err vs first impl |",
            "|---|---|---|---|---|---|---|---|---|",
        ],
        "attention.md",
    )
    (q, k, v, bias), upstream, leaves = cuda_problem(args)
    totals: dict[str, list[float]] = {}
    for dilation in dilations(args):
        first: tuple[torch.Tensor, float, float] | None = None
        for name, fn in implementations(args.impls.split(","), dilation, kernel_size).items():
            try:
                with torch.no_grad():
                    out = fn(q, k, v, bias)
                    forward_ms = triton.testing.do_bench(
                        lambda fn=fn: fn(q, k, v, bias), return_mode="median"
                    )
                both_ms = triton.testing.do_bench(
                    lambda fn=fn: fn(*leaves).backward(upstream), grad_to_none=leaves, return_mode="median"
                )
            except Exception as failure:  # a baseline that cannot run (e.g. FlexAttention limits) is a row
                emit(
                    [f"| {dilation} | {name} | failed: {type(failure).__name__}: {str(failure)[:150]} |"],
                    "attention.md",
                )
                continue
            first = first or (out.float(), forward_ms, both_ms)
            error = ((out.float() - first[0]).norm() / first[0].norm()).item()
            gbps = minimum_bytes / forward_ms / 1e6
            total = totals.setdefault(name, [0.0, 0.0, 100.0])
            total[0] += forward_ms
            total[1] += both_ms
            total[2] = min(total[2], 100 * gbps / bandwidth)
            row = (
                f"| {dilation} | {name} | {forward_ms:.3f} | {gbps:.0f} | {100 * gbps / bandwidth:.0f}% | "
                f"{forward_ms / first[1]:.1f} | {both_ms:.3f} | {both_ms / first[2]:.1f} | {error:.1e} |"
            )
            emit([row], "attention.md")
    lines = ["", "| impl | sum fwd ms | sum fwd+bwd ms | worst % copy |", "|---|---|---|---|"]
    lines += [f"| {name} | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.0f}% |" for name, t in totals.items()]
    emit([*lines, ""], "attention.md")


# ------------------------------------------------------------------------------------------------------ CPU


def cpu_benchmark(args: argparse.Namespace) -> None:
    """torch vs reference time per dilation on one thread (median of --repeats after one warm-up call)."""
    torch.set_num_threads(1)
    q, k, v, bias = cpu_problem(args)
    lines = [
        f"### torch vs reference on CPU (1 thread): B={args.batch}, C={args.channels}, L={args.length}, "
        f"K={args.kernel_size}, fp32, median of {args.repeats}",
        "",
        "| d | reference ms | torch ms | speed-up | max abs diff |",
        "|---|---|---|---|---|",
    ]
    totals = dict.fromkeys(CPU_IMPLS, 0.0)
    for dilation in dilations(args):
        times, outputs = {}, {}
        for name, fn in implementations(list(CPU_IMPLS), dilation, args.kernel_size).items():
            outputs[name] = fn(q, k, v, bias)  # also the warm-up call
            samples = repeated_seconds(lambda fn=fn: fn(q, k, v, bias), args.repeats, warmup=0)
            times[name] = 1e3 * statistics.median(samples)
            totals[name] += times[name]
        diff = (outputs["torch"] - outputs["reference"]).abs().max().item()
        lines.append(
            f"| {dilation} | {times['reference']:.1f} | {times['torch']:.1f} | "
            f"{times['reference'] / times['torch']:.1f}x | {diff:.1e} |"
        )
    lines += [
        "",
        f"Sum over dilations: reference {totals['reference']:.0f} ms, torch {totals['torch']:.0f} ms "
        f"({totals['reference'] / totals['torch']:.1f}x faster).",
    ]
    emit([*lines, ""], "attention.md")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    ok = True
    if device == "cuda":
        if not args.no_check:
            ok = correctness_sweep("cuda", [torch.float32, torch.bfloat16])
        cuda_benchmark(args)
    else:
        if not args.no_check:
            ok = correctness_sweep("cpu", [torch.float64, torch.float32, torch.bfloat16])
            ok &= flex_formulation_check()
        cpu_benchmark(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
