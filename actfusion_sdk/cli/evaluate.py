"""`actfusion evaluate`: TAS and LTA scores of a model on an MS-TCN split, in the paper's table layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._common import add_compute_arguments, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on an MS-TCN split (Acc, Edit, F1, MoC)",
        description="Evaluate temporal action segmentation (Acc, Edit, F1@{10,25,50}) and anticipation "
        "(MoC for α ∈ {0.2, 0.3}, β ∈ {0.1, 0.2, 0.3, 0.5}) on a split of an MS-TCN dataset. Official raw "
        "checkpoints (.model/.pth/.pt) need --preset; the classes come from the dataset's mapping.txt.",
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="dataset directory (features/, groundTruth/, ...)"
    )
    parser.add_argument("--split", default="1", help="split number k of splits/<subset>.split<k>.bundle")
    parser.add_argument(
        "--weights", required=True, type=Path, help="model directory, model.json or raw checkpoint"
    )
    parser.add_argument(
        "--preset", help="architecture of an official raw checkpoint (breakfast, 50salads, gtea)"
    )
    parser.add_argument("--subset", default="test", choices=("train", "test"), help="split file to use")
    add_compute_arguments(parser, threads=True)
    parser.add_argument(
        "--background",
        action="append",
        help="class name excluded from Edit and F1 (repeatable; default 'background', as the official code)",
    )
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate
    from ..metrics import DEFAULT_BG_CLASSES

    apply_threads(args)

    report = evaluate(
        args.data,
        args.split,
        args.weights,
        subset=args.subset,
        preset=args.preset,
        device=args.device,
        attention_impl=args.attention_impl,
        bg_classes=tuple(args.background) if args.background else DEFAULT_BG_CLASSES,
        progress=not args.quiet,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{args.weights} on {args.data} split {args.split} ({args.subset}, {report.videos} videos)")
        print(report.table())
    return 0
