"""Peak memory of the dilated-attention implementations (issue 3).

On CUDA: the extra memory allocated at the peak of one forward and of one forward+backward, per dilation
and implementation (after one warm-up call each). On CPU: the peak RSS growth of one pass over all
dilations, torch vs reference, each in a fresh process on one thread (torch's CPU allocator keeps no
statistics; RSS sees every allocation that touches memory).
Writes a markdown table to stdout and, when $OUT is set, to $OUT/attention.md.

    python benchmarks/bench_attention_memory.py --device cuda --batch 4 --channels 256 --length 16384
    python benchmarks/bench_attention_memory.py --device cpu --batch 1 --channels 256 --length 4096
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from attention_setup import (
    CPU_IMPLS,
    CUDA_IMPLS,
    add_problem_arguments,
    cpu_problem,
    cuda_problem,
    dilations,
    implementations,
    resolve_device,
)
from harness import emit, peak_rss, reply_to_parent, run_child

MIB = 2**20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_problem_arguments(parser)
    parser.add_argument("--impls", default=CUDA_IMPLS, help="CUDA implementations, comma-separated")
    parser.add_argument("--cpu-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def cuda_peak_mib(fn: Callable[[], object]) -> float:
    """Extra CUDA memory (MiB) at the peak of one call, above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / MIB


def cuda_memory(args: argparse.Namespace) -> None:
    """One row per (dilation, implementation), emitted as it is measured."""
    emit(
        [
            f"### Dilated attention peak memory on {torch.cuda.get_device_name()}: B={args.batch}, "
            f"C={args.channels}, L={args.length}, K={args.kernel_size}, {args.dtype}; MiB above the inputs",
            "",
            "| d | impl | fwd peak MiB | fwd+bwd peak MiB |",
            "|---|---|---|---|",
        ],
        "attention.md",
    )
    (q, k, v, bias), upstream, leaves = cuda_problem(args)
    for dilation in dilations(args):
        for name, fn in implementations(args.impls.split(","), dilation, args.kernel_size).items():

            def forward(fn=fn) -> None:
                with torch.no_grad():
                    fn(q, k, v, bias)

            def forward_backward(fn=fn) -> None:
                fn(*leaves).backward(upstream)

            try:
                # Warm-up: compilation and workspaces stay out of the peaks, and the gradients exist, so the
                # peak counts the backward's own work rather than the gradients' first allocation.
                forward()
                forward_backward()
                peaks = cuda_peak_mib(forward), cuda_peak_mib(forward_backward)
            except Exception as failure:  # a baseline that cannot run (e.g. FlexAttention limits) is a row
                emit(
                    [f"| {dilation} | {name} | failed: {type(failure).__name__}: {str(failure)[:150]} |"],
                    "attention.md",
                )
                continue
            emit([f"| {dilation} | {name} | {peaks[0]:.0f} | {peaks[1]:.0f} |"], "attention.md")
    emit([""], "attention.md")


def cpu_child(args: argparse.Namespace) -> None:
    """In a fresh process: peak RSS growth of one implementation over all dilations."""
    torch.set_num_threads(1)
    q, k, v, bias = cpu_problem(args)
    passes = [implementations([args.cpu_child], d, args.kernel_size)[args.cpu_child] for d in dilations(args)]
    with peak_rss() as memory:
        for attention in passes:
            attention(q, k, v, bias)
    reply_to_parent({"growth_mib": memory.growth / MIB})


def cpu_memory(args: argparse.Namespace) -> None:
    problem = ["--batch", str(args.batch), "--channels", str(args.channels), "--length", str(args.length)]
    problem += ["--kernel-size", str(args.kernel_size), "--dilations", args.dilations, "--device", "cpu"]
    peaks = {impl: run_child(__file__, [*problem, "--cpu-child", impl])["growth_mib"] for impl in CPU_IMPLS}
    lines = [
        f"### torch vs reference peak RSS on CPU (1 thread, fresh process each): B={args.batch}, "
        f"C={args.channels}, L={args.length}, K={args.kernel_size}, fp32, dilations {args.dilations}",
        "",
        f"Peak RSS growth: reference {peaks['reference']:.0f} MiB, torch {peaks['torch']:.0f} MiB"
        + (
            f" ({peaks['reference'] / peaks['torch']:.1f}x less)."
            if peaks["torch"] >= 1
            else " (too small to tell)."
        ),
    ]
    emit([*lines, ""], "attention.md")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    if args.cpu_child:
        cpu_child(args)
    elif device == "cuda":
        cuda_memory(args)
    else:
        cpu_memory(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
