"""`actfusion make-benchmark`: render the procedural activity benchmark (videos + MS-TCN labels)."""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import ConfigError

MAX_VIDEOS = 10_000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-benchmark",
        help="render procedural activity videos with MS-TCN labels",
        description="Render scripted activity videos (recipes of visual steps) with groundTruth, mapping, "
        "splits and benchmark.json in the MS-TCN layout; the same seed gives the same benchmark.",
    )
    parser.add_argument("--out", required=True, help="output directory (new or empty)")
    parser.add_argument("--videos", type=int, default=40, help="number of videos (default 40)")
    parser.add_argument(
        "--seed",
        type=int,
        help="random seed (default 1000: held-out videos the bundled demo model never saw; seed 0 renders "
        "its training and validation videos)",
    )
    parser.add_argument("--size", type=int, default=160, help="frame width and height (default 160)")
    parser.add_argument("--fps", type=int, default=15, help="video frame rate (default 15)")
    parser.add_argument(
        "--label-fps", type=float, default=2.0, help="groundTruth lines per second (default 2)"
    )
    parser.add_argument(
        "--test-fraction", type=float, default=0.25, help="share of each activity's videos in the test split"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a benchmark already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..demo.benchmark import generate_benchmark
    from ..demo.heldout import HELDOUT_SEED, TRAINING_SEED
    from ..limits import check_seed

    seed = HELDOUT_SEED if args.seed is None else check_seed(args.seed)
    if not 1 <= args.videos <= MAX_VIDEOS:
        raise ConfigError(f"--videos must be 1 to {MAX_VIDEOS}, got {args.videos}")
    if seed == TRAINING_SEED:
        print(
            f"actfusion: warning: seed {seed} renders the bundled demo model's own training and validation "
            "videos; evaluating that model on them measures memorisation (use another seed for held-out "
            "figures)",
            file=sys.stderr,
        )
    started = time.perf_counter()
    bars: list[tqdm] = []  # made at the first video, so that a setting refused before it is the only line

    def advance(_: object) -> None:
        if not bars:
            bars.append(
                tqdm(total=args.videos, desc="videos", unit="video", file=sys.stderr, disable=args.quiet)
            )
        bars[0].update()

    try:
        manifest = generate_benchmark(
            args.out,
            num_videos=args.videos,
            seed=seed,
            test_fraction=args.test_fraction,
            size=args.size,
            fps=args.fps,
            label_fps=args.label_fps,
            overwrite=args.overwrite,
            on_video=advance,
        )
    finally:
        for bar in bars:
            bar.close()
    if not args.quiet:
        seconds = sum(spec.duration for spec in manifest.videos.values())
        print(
            f"wrote {len(manifest.videos)} videos ({seconds:.0f} s of video; train {len(manifest.train)}, "
            f"test {len(manifest.test)}) to {manifest.root} in {time.perf_counter() - started:.1f} s"
        )
    return 0
