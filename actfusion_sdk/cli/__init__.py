"""The `actfusion` command line: one module per subcommand, each exposing `register(subparsers)`.

Exit codes: 0 ok, 1 unexpected failure, 2 usage or configuration error, 3 input error (video, features,
dataset), 4 weights error. User errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from ..errors import ActFusionError

# Subcommand modules, in the order `actfusion --help` lists them.
SUBCOMMANDS = (
    "segment",
    "anticipate",
    "extract",
    "batch",
    "train",
    "evaluate",
    "selfcheck",
    "bench",
    "make_benchmark",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actfusion",
        description="Temporal action segmentation and anticipation with ActFusion.",
        epilog="Exit codes: 0 ok, 2 usage, 3 input error, 4 weights error.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ActFusionError as err:
        print(f"actfusion: {type(err).__name__}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("actfusion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
