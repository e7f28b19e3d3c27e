"""CPU benchmark of the model core: the attention seam and whole-model segmentation (issue 2).

1. Attention, the seam's impl "torch" and the CPU kernel's attention alone ("cpu", when the C kernel builds)
   vs "reference": C in {64, 256}, K = 5,
   L in {1k, 4k, 16k}, one call per dilation 1, 2, ..., 2048 (summed). Time = best of --repeats; peak
   memory = the process's RSS high-water (VmHWM, reset through /proc/self/clear_refs) during one pass minus
   its RSS just before, in a fresh subprocess per configuration (torch's CPU allocator keeps no
   statistics; RSS sees every allocation that touches memory).
2. Whole-model segmentation (`segment`, random weights, random features), by default at the issue-17
   targets: breakfast at L = 2k and 10k frames and a whole 50salads video of 12k frames (8 streams of
   1.5k). Ours (attention "auto": on CPU the fused C kernel of actfusion_sdk.kernels.cpu, or the torch
   path where it cannot be built; cross projections cached across the 25 DDIM steps, unused encoder
   layers skipped, temporal-augmentation streams batched) and ours on the torch path (what runs without a
   C compiler) vs the official-equivalent path (reference attention, no caching, one stream at a time).
   After a warm-up call of each, the variants are timed in turn --model-repeats times and the best of
   each is kept, so a slow spell of a shared host hits all of them.
FLOPs follow the spec §2 formulas (a multiply-add = 2); each row counts the work that variant performs.
A float32 matmul rate is measured in the same run for scale.

    .venv/bin/python benchmarks/bench_model.py            # full run (several minutes on 2 cores)
    .venv/bin/python benchmarks/bench_model.py --quick    # reduced sizes, about a minute
"""

from __future__ import annotations

import argparse
import statistics

import torch
from harness import best_seconds, matmul_gflops, peak_rss, reply_to_parent, run_child, timed

from actfusion_sdk.kernels import cpu
from actfusion_sdk.kernels.engine import winograd_applies
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.attention import dilated_attention, log_mask_terms
from actfusion_sdk.model.config import PRESET_CLASSES, ActFusionConfig, preset
from actfusion_sdk.model.inference import sample_probs, seeded_generators, segment

DILATIONS = [2**i for i in range(12)]
KERNEL = 5


def attention_child(impl: str, channels: int, length: int, repeats: int) -> dict[str, float]:
    """Run in a fresh process: peak extra RSS of one pass over all dilations, then the best time."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, channels, length, generator=generator) for _ in range(3))
    bias = torch.randn(KERNEL, generator=generator)

    log_invalid, log_valid = log_mask_terms()

    def attend(dilation: int) -> torch.Tensor:
        if impl == "cpu":  # the C kernel's attention alone (the engine runs it fused with conv and norm)
            return cpu.attention(
                q, k, v, KERNEL, dilation, tap_bias=bias, log_valid=log_valid, log_invalid=log_invalid
            )
        return dilated_attention(q, k, v, bias, dilation, KERNEL, impl=impl)

    def one_pass() -> None:
        for dilation in DILATIONS:
            attend(dilation)

    with torch.inference_mode():
        with peak_rss() as memory:
            one_pass()
        seconds = best_seconds(one_pass, repeats, warmup=0)  # the measured pass above warmed up
    return {"seconds": seconds, "peak_bytes": memory.growth}


def attention_table(lengths: list[int], threads: int, repeats: int) -> None:
    print(f"## Attention seam (K={KERNEL}, dilations 1..2048 summed, batch 1, fp32, {threads} threads)\n")
    print("| C | L | impl | time s | GFLOP/s | peak MiB | speed-up | memory ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for channels in (64, 256):
        for length in lengths:
            results = {}
            for impl in (
                ("reference", "torch", "cpu") if cpu.unavailable_reason() is None else ("reference", "torch")
            ):
                child = [
                    "--attention-child",
                    f"{impl},{channels},{length},{repeats}",
                    "--threads",
                    str(threads),
                ]
                results[impl] = run_child(__file__, child)
            flops = 4 * channels * KERNEL * length * len(DILATIONS)  # spec §2: ≈ 4CKL per layer
            ref = results["reference"]
            for impl, result in results.items():
                speedup = ref["seconds"] / result["seconds"]
                ratio = ref["peak_bytes"] / max(result["peak_bytes"], 1)
                print(
                    f"| {channels} | {length} | {impl} | {result['seconds']:.3f} | "
                    f"{flops / result['seconds'] / 1e9:.1f} | {result['peak_bytes'] / 2**20:.1f} | "
                    f"{speedup:.2f}x | {ratio:.1f}x |"
                )
    print()


def conv_flops(channels: int, kernel_size: int, dilation: int, stream_length: int, winograd: bool) -> float:
    """FLOPs per frame of one layer's dilated conv: K C×C multiply-adds, or with `winograd` where the fused
    CPU path takes it (`winograd_applies`) α = K + 3 per tile of 4 outputs plus the
    input and output transforms, tiles padding the stream to a multiple of 4·d."""
    if not (winograd and winograd_applies(channels, kernel_size, dilation, stream_length)):
        return 2 * channels * channels * kernel_size
    points = kernel_size + cpu.WINOGRAD_OUTPUTS - 1
    per_tile = 2 * channels * channels * points + 2 * channels * points * (points + cpu.WINOGRAD_OUTPUTS)
    return per_tile * cpu.winograd_tiles(stream_length, dilation) / stream_length


def model_flops(
    config: ActFusionConfig,
    num_classes: int,
    length: int,
    optimized: bool,
    expanded: bool = False,
    winograd: bool = False,
) -> float:
    """FLOPs of one segmentation (all streams), spec §2 per-layer formulas.

    optimized: encoder stops at the last kept layer without conv_out; the decoder's cross projections
    (4·C·X·L per layer) are computed once instead of at every DDIM step. expanded: the fused CPU kernel's
    expanded q·k in decoder layers with C >= 8K (one C×C matmul fewer per step, 3K more multiply-adds per
    channel in the kernel, its per-position terms once per call). winograd: the fused CPU path's
    Winograd conv where it takes it (`conv_flops`).
    """
    enc, dec = config.encoder, config.decoder
    frames = length  # the streams together cover every frame once
    streams = config.sample_rate if config.temporal_aug else 1
    stream_length = -(-length // streams)
    cross_dim = enc.cross_dim(num_classes)
    depth = max(enc.kept_layers) + 1 if optimized else enc.num_layers
    c, k = enc.width, enc.kernel_size
    encoder = 2 * enc.input_dim * c + 2 * c * num_classes * (not optimized)
    for i in range(depth):
        encoder += conv_flops(c, k, 2**i, stream_length, winograd) + 2 * c * c * 5 + 4 * c * k + 10 * c
    c, k = dec.width, dec.kernel_size
    per_step = 2 * 2 * num_classes * c
    cross = 4 * c * cross_dim
    for i in range(dec.num_layers):
        per_step += conv_flops(c, k, 2**i, stream_length, winograd) + 2 * c * c * 3 + 4 * c * c + 4 * c * k
        per_step += 10 * c
        if expanded and c >= 8 * k:
            per_step += -2 * c * c + 6 * c * k
    if expanded and c >= 8 * k:
        cross += 4 * c * c + 2 * c * k
    steps = config.diffusion.sampling_timesteps
    decoder = steps * per_step + dec.num_layers * cross * (1 if optimized else steps)
    return frames * (encoder + decoder)


def official_equivalent(model: ActFusion, features: torch.Tensor) -> list[torch.Tensor]:
    """The stand-in for the official code: one stream at a time, cross projections recomputed at every
    step (with the model's attention set to "reference"); returns the streams' probabilities, before the
    post-processing that `segment` adds (so "ours" is charged slightly more work). Its encoder stops at
    the last kept layer as ours does, so on breakfast it is a little faster than the official code."""
    rate = model.config.sample_rate if model.config.temporal_aug else 1
    return [
        sample_probs(
            model, features[None, :, offset::rate], generators=seeded_generators(1, 0), cache_cross=False
        )
        for offset in range(rate)
    ]


def model_table(cases: list[tuple[str, int]], threads: int, repeats: int) -> None:
    print(
        f"## Whole-model segmentation on CPU (fp32, random weights, {threads} threads, best of {repeats} "
        "after a warm-up call, the variants timed in turn)\n"
    )
    print("| preset | L | variant | best s | median s | GFLOP | GFLOP/s (best) | speed-up (best) |")
    print("|---|---|---|---|---|---|---|---|")
    models: dict[str, ActFusion] = {}
    for name, length in cases:
        config = preset(name)
        if name not in models:
            torch.manual_seed(0)
            models[name] = ActFusion(config, PRESET_CLASSES[name]).eval()
        model = models[name]
        features = torch.randn(config.encoder.input_dim, length)
        variants = {
            "reference, no cache": ("reference", lambda m=model, x=features: official_equivalent(m, x)),
            f"ours ({ours_path()})": ("auto", lambda m=model, x=features: segment(m, x)),
            "ours, torch path (no C compiler)": ("torch", lambda m=model, x=features: segment(m, x)),
        }
        timings: dict[str, list[float]] = {variant: [] for variant in variants}
        for round_ in range(repeats + 1):  # round 0 is the warm-up
            for variant, (impl, run) in variants.items():
                model.attention_impl = impl
                seconds = timed(run)[1]
                if round_:
                    timings[variant].append(seconds)
        stand_in = min(timings["reference, no cache"])
        for variant, seconds in timings.items():
            flops = model_flops(
                config,
                PRESET_CLASSES[name],
                length,
                optimized=variant != "reference, no cache",
                expanded=variant.startswith("ours (fused"),
                winograd=variant.startswith("ours (fused"),
            )
            best = min(seconds)
            print(
                f"| {name} | {length} | {variant} | {best:.2f} | {statistics.median(seconds):.2f} | "
                f"{flops / 1e9:.0f} | {flops / best / 1e9:.1f} | {stand_in / best:.2f}x |"
            )
    print()


def ours_path() -> str:
    """Which CPU path "auto" takes here: the fused C kernel when it builds, else the torch path."""
    reason = cpu.unavailable_reason()
    return "fused CPU kernel" if reason is None else f"torch path: {reason}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L <= 4k for attention, L = 2k for the model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3, help="attention timing repeats (best of)")
    parser.add_argument(
        "--model-repeats", type=int, default=2, help="whole-model timing repeats (best of, after a warm-up)"
    )
    parser.add_argument("--skip-attention", action="store_true")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument(
        "--cases",
        help="model cases as preset:length, comma-separated (default breakfast:2000,breakfast:10000,"
        "50salads:12000, the issue-17 targets; --quick: breakfast:2000,50salads:2000)",
    )
    parser.add_argument("--attention-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.attention_child:
        impl, channels, length, repeats = args.attention_child.split(",")
        reply_to_parent(attention_child(impl, int(channels), int(length), int(repeats)))
        return
    print(f"float32 matmul 2048^3: {matmul_gflops():.1f} GFLOP/s ({args.threads} threads)\n")
    if not args.skip_attention:
        attention_table([1024, 4096] if args.quick else [1024, 4096, 16384], args.threads, args.repeats)
    if not args.skip_model:
        default = (
            "breakfast:2000,50salads:2000" if args.quick else "breakfast:2000,breakfast:10000,50salads:12000"
        )
        cases = [(case.split(":")[0], int(case.split(":")[1])) for case in (args.cases or default).split(",")]
        model_table(cases, args.threads, args.model_repeats)
    print(f"float32 matmul 2048^3 (end of run): {matmul_gflops():.1f} GFLOP/s")


if __name__ == "__main__":
    main()
