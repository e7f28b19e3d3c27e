"""Feature-extraction speed and memory: decode fps, clips/s and achieved GFLOP/s next to a large matmul.

    .venv/bin/python benchmarks/bench_features.py            # full: demo + kinetics sizes, 5/20-min RSS
    .venv/bin/python benchmarks/bench_features.py --quick    # reduced sizes, short videos (proves it runs)
    .venv/bin/python benchmarks/bench_features.py --only rss # just the 5/20-min peak-RSS part

On a CPU that emulates bf16 (no AVX512-BF16/AMX: ~1 GFLOP/s) the bf16 rows are timed once each and the
224² batch-8 row is skipped, since it alone would take ~15 minutes there.

Achieved GFLOP/s = FLOPs of one forward (torch.utils.flop_counter, 2 per multiply-add) / wall time; the
matmul of the same precision, timed in the same run, is the machine's practical limit (issue 4 target:
fp32 extraction >= 50% of it). Peak RSS is measured in a fresh subprocess per video (VmHWM), for a
generated 720p video of each length (low bitrate, simple moving shapes; generation is cached in --cache).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from collections import deque
from pathlib import Path

import av
import numpy as np
import torch
from harness import best_seconds, matmul_gflops, peak_rss, reply_to_parent, run_child, timed
from torch.utils.flop_counter import FlopCounterMode

from actfusion_sdk.features.i3d import I3DFeatureExtractor
from actfusion_sdk.features.settings import FeatureSettings, WeightsSource
from actfusion_sdk.video.decode import VideoDecoder


def random_clips(settings: FeatureSettings, batch: int) -> torch.Tensor:
    shape = (batch, settings.clip_frames, settings.crop_size, settings.crop_size, 3)
    return torch.randint(0, 256, shape, dtype=torch.uint8)


def flops_per_clip(settings: FeatureSettings) -> int:
    """FLOPs of one clip's forward (counted in fp32; the count does not depend on the precision)."""
    extractor = I3DFeatureExtractor(settings, device="cpu", precision="fp32")
    with FlopCounterMode(display=False) as counter:
        extractor.embed_clips(random_clips(settings, 1))
    return counter.get_total_flops()


def network_rate(
    extractor: I3DFeatureExtractor, batch: int, repeats: int, clip_flops: int
) -> tuple[float, float]:
    """(clips/s, achieved GFLOP/s) of ``embed_clips`` on random uint8 clips of the settings' size."""
    clips = random_clips(extractor.settings, batch)
    seconds = best_seconds(lambda: extractor.embed_clips(clips), repeats)
    return batch / seconds, batch * clip_flops / seconds / 1e9


def generate_720p(path: Path, seconds: int, fps: int = 30) -> Path:
    """A 1280×720 video of a moving square on a flat background, coded cheaply (ultrafast, low bitrate)."""
    if path.exists():
        return path
    partial = path.with_name(path.stem + ".part" + path.suffix)
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "35"}
        canvas = np.full((720, 1280, 3), 60, np.uint8)
        for i in range(seconds * fps):
            x, y = (7 * i) % 1120, (3 * i) % 560
            canvas[y : y + 160, x : x + 160] = (200, 40 + i % 200, 90)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
            canvas[y : y + 160, x : x + 160] = 60
        container.mux(stream.encode())
    partial.replace(path)
    return path


def decode_rates(path: Path, settings: FeatureSettings) -> tuple[float, float]:
    """(source frames decoded per second, output frames per second) of decoding alone at ``settings``."""
    decoder = VideoDecoder(path, settings.fps, short_side=settings.short_side, crop_size=settings.crop_size)
    _, seconds = timed(lambda: deque(decoder, maxlen=0))
    return decoder.source_frames / seconds, decoder.num_frames / seconds


def rss_child(video: Path, batch_size: int) -> None:
    """Run in a subprocess: extract ``video`` with the demo settings; report the process's peak RSS."""
    with peak_rss() as memory:
        extractor = I3DFeatureExtractor(FeatureSettings.demo(), device="cpu", batch_size=batch_size)
        result, seconds = timed(lambda: extractor.extract(video))
    reply_to_parent(
        {"features": result.features.shape[1], "seconds": seconds, "peak_mib": memory.peak / 2**20}
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes and short videos")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "actfusion_bench",
        help="where generated videos go",
    )
    parser.add_argument("--only", choices=("rates", "rss"), help="run one part: network rates or peak RSS")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16", "both"), default="both", help="network-rate precisions"
    )
    parser.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child, args.batch_size)
        return

    print(f"torch {torch.__version__}, {args.threads} threads, {'quick' if args.quick else 'full'} run")
    if args.only in (None, "rates"):
        network_rates(args.quick, ("fp32", "bf16") if args.precision == "both" else (args.precision,))
    if args.only in (None, "rss"):
        peak_memory(args.quick, args.cache, args.threads)


def network_rates(quick: bool, precisions: tuple[str, ...]) -> None:
    """Clips/s and achieved GFLOP/s per size, precision and batch, next to the matmul of that precision.

    The matmul is timed right before and right after each row, and the row is compared with the faster of
    the two: this machine's matmul rate drifts by ±20 % within minutes, so one reading per run misleads.
    """
    repeats = 1 if quick else 3
    native_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()

    def limit(precision: str) -> float:  # fp32 at 2048²; bf16 smaller where emulated (~1 GFLOP/s there)
        if precision == "fp32":
            return matmul_gflops(2048, 3)
        return matmul_gflops(2048 if native_bf16 else 1024, 1, torch.bfloat16)

    if "bf16" in precisions and not native_bf16:
        print("bf16 is emulated on this CPU (no AVX512-BF16/AMX): bf16 rows timed once, 224² batch 8 skipped")
    sizes = [("demo 8x112²", FeatureSettings.demo())]
    if not quick:
        sizes.append(
            ("kinetics 8x224²", FeatureSettings.kinetics().with_weights(WeightsSource("seeded", seed=0)))
        )
    for label, settings in sizes:
        clip_flops = flops_per_clip(settings)
        print(f"{label}: {clip_flops / 1e9:.2f} GFLOP per clip")
        for precision in precisions:
            with warnings.catch_warnings():  # the emulated-bf16 warning is stated once above
                warnings.simplefilter("ignore")
                extractor = I3DFeatureExtractor(settings, device="cpu", precision=precision)
            slow = precision == "bf16" and not native_bf16
            batches = (1,) if slow and (quick or settings.crop_size > 112) else (1, 8)
            for batch in batches:
                before = limit(precision)
                clips_per_s, gflops = network_rate(extractor, batch, 1 if slow else repeats, clip_flops)
                matmul = max(before, limit(precision))
                print(
                    f"{label} {precision} batch {batch}: {clips_per_s:.2f} clips/s, {gflops:.1f} GFLOP/s "
                    f"= {100 * gflops / matmul:.0f}% of the {precision} matmul ({matmul:.1f} GFLOP/s, "
                    f"best of the readings before ({before:.1f}) and after)",
                    flush=True,
                )


def peak_memory(quick: bool, cache: Path, threads: int) -> None:
    """Decode rate and peak RSS of extracting generated 720p videos of two lengths (fresh process each)."""
    cache.mkdir(parents=True, exist_ok=True)
    lengths = (20, 80) if quick else (300, 1200)
    for seconds in lengths:
        video = generate_720p(cache / f"bench_720p_{seconds}s.mp4", seconds)
        source_rate, output_rate = decode_rates(video, FeatureSettings.demo())
        print(
            f"720p {seconds} s: decoding {source_rate:.0f} source frames/s "
            f"({output_rate:.0f} demo frames/s out, 16 of every 30 resized and cropped)"
        )
        report = run_child(__file__, ["--rss-child", str(video), "--threads", str(threads)])
        print(
            f"720p {seconds} s: {report['features']} features in {report['seconds']:.0f} s, "
            f"peak RSS {report['peak_mib']:.0f} MiB"
        )


if __name__ == "__main__":
    main()
