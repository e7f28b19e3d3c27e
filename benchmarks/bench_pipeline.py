"""Real-time factor of `Pipeline.segment()` on a generated video, with the share of each stage.

    .venv/bin/python benchmarks/bench_pipeline.py                 # 2-minute video, CPU, 2 threads
    .venv/bin/python benchmarks/bench_pipeline.py --seconds 20    # a quick check
    .venv/bin/python benchmarks/bench_pipeline.py --cli           # `actfusion segment` on the held-out demo

Real-time factor = video seconds per wall second (above 1: faster than real time). Stages: features
(decode + I3D; decoding runs in a producer thread that overlaps the network, so it is also timed alone on a
second pass), model (encoder + DDIM decoder + smoothing filter) and results (segments and typed result).
Weights: --weights, else $ACTFUSION_WEIGHTS / the bundled demo, else a randomly initialised model of --preset
with the demo feature extractor (speed does not depend on the weights' values).

--cli: the real command, `actfusion segment VIDEO` in a fresh process, on the held-out demo video (56 s;
--video to use another), twice with a new cache directory: the first call draws the seeded extractor
weights and caches them, the second reads the cache (the steady state). Real-time factor = video seconds /
wall seconds of the whole process. The stages are then timed one by one in another fresh process along the
CLI's code path: start-up (interpreter, imports, model load, extractor build), decode (PyAV + RGB +
resampling, no resize), transforms (resize + crop: the decode pass with the settings' geometry, less the
plain one), I3D (the network on the video's clips), model and results. In the CLI, decoding runs in a
thread that overlaps I3D, so the stages can sum to more than its wall time. The I3D rate is given as a
fraction of the fp32 matmul rate measured in the same run (2 FLOPs per multiply-add).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import torch
from bench_features import flops_per_clip
from harness import matmul_gflops, reply_to_parent, run_child, timed

from actfusion_sdk import weights as shipped_weights
from actfusion_sdk.demo.grammar import CLASSES, ActivitySpec, StepSpan
from actfusion_sdk.demo.heldout import demo_video
from actfusion_sdk.demo.render import render_video
from actfusion_sdk.errors import WeightsError
from actfusion_sdk.features.settings import FeatureSettings
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.checkpoint import FORMAT_VERSION, ModelCard, save_model
from actfusion_sdk.model.config import preset
from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.video.decode import VideoDecoder, probe_video


def generate_video(path: Path, seconds: int, size: int, fps: int) -> Path:
    """A procedural video cycling through every class in 6-second steps."""
    step = 6 * fps
    spans = [
        StepSpan(CLASSES[index % len(CLASSES)], start, min(start + step, seconds * fps))
        for index, start in enumerate(range(0, seconds * fps, step))
    ]
    render_video(ActivitySpec("benchmark", tuple(spans), size=size, fps=fps, seed=0), path)
    return path


def random_weights(directory: Path, preset_name: str) -> Path:
    """A randomly initialised model of `preset_name` whose card names the demo feature extractor."""
    config = dataclasses.replace(preset(preset_name), name=f"random-{preset_name}")
    torch.manual_seed(0)
    model = ActFusion(config, num_classes=len(CLASSES))
    settings = FeatureSettings.demo()
    card = ModelCard(
        format_version=FORMAT_VERSION,
        config=config,
        classes=CLASSES,
        features=settings.to_dict(),
        fps=settings.features_per_second,
        description="random weights for benchmarking",
    )
    return save_model(model, card, directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120, help="video length (default 120)")
    parser.add_argument("--size", type=int, default=160, help="video frame size in pixels (default 160)")
    parser.add_argument("--fps", type=int, default=30, help="video frame rate (default 30)")
    parser.add_argument("--video", type=Path, help="use this video instead of generating one")
    parser.add_argument("--weights", help="checkpoint (default: $ACTFUSION_WEIGHTS, bundled demo, random)")
    parser.add_argument("--preset", default="gtea", help="preset of the random model (default gtea)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--cli", action="store_true", help="time `actfusion segment` in a subprocess")
    parser.add_argument("--stages-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages_child:
        stages_child(args.stages_child, args.weights, args.threads)
        return
    torch.set_num_threads(args.threads)
    if args.cli:
        command_line(args.video, args.weights, args.threads)
        return

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as scratch:
        video = args.video
        if video is None:
            video, seconds = timed(
                lambda: generate_video(Path(scratch) / "bench.mp4", args.seconds, args.size, args.fps)
            )
            print(f"generated {args.seconds} s {args.size}x{args.size} @ {args.fps} fps in {seconds:.1f} s")
        try:
            weights = shipped_weights.resolve_weights(args.weights)
        except WeightsError:
            weights = random_weights(Path(scratch) / "model", args.preset)

        pipeline = Pipeline(video, weights=weights, device=args.device, progress=False)
        result, wall = timed(pipeline.segment)

        settings = FeatureSettings.from_dict(pipeline.card.features)
        decoder = VideoDecoder(
            video, settings.fps, short_side=settings.short_side, crop_size=settings.crop_size
        )
        _, decode_alone = timed(lambda: deque(decoder, maxlen=0))

    print(
        f"model {result.model} ({weights}), device {args.device}, {args.threads} threads, "
        f"features {settings.crop_size} px {settings.precision}, {result.num_frames} features"
    )
    print(f"video {result.duration:.1f} s, wall {wall:.1f} s, real-time factor {result.duration / wall:.2f}x")
    stages = {**result.timings, "setup": wall - sum(result.timings.values())}
    for stage, seconds in stages.items():
        print(f"  {stage:<9} {seconds:8.2f} s  {100 * seconds / wall:5.1f} %")
    print("  (setup: building the extractor once per Pipeline: drawing seeded weights, folding BatchNorm)")
    print(
        f"  decode alone (second pass, overlapped with I3D above) {decode_alone:.2f} s "
        f"({100 * decode_alone / wall:.1f} % of the wall time)"
    )


# The `actfusion` entry point, run by the interpreter of this script.
CLI = "import sys; from actfusion_sdk.cli import main; sys.exit(main())"


def command_line(video: Path | None, weights: str | None, threads: int) -> None:
    """`actfusion segment` end to end (cold then warm cache) and the profile of its stages."""
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as scratch:
        if video is None:
            video = demo_video(scratch)[0].path
        duration = probe_video(video).duration
        # Every process below (this one's children) uses a new cache and the given thread count.
        os.environ.update(ACTFUSION_CACHE_DIR=str(Path(scratch) / "cache"), OMP_NUM_THREADS=str(threads))
        command = [sys.executable, "-c", CLI, "segment", str(video), "--quiet", "--device", "cpu"]
        command += ["--weights", weights] if weights else []
        print(
            f"actfusion segment {video.name} ({duration:.1f} s), {threads} threads, torch {torch.__version__}"
        )
        for cache in ("cold", "warm"):
            _, wall = timed(lambda: subprocess.run(command, check=True, capture_output=True))
            print(f"  {cache} cache: wall {wall:.2f} s, real-time factor {duration / wall:.2f}x")
        arguments = ["--stages-child", str(video), "--threads", str(threads)]
        started = time.perf_counter()
        stages = run_child(__file__, arguments + (["--weights", weights] if weights else []))
        child_wall = time.perf_counter() - started
    # What the child did not time itself: the interpreter starting and the imports before its first line.
    stages["start-up"] += child_wall - stages.pop("child total")
    clips, settings = stages.pop("clips"), FeatureSettings.from_dict(stages.pop("settings"))
    clip_flops = flops_per_clip(settings)
    total = sum(stages.values())
    print(f"stages (timed one by one, warm cache; sum {total:.2f} s):")
    for stage, seconds in stages.items():
        print(f"  {stage:<11} {seconds:8.2f} s  {100 * seconds / total:5.1f} %")
    matmul = matmul_gflops()
    gflops = clips * clip_flops / stages["I3D"] / 1e9
    print(
        f"I3D ({settings.crop_size} px, {settings.precision}): {clips} clips, {gflops:.1f} GFLOP/s = "
        f"{100 * gflops / matmul:.0f}% of the fp32 matmul ({matmul:.1f} GFLOP/s, 2048², same run)"
    )


def stages_child(video: Path, weights: str | None, threads: int) -> None:
    """In a fresh process: each stage of `actfusion segment VIDEO` along the CLI's code path, timed alone."""
    started = time.perf_counter()
    torch.set_num_threads(threads)
    from actfusion_sdk.cli import build_parser
    from actfusion_sdk.predictor import Predictor, PreparedFeatures

    build_parser()
    predictor = Predictor(weights, device="cpu")
    extractor = predictor.extractor
    startup = time.perf_counter() - started
    settings = extractor.settings
    plain = VideoDecoder(video, settings.fps)
    _, decode = timed(lambda: deque(plain, maxlen=0))
    sized = VideoDecoder(video, settings.fps, short_side=settings.short_side, crop_size=settings.crop_size)
    frames, decode_and_transforms = timed(lambda: list(sized))
    batches = list(extractor._clip_batches(frames))
    pooled, i3d = timed(lambda: [extractor.embed_clips(batch) for batch in batches])
    features = torch.cat(pooled).T.contiguous().numpy()
    prepared = PreparedFeatures(features, settings.features_per_second, sized.duration, str(video), i3d)
    result = predictor.segment(prepared)
    reply_to_parent(
        {
            "start-up": startup,
            "decode": decode,
            "transforms": max(decode_and_transforms - decode, 0.0),
            "I3D": i3d,
            "model": result.timings["model"],
            "results": result.timings["results"],
            "child total": time.perf_counter() - started,
            "clips": features.shape[1],
            "settings": settings.to_dict(),
        }
    )


if __name__ == "__main__":
    main()
