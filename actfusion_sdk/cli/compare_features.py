"""`actfusion compare-features`: per-stream agreement of our features with released ones (cosine, shift)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare-features",
        help="compare features made here with released ones (per-stream cosine, alignment)",
        description=(
            "Compare two [D, T] feature files, e.g. `actfusion extract --settings mstcn` output against the "
            "released MS-TCN features of the same video. Per stream (RGB rows 0-1023, flow rows 1024-2047 "
            "of 2048-d features): the per-frame cosine similarity at the best alignment within ±MAX_SHIFT "
            "frames (ours[t] against theirs[t + shift]) and its distribution (min, 5th percentile, median, "
            "mean). "
            "The README says what agreement to expect."
        ),
    )
    parser.add_argument("ours", type=Path, metavar="OURS.npy", help="features made here ([D, T])")
    parser.add_argument("theirs", type=Path, metavar="THEIRS.npy", help="reference features ([D, T])")
    parser.add_argument(
        "--max-shift", type=int, default=2, help="largest frame shift tried either way (default 2)"
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..features.compare import compare_features, load_feature_file

    comparison = compare_features(
        load_feature_file(args.ours), load_feature_file(args.theirs), max_shift=args.max_shift
    )
    print(json.dumps(comparison.to_dict(), indent=1) if args.json else comparison.table())
    return 0
