"""`actfusion doctor`: versions, devices, the CPU kernel and which paths run and why, the weights found —
what to paste into a bug report."""

from __future__ import annotations

import argparse
import json

from ..doctor import format_report, report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="report the installation: versions, devices, kernel, paths taken, weights",
        description="Report versions, devices, the CPU kernel's build (and why it is not used, where it is "
        "not), which attention, conv and matmul path each part of the model takes and why, optional "
        "packages, and the weights and feature settings found. Paste it into a bug report.",
    )
    parser.add_argument(
        "--weights", help="the checkpoint to describe (default: $ACTFUSION_WEIGHTS, then demo)"
    )
    parser.add_argument("--device", help="torch device to describe (default: cuda when available)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    data = report(args.weights, args.device)
    print(json.dumps(data, indent=2, default=str) if args.json else format_report(data))
    return 0
