"""Real-time factor of `Pipeline.segment()` on a generated video, with the share of each stage.

    .venv/bin/python benchmarks/bench_pipeline.py                 # 2-minute video, CPU, 2 threads
    .venv/bin/python benchmarks/bench_pipeline.py --seconds 20    # a quick check

Real-time factor = video seconds per wall second (above 1: faster than real time). Stages: features
(decode + I3D; decoding runs in a producer thread that overlaps the network, so it is also timed alone on a
second pass), model (encoder + DDIM decoder + smoothing filter) and results (segments and typed result).
Weights: --weights, else $ACTFUSION_WEIGHTS / the bundled demo, else a randomly initialised model of --preset
with the demo feature extractor (speed does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections import deque
from pathlib import Path

import torch
from harness import timed

from actfusion_sdk import weights as shipped_weights
from actfusion_sdk.demo.grammar import CLASSES, ActivitySpec, StepSpan
from actfusion_sdk.demo.render import render_video
from actfusion_sdk.errors import WeightsError
from actfusion_sdk.features.settings import FeatureSettings
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.checkpoint import FORMAT_VERSION, ModelCard, save_model
from actfusion_sdk.model.config import preset
from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.video.decode import VideoDecoder


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

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


if __name__ == "__main__":
    main()
