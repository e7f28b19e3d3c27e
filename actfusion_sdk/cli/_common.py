"""What the subcommands share: the compute options of every command that runs the model, and the
arguments, pipeline and output of `actfusion segment` and `actfusion anticipate`.

Results go to stdout (a table, or an export with --format); progress and written paths go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError
from ..model.attention import IMPLEMENTATIONS
from ..results import FORMATS, AnticipationResult, SegmentationResult, activitynet_document

_SUFFIXES = {
    "json": ".json",
    "csv": ".csv",
    "mstcn": ".txt",
    "activitynet": ".activitynet.json",
    "png": ".png",
}


def result_filename(video_id: str, kind: str, fmt: str) -> str:
    """The output file name of one video's result: ``<video>.<kind><suffix>`` (fmt: an export or "png")."""
    return f"{video_id}.{kind}{_SUFFIXES[fmt]}"


def add_compute_arguments(parser: argparse.ArgumentParser, *, threads: bool = False) -> None:
    """--device and --attention-impl (and --threads) for the commands that run the model."""
    parser.add_argument("--device", help="torch device: cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument(
        "--attention-impl",
        default="auto",
        choices=IMPLEMENTATIONS,
        help="dilated attention implementation (default auto: Triton on CUDA, torch on CPU)",
    )
    if threads:
        parser.add_argument(
            "--threads", type=int, help="CPU threads for torch (1 is fastest for small models on busy CPUs)"
        )


def apply_threads(args: argparse.Namespace) -> None:
    """Honour --threads when it was given."""
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


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
    """The Pipeline for the parsed arguments, after checking the output options (before any work)."""
    from ..pipeline import Pipeline

    if len(args.videos) > 1 and args.out is None and args.format in ("csv", "mstcn"):
        raise ConfigError(
            f"--format {args.format} prints one video at a time; add --out DIR to write one file per video"
        )
    stems = [Path(video).stem for video in args.videos]
    if (args.out is not None or args.plot) and len(set(stems)) < len(stems):
        raise ConfigError(
            f"several videos share a file name ({', '.join(stems)}); their outputs would collide"
        )
    return Pipeline(args.videos, weights=args.weights, device=args.device, progress=not args.quiet)


def emit(results: Sequence[SegmentationResult | AnticipationResult], args: argparse.Namespace) -> int:
    """Print or write `results` as the arguments ask; returns the exit code 0."""
    kind = results[0].kind
    if args.format is not None and args.out is not None:
        for result in results:
            name = result_filename(result.video_id, kind, args.format)
            note(args, f"wrote {result.save(args.out / name, args.format)}")
    elif args.format is not None:
        print(_stdout_export(results, args.format), end="")
    if args.plot:
        for result in results:
            plot = (args.out or Path(".")) / result_filename(result.video_id, kind, "png")
            note(args, f"wrote {result.plot(plot)}")
    if args.format is None or args.out is not None:
        print("\n\n".join(result.table() for result in results))
    return 0


def _stdout_export(results: Sequence[SegmentationResult | AnticipationResult], fmt: str) -> str:
    """One document on stdout: a single export, or for several videos a JSON list / merged ActivityNet
    (csv and mstcn with several videos need --out, checked in `build_pipeline`)."""
    if len(results) == 1:
        text = results[0].export(fmt)
        return text if text.endswith("\n") else text + "\n"
    if fmt == "activitynet":
        return json.dumps(activitynet_document(results), indent=2) + "\n"
    return "[\n" + ",\n".join(result.to_json() for result in results) + "\n]\n"


def note(args: argparse.Namespace, message: str) -> None:
    """A progress message on stderr, unless --quiet."""
    if not args.quiet:
        print(message, file=sys.stderr)
