"""The `actfusion` command line: one module per subcommand, each exposing `register(subparsers)`.

Exit codes: 0 ok, 1 unexpected failure, 2 usage or configuration error, 3 input error (video, features,
dataset), 4 weights error. User errors print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import NoReturn

from ..errors import ActFusionError

# Subcommand modules, in the order `actfusion --help` lists them.
SUBCOMMANDS = (
    "segment",
    "anticipate",
    "live",
    "extract",
    "compare_features",
    "dataset",
    "batch",
    "train",
    "evaluate",
    "import_checkpoint",
    "view",
    "selfcheck",
    "doctor",
    "bench",
    "make_benchmark",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit 2), like every other error; the
    subcommands' parsers are of this class too (argparse makes them of their parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="actfusion",
        description="Temporal action segmentation and anticipation with ActFusion.",
        epilog="Exit codes: 0 ok, 2 usage, 3 input error, 4 weights error.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        import_module(f"{__name__}.{name}").register(sub)
    return parser


class _WarningLines(logging.Handler):
    """The library's warnings as one `actfusion: warning: ...` line each on stderr, written around any
    progress bar (tqdm.write), never with a source file and line."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(f"actfusion: {record.levelname.lower()}: {record.getMessage()}", file=sys.stderr)


def _show_library_warnings() -> None:
    """Route the `actfusion_sdk` loggers' warnings to stderr (once per process)."""
    library = logging.getLogger("actfusion_sdk")
    if not any(isinstance(handler, _WarningLines) for handler in library.handlers):
        handler = _WarningLines(logging.WARNING)
        library.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _show_library_warnings()
    try:
        return int(args.handler(args) or 0)
    except ActFusionError as err:
        print(f"actfusion: {type(err).__name__}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("actfusion: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
