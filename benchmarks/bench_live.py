"""The live loop on a CPU: update latency against observed length and `context`, and the sustained rate.

    .venv/bin/python benchmarks/bench_live.py                          # demo settings, 2 threads
    .venv/bin/python benchmarks/bench_live.py --seconds 20 --lengths 60 --contexts 0 --repeats 2   # quick

1. Update latency: `Predictor.anticipate` on the last `context` seconds of `length` seconds of features
   (context 0: all of them), `--repeats` times; median and p95 seconds. This is the model part of an update;
   the features are made incrementally, one clip at a time, and cost the same at any stream length.
2. Sustained rate: `Pipeline.stream` over a generated video read as fast as it decodes (--every, --context):
   stream seconds per wall second for features plus updates (above 1: keeps up with a camera), and the
   latency of its updates from the arrival of the newest needed frame.
Weights: --weights, else $ACTFUSION_WEIGHTS / the bundled demo model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_pipeline import generate_video

from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.predictor import AnticipationWindow, Predictor


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def update_latency(predictor: Predictor, length: float, context: float, horizon: float, repeats: int):
    """Median and p95 seconds of one update's model call."""
    fps = predictor.card.fps
    observed = round((min(length, context) if context else length) * fps)
    features = np.random.default_rng(0).standard_normal((predictor.card.config.encoder.input_dim, observed))
    prepared = predictor.load_features(features.astype(np.float32), fps)
    window = AnticipationWindow(observed=observed / fps, horizon=horizon)
    times = []
    for repeat in range(repeats):
        started = time.perf_counter()
        predictor.anticipate(prepared, window, seed=repeat)
        times.append(time.perf_counter() - started)
    return statistics.median(times), percentile(times, 0.95)


def sustained_rate(predictor: Predictor, video: Path, seconds: float, args: argparse.Namespace) -> str:
    started = time.perf_counter()
    updates = list(
        Pipeline.stream(
            video, every=args.every, horizon=args.horizon, context=args.context or None, predictor=predictor
        )
    )
    wall = time.perf_counter() - started
    latencies = [update.latency for update in updates]
    return (
        f"stream {seconds:.0f} s in {wall:.1f} s wall: {seconds / wall:.2f}x real time, "
        f"{len(updates)} updates, "
        f"latency median {statistics.median(latencies):.2f} s p95 {percentile(latencies, 0.95):.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", help="checkpoint (default: $ACTFUSION_WEIGHTS, then the demo model)")
    parser.add_argument("--seconds", type=int, default=120, help="generated video length for the rate")
    parser.add_argument("--lengths", type=float, nargs="+", default=[60, 300, 600, 1800], help="observed s")
    parser.add_argument("--contexts", type=float, nargs="+", default=[0, 60, 600], help="context s (0: all)")
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--horizon", type=float, default=30.0)
    parser.add_argument("--context", type=float, default=600.0, help="context of the sustained-rate run")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor(args.weights, device="cpu")
    print(f"model {predictor.card.config.name}, {predictor.card.fps:g} features/s, {args.threads} threads")
    print(f"{'observed s':>10} {'context s':>10} {'median s':>9} {'p95 s':>9}")
    for length in args.lengths:
        for context in args.contexts:
            if context and context >= length:
                continue
            median, p95 = update_latency(predictor, length, context, args.horizon, args.repeats)
            print(f"{length:>10g} {context or 'all':>10} {median:>9.3f} {p95:>9.3f}")
    settings = predictor.feature_settings()
    with tempfile.TemporaryDirectory() as scratch:
        video = generate_video(Path(scratch) / "live.mp4", args.seconds, settings.short_side, 15)
        print(sustained_rate(predictor, video, args.seconds, args))


if __name__ == "__main__":
    main()
