"""`actfusion segment VIDEO...`: temporal action segmentation, printed as a table or exported."""

from __future__ import annotations

import argparse

from ._common import add_common_arguments, build_pipeline, emit


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment videos into actions",
        description="Segment each video into actions (label, start, end, score).",
        epilog="Exit codes: 0 ok, 2 usage, 3 input error, 4 weights error.",
    )
    add_common_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    results = build_pipeline(args).segment(seed=args.seed)
    return emit(results, args)
