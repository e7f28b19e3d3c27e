"""`actfusion selfcheck FILE...`: run this installation on test-vector files and report the max abs error.

The checks themselves live in `actfusion_sdk.testing` (model, loss, attention-layer and metric files, in the
format of tests/data/official, whatever configuration a file carries). Exit 0 iff every output is within
tolerance (1e-5; 1e-9 for metrics), 1 otherwise, 3 if a file is unreadable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError
from ..model.attention import IMPLEMENTATIONS
from ..runtime import resolve_device
from ..testing import METRICS_TOLERANCE, TOLERANCE, check_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "selfcheck",
        help="check this installation against official test-vector files",
        description="Run the model, its training losses, attention layers or metrics on test-vector files "
        "(the format of tests/data/official) and report the max abs error per output. Exit 0 iff all are "
        f"within {TOLERANCE:g} ({METRICS_TOLERANCE:g} for metrics).",
    )
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="test-vector files (.pt or .json)"
    )
    parser.add_argument(
        "--attention-impl", default="auto", choices=IMPLEMENTATIONS, help="attention implementation"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="sample the model files' DDIM outputs through CUDA-graph replay (needs --device cuda)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON {file: {output: error}}"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    device = str(resolve_device(args.device))  # CUDA on a machine without it is a usage error, not an input's
    if args.cuda_graphs and not device.startswith("cuda"):
        raise ConfigError(f"--cuda-graphs replays CUDA graphs and needs --device cuda, not {device}")
    report: dict[str, dict[str, float]] = {}
    failures = 0
    for path in args.files:
        errors, tolerance = check_file(path, args.attention_impl, device, args.cuda_graphs)
        report[str(path)] = errors
        failures += sum(not error <= tolerance for error in errors.values())
        if not args.json:
            for name, error in errors.items():
                print(f"{path}  {name}  {error:.3e}  {'ok' if error <= tolerance else 'FAIL'}")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        total = sum(len(errors) for errors in report.values())
        print(f"selfcheck: {total - failures} of {total} outputs within tolerance")
    return 0 if failures == 0 else 1
