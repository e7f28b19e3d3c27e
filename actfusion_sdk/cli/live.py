"""`actfusion live SOURCE`: rolling segmentation and anticipation while a video stream plays.

One status line per update on stdout, every update as a JSON line in --jsonl (schema actfusion-sdk/live/1,
flushed per line so the file is complete up to the last update even after Ctrl-C), a summary at the end.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import statistics
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..errors import ConfigError
from ._common import add_compute_arguments

if TYPE_CHECKING:
    from ..predictor import Predictor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "live",
        help="segment and anticipate a live stream (camera, RTSP, pipe, growing file)",
        description=(
            "Watch SOURCE as it plays and print, every --every seconds of stream time, the current action "
            "and the anticipated next one. SOURCE: a file, a FIFO, pipe:0, rtsp://..., http(s)://... (HLS), "
            "or a V4L2 device (/dev/video0 with --format v4l2). Ctrl-C ends cleanly."
        ),
        epilog="Exit codes: 0 ok, 2 usage, 3 input error, 4 weights error, 130 interrupted.",
    )
    parser.add_argument("source", metavar="SOURCE", help="file, FIFO, pipe:0, stream URL or device")
    parser.add_argument("--weights", help="checkpoint (default: $ACTFUSION_WEIGHTS, then the demo model)")
    parser.add_argument("--every", type=float, default=2.0, metavar="S", help="seconds between updates")
    parser.add_argument("--horizon", type=float, default=30.0, metavar="S", help="seconds to anticipate")
    parser.add_argument(
        "--context", type=float, metavar="S", help="model input: only the last S seconds (flat cost)"
    )
    parser.add_argument("--realtime", action="store_true", help="pace a file at 1x (stands in for a camera)")
    parser.add_argument("--follow", action="store_true", help="keep reading a file that is still written")
    parser.add_argument("--drop", action="store_true", help="skip stale updates when falling behind")
    parser.add_argument("--format", help="input format for PyAV/FFmpeg, e.g. v4l2, mpegts")
    parser.add_argument(
        "--stall", type=float, default=10.0, metavar="S", help="end the stream after S silent seconds"
    )
    parser.add_argument("--jsonl", metavar="FILE", help="write every update as a JSON line to FILE")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    add_compute_arguments(parser, threads=True)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..limits import check_seconds, check_threads
    from ..live import UpdatePlan
    from ..predictor import Predictor
    from ._common import apply_threads

    # Every option is checked, and the --jsonl file opened, before the model loads or the source opens.
    UpdatePlan(args.every, args.horizon, args.context, args.seed, args.drop)
    check_seconds("--stall", args.stall)
    if args.threads is not None:
        check_threads(args.threads)
    with ExitStack() as stack:
        jsonl = stack.enter_context(_open_jsonl(args.jsonl)) if args.jsonl else None
        apply_threads(args)
        predictor = Predictor(args.weights, args.device, args.attention_impl)
        return _follow(args, predictor, jsonl)


def _open_jsonl(path: str) -> TextIO:
    """The --jsonl file, opened for writing, or a usage error saying why it cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"--jsonl {path!r} is a folder; give a file name (e.g. {path}/live.jsonl)")
    if not target.parent.is_dir():
        raise ConfigError(
            f"--jsonl {path!r}: the folder {str(target.parent)!r} does not exist; create it first"
        )
    try:
        if stat.S_ISFIFO(_mode(target)):
            # Opened without blocking: a FIFO nobody reads would otherwise hang here before any work.
            descriptor = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
            os.set_blocking(descriptor, True)
            return open(descriptor, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller's ExitStack
        return open(target, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller's ExitStack
    except OSError as err:
        if err.errno == errno.ENXIO:
            raise ConfigError(
                f"--jsonl {path!r} is a FIFO that nobody reads; start its reader first"
            ) from err
        raise ConfigError(
            f"--jsonl {path!r} cannot be written ({err.strerror or err}); choose a writable file"
        ) from err
    except ValueError as err:  # a NUL in the name
        raise ConfigError(f"--jsonl {path!r} is not a usable file name ({err})") from err


def _mode(path: Path) -> int:
    """`path`'s file mode, 0 when nothing is there."""
    try:
        return path.stat().st_mode
    except (OSError, ValueError):
        return 0


def _follow(args: argparse.Namespace, predictor: Predictor, jsonl: TextIO | None) -> int:
    """Print (and write to `jsonl`) every update of the stream, then the summary line."""
    from ..pipeline import Pipeline

    updates = Pipeline.stream(
        args.source,
        every=args.every,
        horizon=args.horizon,
        context=args.context,
        seed=args.seed,
        drop=args.drop,
        realtime=args.realtime,
        follow=args.follow,
        format=args.format,
        stall_seconds=args.stall,
        predictor=predictor,
    )
    latencies: list[float] = []
    skipped = 0
    last = None
    started = time.monotonic()
    interrupted = False
    try:
        for update in updates:
            print(update.status_line(), flush=True)
            if jsonl is not None:
                jsonl.write(update.to_json() + "\n")
                jsonl.flush()
            latencies.append(update.latency)
            skipped += update.skipped
            last = update
    except KeyboardInterrupt:
        interrupted = True
    print(_summary(last, latencies, skipped, time.monotonic() - started, interrupted))
    return 130 if interrupted else 0


def _summary(last, latencies: list[float], skipped: int, wall: float, interrupted: bool) -> str:
    """The closing line: updates, stream and wall seconds, rate, latency median and p95."""
    if last is None:
        return "live: no update (the stream ended before the first feature)"
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    end = "interrupted" if interrupted else last.end or "end"
    return (
        f"live: {len(latencies)} updates ({skipped} skipped), {last.time:.1f} s of stream in {wall:.1f} s "
        f"({last.time / wall:.2f}x), latency median {statistics.median(ordered):.2f} s p95 {p95:.2f} s, "
        f"ended: {end}"
    )
