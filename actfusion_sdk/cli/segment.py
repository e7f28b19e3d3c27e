"""`actfusion segment VIDEO...`: temporal action segmentation, printed as a table or exported."""

from __future__ import annotations

import argparse

from ._common import add_common_arguments, add_local_arguments, run_each


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment videos into actions",
        description="Segment each video into actions (label, start, end, score).",
        epilog="Exit codes: 0 ok, 2 usage, 3 input error, 4 weights error.",
    )
    add_common_arguments(parser)
    add_local_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..limits import check_seed

    check_seed(args.seed)  # before loading the model or decoding
    return run_each(args, "segment", lambda predictor, prepared: predictor.segment(prepared, seed=args.seed))
