"""What `actfusion segment` and `actfusion anticipate` share: arguments, the pipeline, and the output.

Results go to stdout (a table, or an export with --format); progress and written paths go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..results import FORMATS, AnticipationResult, SegmentationResult, activitynet_document

_SUFFIXES = {"json": ".json", "csv": ".csv", "mstcn": ".txt", "activitynet": ".activitynet.json"}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, model and output options of the result-producing subcommands."""
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to process")
    parser.add_argument(
        "--weights",
        help="checkpoint directory, model.json or .safetensors (default: $ACTFUSION_WEIGHTS, then demo)",
    )
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="print (or with --out, write) this export instead of the table",
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="write one file per video into DIR")
    parser.add_argument(
        "--plot", action="store_true", help="also write a timeline PNG per video (into --out or .)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress or file messages on stderr")


def build_pipeline(args: argparse.Namespace):
    """The Pipeline for the parsed arguments (imported here so `actfusion --help` stays fast)."""
    from ..pipeline import Pipeline

    return Pipeline(args.videos, weights=args.weights, device=args.device, progress=not args.quiet)


def emit(results: Sequence[SegmentationResult | AnticipationResult], args: argparse.Namespace) -> int:
    """Print or write `results` as the arguments ask; returns the exit code 0."""
    kind = results[0].kind
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for result in results:
            if args.format is not None:
                path = result.save(
                    args.out / f"{result.video_id}.{kind}{_SUFFIXES[args.format]}", args.format
                )
                note(args, f"wrote {path}")
    elif args.format is not None:
        print(_stdout_export(results, args.format), end="")
    if args.plot:
        for result in results:
            path = result.plot((args.out or Path(".")) / f"{result.video_id}.{kind}.png")
            note(args, f"wrote {path}")
    if args.format is None or args.out is not None:
        print("\n\n".join(result.table() for result in results))
    return 0


def _stdout_export(results: Sequence[SegmentationResult | AnticipationResult], fmt: str) -> str:
    """One document on stdout: a single export, or for several videos a JSON list / merged ActivityNet."""
    if len(results) == 1:
        text = results[0].export(fmt)
        return text if text.endswith("\n") else text + "\n"
    if fmt == "activitynet":
        import json

        return json.dumps(activitynet_document(results), indent=2) + "\n"
    if fmt == "json":
        return "[\n" + ",\n".join(result.to_json() for result in results) + "\n]\n"
    raise ConfigError(f"--format {fmt} prints one video at a time; add --out DIR to write one file per video")


def note(args: argparse.Namespace, message: str) -> None:
    """A progress message on stderr, unless --quiet."""
    if not args.quiet:
        print(message, file=sys.stderr)
