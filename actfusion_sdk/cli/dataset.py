"""`actfusion dataset build`: annotated videos -> an MS-TCN dataset folder with a dataset card."""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ._common import add_threads_argument, apply_threads
from .extract import add_extract_arguments, extraction_settings

if TYPE_CHECKING:
    from ..data.builder import DatasetCard


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dataset",
        help="build a training dataset from annotated videos",
        description="Datasets for `actfusion train` made from videos and their annotations.",
    )
    commands = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    build = commands.add_parser(
        "build",
        help="extract features and label them from annotation files",
        description=textwrap.fill(
            "Read the annotations (CSV/TSV video,start,end,label in seconds; ELAN .eaf; Label Studio JSON "
            "export of video timeline labels; ActivityNet JSON; actfusion result JSON; MS-TCN groundTruth "
            ".txt), check them, extract features of every video and write OUT in the MS-TCN layout: "
            "features/, groundTruth/ (one class per feature frame, background where nothing is annotated), "
            "mapping.txt (background first), splits/ (K folds by video) and dataset.json (the dataset card). "
            "Problems in the annotations stop the build before any video is decoded; a failed build leaves "
            "OUT as it was.",
            100,
        ),
        epilog=_formats_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_extract_arguments(build)  # the videos, --out and the extractor's options, as `actfusion extract`
    add_threads_argument(build)
    build.add_argument(
        "--annotations",
        nargs="+",
        required=True,
        type=Path,
        metavar="FILE",
        help="annotation files (.csv, .tsv, .eaf, .json, .txt); videos are matched by file stem",
    )
    build.add_argument(
        "--folds", type=int, help="K folds by video (default 4, or the number of videos when fewer)"
    )
    build.add_argument(
        "--background", default="background", help="class of frames no annotation covers (default background)"
    )
    build.add_argument(
        "--overlap",
        choices=("error", "later", "longer"),
        default="error",
        help="overlapping segments: an error (default), or the later-starting / the longer one wins",
    )
    build.add_argument(
        "--merge-case", action="store_true", help="merge labels that differ only in case or spaces"
    )
    build.add_argument("--tier", help="ELAN tier to read (default: the file's only tier)")
    build.add_argument(
        "--gt-fps",
        type=float,
        metavar="F",
        help="frames per second of MS-TCN ground truth files (and of Label Studio tasks stating none)",
    )
    build.set_defaults(handler=run_build)


def _formats_epilog() -> str:
    """The annotation formats and the CSV column names the readers accept, for --help."""
    from ..data.annotations import COLUMN_NAMES

    columns = "\n".join(f"    {field:<6} {', '.join(names)}" for field, names in COLUMN_NAMES.items())
    return (
        "annotation files (videos are named by file stem: clip01.mp4 or clip01):\n"
        "  .csv/.tsv  one segment per row, seconds (12.5) or [h:]mm:ss; a header names the columns:\n"
        f"{columns}\n"
        "             without a header the columns are video,start,end,label\n"
        "  .eaf       ELAN: the annotations of one tier (--tier), the video from its linked media\n"
        "  .json      Label Studio export (timelinelabels, frames at data.fps, else --gt-fps, else 24),\n"
        "             ActivityNet (database/results), or an actfusion result (segment --format json)\n"
        "  .txt       MS-TCN ground truth <video>.txt, one label per frame at --gt-fps\n\n"
        "Exit codes: 0 ok, 2 usage, 3 input error (annotations, videos), 4 weights error."
    )


def run_build(args: argparse.Namespace) -> int:
    from ..data.builder import build_dataset

    if args.gt_fps is not None and not (math.isfinite(args.gt_fps) and args.gt_fps > 0):
        raise ConfigError(f"--gt-fps must be a positive number of frames per second, got {args.gt_fps}")
    settings = extraction_settings(args)
    apply_threads(args)

    def on_video(index: int, video: Path) -> None:
        if not args.quiet:
            print(f"features {index + 1}: {video}", file=sys.stderr)

    card = build_dataset(
        args.inputs,
        args.annotations,
        args.out,
        folds=args.folds,
        background=args.background,
        overlap=args.overlap,
        merge_case=args.merge_case,
        tier=args.tier,
        gt_fps=args.gt_fps,
        settings=settings,
        i3d_weights=args.i3d_weights,
        flow_weights=args.flow_weights,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        on_video=on_video,
    )
    if not args.quiet:
        print(summary(card), file=sys.stderr)
    return 0


def summary(card: DatasetCard) -> str:
    """A short report of a built dataset: videos, classes with their seconds and frames, coverage."""
    lines = [
        f"dataset {card.root}: {len(card.videos)} videos, {len(card.classes)} classes, "
        f"{len(card.folds)} folds, {card.coverage:.0%} of frames annotated"
    ]
    for name in card.classes:
        stats = card.class_stats[name]
        lines.append(
            f"  {name:<24} {stats.seconds:>9.1f} s {stats.frames:>7} frames {stats.videos:>4} videos"
        )
    return "\n".join(lines)
