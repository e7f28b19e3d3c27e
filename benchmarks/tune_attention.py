"""Launch configuration of the Triton dilated-attention kernels (issue 3).

On CUDA: forward and forward+backward time (do_bench median) of alternative launch configurations
(BLOCK_L, BLOCK_C, warps, stages) at the first and last dilation given, each with its error against the
torch path; table to $OUT/attention_tune.md. `--compile-report` instead compiles every kernel offline for
sm_90a (no GPU needed) with the launch configuration the problem size gets, and prints registers and
spills; table to $OUT/attention.md.

    python benchmarks/tune_attention.py --batch 4 --channels 256 --length 16384 --dilations 1,2048
    python benchmarks/tune_attention.py --compile-report
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from attention_setup import add_problem_arguments, cuda_problem, dilations
from harness import emit


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_problem_arguments(parser, devices=False)
    parser.add_argument(
        "--compile-report", action="store_true", help="offline sm_90a compile: registers/spills"
    )
    return parser.parse_args(argv)


def tune_launch(args: argparse.Namespace) -> None:
    """Time forward and forward+backward of the Triton path for alternative launch configurations.

    Each row also gives the forward's max relative error against the torch path, so a faster configuration
    is known to compute the same function; rows print as they are measured (a timeout keeps them).
    """
    import triton.testing

    from actfusion_sdk.kernels import dilated_attention as kernels
    from actfusion_sdk.model.attention import dilated_attention

    (q, k, v, bias), upstream, leaves = cuda_problem(args)
    defaults = dict(kernels.LAUNCH_DEFAULTS)
    chosen = dilations(args)
    chosen = sorted({chosen[0], chosen[-1]})
    with torch.no_grad():
        expected = {
            d: dilated_attention(q, k, v, bias, d, args.kernel_size, impl="torch").float() for d in chosen
        }
    header = [
        f"### Launch configurations: B={args.batch}, C={args.channels}, L={args.length}, "
        f"K={args.kernel_size}, {args.dtype} (defaults {defaults}; stages '-' = triton's default)",
        "",
        "| BLOCK_L | BLOCK_C | warps | stages | d | fwd ms | fwd+bwd ms | fwd max rel err |",
        "|---|---|---|---|---|---|---|---|",
    ]
    emit(header, "attention_tune.md")
    configs = [(64, 32, 4, None)]  # today's defaults first
    configs += [(bl, bc, w, None) for bl in (32, 64, 128) for bc in (32, 64) for w in (4, 8)]
    configs += [(64, 32, 4, 1), (64, 32, 4, 4), (32, 64, 4, 4), (128, 32, 8, 4)]
    try:
        for block_l, block_c, warps, stages in dict.fromkeys(configs):
            kernels.LAUNCH_DEFAULTS.update(
                BLOCK_L=block_l, BLOCK_C=block_c, num_warps=warps, num_stages=stages
            )
            for dilation in chosen:

                def run(*tensors, dilation=dilation):
                    return dilated_attention(*tensors, dilation, args.kernel_size, impl="triton")

                with torch.no_grad():
                    out = run(q, k, v, bias).float()
                    error = float((out - expected[dilation]).abs().max() / expected[dilation].abs().max())
                    forward_ms = triton.testing.do_bench(
                        lambda run=run: run(q, k, v, bias), warmup=10, rep=40, return_mode="median"
                    )
                both_ms = triton.testing.do_bench(
                    lambda run=run: run(*leaves).backward(upstream),
                    warmup=10,
                    rep=40,
                    grad_to_none=leaves,
                    return_mode="median",
                )
                emit(
                    [
                        f"| {block_l} | {block_c} | {warps} | {stages or '-'} | {dilation} "
                        f"| {forward_ms:.3f} | {both_ms:.3f} | {error:.1e} |"
                    ],
                    "attention_tune.md",
                )
    finally:
        kernels.LAUNCH_DEFAULTS.update(defaults)
    emit([""], "attention_tune.md")


def kernel_signature(fn, pointer_type: str) -> dict[str, str]:
    """Offline-compile signature from the kernels' naming: *_ptr pointers, log_* floats, CAPS constexpr."""
    signature = {}
    for name in fn.arg_names:
        if name.endswith("_ptr"):
            signature[name] = pointer_type
        elif name.startswith("log_"):
            signature[name] = "fp32"
        else:
            signature[name] = "constexpr" if name.isupper() else "i32"
    return signature


def compile_report(args: argparse.Namespace) -> None:
    """Compile every kernel for sm_90a with the benchmark's launch configuration; ptxas -v resources."""
    import triton
    from triton.backends.compiler import GPUTarget

    from actfusion_sdk.kernels import dilated_attention as kernels

    meta = kernels.launch_config(args.channels, args.channels, args.length, args.batch, args.kernel_size)
    meta.pop("grid")
    num_warps = meta.pop("num_warps")
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    lines = [
        f"### Offline sm_90a compile (triton {triton.__version__}): C={args.channels}, K={args.kernel_size}, "
        f"{meta}, num_warps={num_warps}",
        "",
        "| kernel | dtype | registers | spill stores | spill loads |",
        "|---|---|---|---|---|",
    ]
    for fn in (kernels._forward_kernel, kernels._backward_query_kernel, kernels._backward_key_kernel):
        for dtype in ("fp32", "bf16"):
            constants = {"ACC": triton.language.float32, **meta}
            source = triton.compiler.ASTSource(fn, kernel_signature(fn, f"*{dtype}"), constants)
            compiled = triton.compile(
                source, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps}
            )
            with tempfile.NamedTemporaryFile("w", suffix=".ptx") as ptx:
                ptx.write(compiled.asm["ptx"])
                ptx.flush()
                report = subprocess.run(
                    [str(ptxas), "-arch=sm_90a", "-v", ptx.name, "-o", os.devnull],
                    capture_output=True,
                    text=True,
                ).stderr
            registers = re.search(r"Used (\d+) registers", report)
            stores = re.search(r"(\d+) bytes spill stores", report)
            loads = re.search(r"(\d+) bytes spill loads", report)
            found = [m.group(1) if m else "?" for m in (registers, stores, loads)]
            lines.append(f"| {fn.__name__} | {dtype} | {' | '.join(found)} |")
    emit([*lines, ""], "attention.md")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compile_report:
        compile_report(args)
    elif torch.cuda.is_available():
        tune_launch(args)
    else:
        print("tune_attention.py times launch configurations on CUDA; without a GPU use --compile-report")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
