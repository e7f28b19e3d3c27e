"""Benchmark and correctness sweep of the dilated-attention implementations (issue 3).

On CUDA: correctness of the Triton kernels in fp32/bf16 with gradients, then forward and forward+backward
time (triton.testing.do_bench, median) of triton vs reference vs torch.compile(reference) vs FlexAttention,
achieved GB/s against a device-to-device copy measured in the same run (minimum bytes: Q, K, V read once,
output written once) and peak memory. On CPU: the Triton interpreter correctness sweep and torch vs reference
time and peak memory.
`--compile-report` compiles the kernels offline for sm_90a (no GPU needed) and prints registers and spills.
Writes a markdown table to stdout and, when $OUT is set, to $OUT/attention.md.

    python benchmarks/bench_attention.py --device cuda --batch 4 --channels 256 --length 16384
    python benchmarks/bench_attention.py --device cpu --batch 1 --channels 256 --length 4096
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

DEFAULT_DILATIONS = ",".join(str(2**i) for i in range(12))
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
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--kernel-size", type=int, default=5)
    parser.add_argument("--dilations", default=DEFAULT_DILATIONS, help="comma-separated")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32", help="benchmark dtype (CUDA)")
    parser.add_argument(
        "--impls",
        default="triton,reference,compiled,flex",
        help="CUDA implementations to time, comma-separated",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the correctness sweep")
    parser.add_argument("--tune", action="store_true", help="CUDA: time launch configurations instead")
    parser.add_argument(
        "--compile-report", action="store_true", help="offline sm_90a compile: registers/spills"
    )
    parser.add_argument("--repeats", type=int, default=3, help="CPU timing repeats (median)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def emit(lines: list[str], name: str) -> None:
    """Print report lines and append them to $OUT/<name> when OUT is set."""
    text = "\n".join(lines)
    print(text, flush=True)
    if os.environ.get("OUT"):
        with open(Path(os.environ["OUT"]) / name, "a") as handle:
            handle.write(text + "\n")


def random_problem(
    shape: tuple[int, ...], dtype: torch.dtype, device: str, seed: int
) -> tuple[torch.Tensor, ...]:
    batch, channels, value_channels, length, _, kernel_size = shape
    generator = torch.Generator().manual_seed(seed)
    tensors = (
        torch.randn(batch, channels, length, generator=generator) * 2,
        torch.randn(batch, channels, length, generator=generator),
        torch.randn(batch, value_channels, length, generator=generator),
        torch.randn(kernel_size, generator=generator) * 3,
    )
    return tuple(t.to(device=device, dtype=dtype).requires_grad_(True) for t in tensors)


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


# ----------------------------------------------------------------------------------------------------- CUDA


def flex_attention_op(dilation: int, kernel_size: int, compile_flex: bool = True) -> Callable:
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


def cuda_implementations(names: list[str], dilation: int, kernel_size: int) -> dict[str, Callable]:
    from actfusion_sdk.model.attention import dilated_attention, reference_dilated_attention

    table = {
        "triton": lambda q, k, v, b: dilated_attention(q, k, v, b, dilation, kernel_size, impl="triton"),
        "reference": lambda q, k, v, b: reference_dilated_attention(q, k, v, b, dilation, kernel_size),
    }
    if "compiled" in names:
        compiled = compiled_reference()
        table["compiled"] = lambda q, k, v, b: compiled(q, k, v, b, dilation, kernel_size)
    if "flex" in names:
        table["flex"] = flex_attention_op(dilation, kernel_size)
    return {name: table[name] for name in names}


@functools.cache
def compiled_reference() -> Callable:
    """torch.compile(reference) once per process, dynamic so one graph serves every dilation."""
    from actfusion_sdk.model.attention import reference_dilated_attention

    return torch.compile(reference_dilated_attention, dynamic=True)


def copy_bandwidth() -> float:
    """Device-to-device copy GB/s (bytes read + written) of a 2 GiB buffer, do_bench median."""
    import triton.testing

    source = torch.randn(2**29, device="cuda")
    target = torch.empty_like(source)
    milliseconds = triton.testing.do_bench(lambda: target.copy_(source), return_mode="median")
    return 2 * source.numel() * 4 / milliseconds / 1e6


def peak_memory(fn: Callable[[], object]) -> float:
    """Extra CUDA memory (MiB) at the peak of one call, above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def cuda_benchmark(args: argparse.Namespace) -> None:
    """One row per (dilation, implementation), emitted as it is measured; totals at the end."""
    import triton.testing

    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    names = args.impls.split(",")
    batch, channels, length, kernel_size = args.batch, args.channels, args.length, args.kernel_size
    element = torch.finfo(dtype).bits // 8
    minimum_bytes = 4 * batch * channels * length * element  # Q, K, V read once, output written once
    bandwidth = copy_bandwidth()
    emit(
        [
            f"### Dilated attention on {torch.cuda.get_device_name()}: B={batch}, C={channels}, L={length}, "
            f"K={kernel_size}, {args.dtype}; copy bandwidth {bandwidth:.0f} GB/s; "
            f"minimum bytes {minimum_bytes / 1e6:.0f} MB; times are do_bench medians",
            "",
            "| d | impl | fwd ms | fwd GB/s | % copy | fwd / first impl | fwd+bwd ms | fwd+bwd / first impl "
            "| fwd peak MiB | fwd+bwd peak MiB | rel err vs first impl |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ],
        "attention.md",
    )
    generator = torch.Generator(device="cuda").manual_seed(0)
    shape = (batch, channels, length)
    q, k, v, upstream = (
        torch.randn(shape, device="cuda", generator=generator, dtype=dtype) for _ in range(4)
    )
    bias = torch.randn(kernel_size, device="cuda", generator=generator, dtype=dtype)
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v, bias)]
    totals: dict[str, list[float]] = {}
    for dilation in [int(d) for d in args.dilations.split(",")]:
        first: tuple[torch.Tensor, float, float] | None = None
        for name, fn in cuda_implementations(names, dilation, kernel_size).items():

            def forward_backward(fn=fn):
                fn(*leaves).backward(upstream)

            try:
                with torch.no_grad():
                    out = fn(q, k, v, bias)
                    forward_ms = triton.testing.do_bench(
                        lambda fn=fn: fn(q, k, v, bias), return_mode="median"
                    )
                    forward_peak = peak_memory(lambda fn=fn: fn(q, k, v, bias))
                both_ms = triton.testing.do_bench(forward_backward, grad_to_none=leaves, return_mode="median")
                both_peak = peak_memory(forward_backward)
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
                f"{forward_ms / first[1]:.1f} | {both_ms:.3f} | {both_ms / first[2]:.1f} | "
                f"{forward_peak:.0f} | {both_peak:.0f} | {error:.1e} |"
            )
            emit([row], "attention.md")
    lines = ["", "| impl | sum fwd ms | sum fwd+bwd ms | worst % copy |", "|---|---|---|---|"]
    lines += [f"| {name} | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.0f}% |" for name, t in totals.items()]
    emit([*lines, ""], "attention.md")


def tune_launch(args: argparse.Namespace) -> None:
    """Time forward and forward+backward of the Triton path for alternative launch configurations.

    Each row also gives the forward's max relative error against the torch path, so a faster configuration
    is known to compute the same function; rows print as they are measured (a timeout keeps them).
    """
    import triton.testing

    from actfusion_sdk.kernels import dilated_attention as kernels
    from actfusion_sdk.model.attention import dilated_attention

    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    shape = (args.batch, args.channels, args.length)
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, upstream = (
        torch.randn(shape, device="cuda", generator=generator, dtype=dtype) for _ in range(4)
    )
    bias = torch.randn(args.kernel_size, device="cuda", generator=generator, dtype=dtype)
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v, bias)]
    defaults = dict(kernels.LAUNCH_DEFAULTS)
    dilations = [int(d) for d in args.dilations.split(",")]
    dilations = sorted({dilations[0], dilations[-1]})
    with torch.no_grad():
        expected = {
            d: dilated_attention(q, k, v, bias, d, args.kernel_size, impl="torch").float() for d in dilations
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
    seen = set()
    try:
        for config in configs:
            if config in seen:
                continue
            seen.add(config)
            block_l, block_c, warps, stages = config
            kernels.LAUNCH_DEFAULTS.update(
                BLOCK_L=block_l, BLOCK_C=block_c, num_warps=warps, num_stages=stages
            )
            for dilation in dilations:

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


# ------------------------------------------------------------------------------------------------------ CPU


def resident_mib(field: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def cpu_memory_child(args: argparse.Namespace) -> None:
    """Child process: peak RSS growth (MiB) of one implementation over all dilations, as JSON on stdout.

    Uses VmHWM after resetting it through /proc/self/clear_refs: ru_maxrss would carry the parent's peak,
    since Linux keeps it across exec."""
    from actfusion_sdk.model.attention import dilated_attention

    torch.set_num_threads(1)
    q, k, v, bias = (t.detach() for t in random_problem(cpu_shape(args, 1), torch.float32, "cpu", 0))
    Path("/proc/self/clear_refs").write_text("5")
    before = resident_mib("VmRSS")
    for dilation in [int(d) for d in args.dilations.split(",")]:
        dilated_attention(q, k, v, bias, dilation, args.kernel_size, impl=args.memory_child)
    print(json.dumps({"peak_mib": resident_mib("VmHWM") - before}))


def cpu_shape(args: argparse.Namespace, dilation: int) -> tuple[int, ...]:
    return (args.batch, args.channels, args.channels, args.length, dilation, args.kernel_size)


def cpu_peak_memory(args: argparse.Namespace, impl: str) -> float:
    command = [sys.executable, __file__, "--memory-child", impl, "--batch", str(args.batch)]
    command += ["--channels", str(args.channels), "--length", str(args.length)]
    command += ["--kernel-size", str(args.kernel_size), "--dilations", args.dilations]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"]


def cpu_benchmark(args: argparse.Namespace) -> None:
    from actfusion_sdk.model.attention import dilated_attention

    torch.set_num_threads(1)
    q, k, v, bias = (t.detach() for t in random_problem(cpu_shape(args, 1), torch.float32, "cpu", 0))
    lines = [
        f"### torch vs reference on CPU (1 thread): B={args.batch}, C={args.channels}, L={args.length}, "
        f"K={args.kernel_size}, fp32, median of {args.repeats}",
        "",
        "| d | reference ms | torch ms | speed-up | max abs diff |",
        "|---|---|---|---|---|",
    ]
    totals = {"reference": 0.0, "torch": 0.0}
    for dilation in [int(d) for d in args.dilations.split(",")]:
        times, outputs = {}, {}
        for impl in totals:
            samples = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                outputs[impl] = dilated_attention(q, k, v, bias, dilation, args.kernel_size, impl=impl)
                samples.append(1e3 * (time.perf_counter() - start))
            times[impl] = statistics.median(samples)
            totals[impl] += times[impl]
        diff = (outputs["torch"] - outputs["reference"]).abs().max().item()
        lines.append(
            f"| {dilation} | {times['reference']:.1f} | {times['torch']:.1f} | "
            f"{times['reference'] / times['torch']:.1f}x | {diff:.1e} |"
        )
    peaks = {impl: cpu_peak_memory(args, impl) for impl in totals}
    lines += [
        "",
        f"Sum over dilations: reference {totals['reference']:.0f} ms, torch {totals['torch']:.0f} ms "
        f"({totals['reference'] / totals['torch']:.1f}x faster). Peak RSS growth: reference "
        f"{peaks['reference']:.0f} MiB, torch {peaks['torch']:.0f} MiB"
        + (
            f" ({peaks['reference'] / peaks['torch']:.1f}x less)."
            if peaks["torch"] >= 1
            else " (too small to tell)."
        ),
    ]
    emit([*lines, ""], "attention.md")


# -------------------------------------------------------------------------------------------- compile report


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
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.compile_report:
        # The interpreter flag is read when triton's jit decorators run, i.e. before the kernels import.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    if args.memory_child:
        cpu_memory_child(args)
        return 0
    ok = True
    if args.compile_report:
        compile_report(args)
    elif device == "cuda" and args.tune:
        tune_launch(args)
    elif device == "cuda":
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
