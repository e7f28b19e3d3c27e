"""`actfusion demo`: the whole system on a held-out procedural video with the bundled demo model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..results import AnticipationResult, SegmentationResult


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="segment and anticipate a generated held-out video with the bundled demo model",
        description="Render a held-out procedural activity video, run Pipeline(...).segment() and "
        ".anticipate(ratio=0.3) with the bundled demo weights, print both next to the ground truth with "
        "F1@50 and MoC, and write timeline PNGs and viewer pages (the video beside prediction and ground "
        "truth).",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("demo_output"), help="output directory (demo_output)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="script seed of the demo video (default: the held-out seed)"
    )
    parser.add_argument("--weights", default=None, help="model directory or card (default: bundled demo)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.heldout import HELDOUT_SEED, demo_video
    from ..demo.scoring import OBSERVATION_RATIO, score_videos
    from ..limits import check_seed

    seed = HELDOUT_SEED if args.seed is None else check_seed(args.seed)
    print(f"rendering a held-out demo video (seed {seed}) ...", file=sys.stderr)
    video, spec = demo_video(args.out, seed=seed)
    print(
        f"{video.path}: {spec.activity}, {spec.duration:.0f} s, steps {' -> '.join(spec.steps)}",
        file=sys.stderr,
    )

    def show(_video: object, segmented: SegmentationResult, anticipated: AnticipationResult) -> None:
        truth = SegmentationResult.from_frames(
            [segmented.classes.index(label) for label in video.labels],
            segmented.classes,
            segmented.fps,
            duration=segmented.duration,
            video="ground truth",
        )
        print("\n== ground truth ==\n" + truth.table())
        print("\n== segmentation: Pipeline(video).segment() ==\n" + segmented.table())
        print(
            f"\n== anticipation: Pipeline(video).anticipate(ratio={OBSERVATION_RATIO}) ==\n"
            + anticipated.table()
        )
        for name, result in (("segmentation", segmented), ("anticipation", anticipated)):
            path = result.plot(args.out / f"demo_{name}.png", ground_truth=list(video.labels))
            print(f"timeline written: {path}")
            page = result.to_html(args.out / f"demo_{name}.html", video=video.path, truth=list(video.labels))
            print(f"viewer page written: {page} (open it in a browser)")

    scores = score_videos([video], weights=args.weights, progress=True, on_video=show)
    print(
        f"\nF1@50 {scores.model['f1@50']:.1f} (encoder only {scores.encoder_only['f1@50']:.1f}); "
        f"MoC alpha=0.3 beta=0.5 {scores.moc:.1f} (repeat last observed step {scores.moc_repeat_last:.1f})"
    )
    return 0
