"""Sequential `actfusion segment` vs `actfusion batch segment` (embedded local Ray) on generated videos.

    .venv/bin/python benchmarks/bench_batch.py                            # 12 videos of 20 s
    .venv/bin/python benchmarks/bench_batch.py --videos 3 --seconds 4     # a quick check

Both run as the user would run them (a fresh `actfusion` process, all videos in one command, JSON into --out)
on the same weights (--weights, else $ACTFUSION_WEIGHTS / the bundled demo). Reported: videos/min of each
(wall time of the whole command), Ray's fixed start-up cost (from the batch's own report), the mean per-video
stage costs (features = decode + I3D, model), from which the throughput on N workers is estimated, and a check
that both paths wrote the same labels.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import generate_video

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from actfusion_sdk.cli import main; sys.exit(main())"]


def timed(command: list[str], environment: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of `command` and its stderr (it must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[3:])} failed ({done.returncode}):\n{done.stderr}")
    return seconds, done.stderr


def labels(out: Path) -> dict[str, list[int]]:
    results = out.glob("*.segmentation.json")  # not the records beside them
    return {path.name: json.loads(path.read_text())["frame_labels"] for path in results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--seconds", type=int, default=20, help="length of each generated video")
    parser.add_argument("--size", type=int, default=160, help="frame size of the generated videos (px)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--weights", help="checkpoint (default: $ACTFUSION_WEIGHTS, then the bundled demo)")
    parser.add_argument("--workers", type=int, help="actors per stage of the batch (default: Ray's fit)")
    args = parser.parse_args()

    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        (root / "videos").mkdir()
        videos = [
            str(generate_video(root / "videos" / f"video{index:02d}.mp4", args.seconds, args.size, args.fps))
            for index in range(args.videos)
        ]
        model = ["--weights", args.weights] if args.weights else []
        sequential, _ = timed(
            [*CLI, "segment", *videos, "--format", "json", "--out", str(root / "seq"), "--quiet", *model],
            environment,
        )
        workers = ["--workers", str(args.workers)] if args.workers else []
        batch, report = timed(
            [*CLI, "batch", "segment", str(root / "videos"), "--out", str(root / "batch"), *model, *workers],
            environment,
        )
        startup = float(re.search(r"Ray start-up ([0-9.]+) s", report).group(1))
        results = (root / "seq").glob("*.segmentation.json")
        timings = [json.loads(path.read_text())["timings"] for path in results]
        same = labels(root / "seq") == labels(root / "batch")

    features = statistics.mean(timing["features"] for timing in timings)
    model_seconds = statistics.mean(timing["model"] for timing in timings)
    print(f"{args.videos} videos of {args.seconds} s ({args.size} px, {args.fps} fps), {os.cpu_count()} CPUs")
    print(
        f"sequential actfusion segment: {sequential:7.1f} s  {60 * args.videos / sequential:6.1f} videos/min"
    )
    print(f"actfusion batch segment:      {batch:7.1f} s  {60 * args.videos / batch:6.1f} videos/min")
    print(f"  of which Ray start-up:      {startup:7.1f} s (fixed per run)")
    print(f"per video: features (decode + I3D) {features:.2f} s, model {model_seconds:.2f} s")
    print(
        f"estimate on N workers per stage: N * 60 / max({features:.2f}, {model_seconds:.2f}) = "
        f"{60 / max(features, model_seconds):.1f} * N videos/min (the slower stage bounds the stream)"
    )
    print(f"same labels on both paths: {same}")


if __name__ == "__main__":
    main()
