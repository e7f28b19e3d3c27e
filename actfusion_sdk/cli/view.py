"""`actfusion view RESULT... [--video V] [--truth LABELS] [--out PATH]`: self-contained HTML viewer pages.

A result JSON gives its page; a folder of results (from ``segment --out`` or ``batch``) or several result
files give a page each and an index; a live run's ``--jsonl`` file gives its replay page. Written paths go
to stdout.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, InputError

if TYPE_CHECKING:
    from ..data.annotations import Annotation
    from ..results import Result


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "view",
        help="write HTML pages that show results beside their video",
        description=(
            "Write self-contained HTML pages (open them from disk in a browser): the video with the "
            "prediction, the ground truth and the per-frame confidence as timeline rows under it. "
            "RESULT is a result JSON (its page), a folder of results or several result files (a page each "
            "and index.html), or a live run's --jsonl file (its replay)."
        ),
        epilog="Exit codes: 0 ok, 2 usage, 3 input error.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="RESULT", help="result JSON, results folder, live .jsonl"
    )
    parser.add_argument("--video", type=Path, help="the video (default: the one the result names)")
    parser.add_argument(
        "--truth",
        type=Path,
        metavar="LABELS",
        help="ground truth: MS-TCN labels (one per feature frame), a result JSON, or an annotation file "
        "(csv, eaf, Label Studio or ActivityNet JSON)",
    )
    parser.add_argument("--tier", help="the ELAN tier of --truth (when the file has several)")
    parser.add_argument(
        "--embed-video", action="store_true", help="put the video inside the page (small clips only)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="PATH", help="the page (one input) or the folder of pages and index.html"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    inputs = [Path(item) for item in args.inputs]
    single = len(inputs) == 1 and not inputs[0].is_dir()
    if not single and (args.video or args.truth or args.embed_video):
        raise ConfigError("--video, --truth and --embed-video apply to one result or live file, not several")
    for item in inputs:
        if not item.exists():
            raise InputError(
                f"'{item}' does not exist; give a result JSON, a results folder or a live .jsonl"
            )
    if single:
        print(_single_page(inputs[0], args))
    else:
        print(_many_pages(inputs, args.out))
    return 0


def _single_page(source: Path, args: argparse.Namespace) -> Path:
    out = args.out or source.with_name(source.name.removesuffix(".json").removesuffix(".jsonl") + ".html")
    if source.suffix == ".jsonl":
        from ..live.replay import read_updates, write_replay_page

        if args.truth or args.embed_video:
            raise ConfigError("--truth and --embed-video apply to result pages, not to a live replay")
        return write_replay_page(read_updates(source), out, args.video, title=f"{source.name}: live run")
    from ..results.viewer_index import load_result_file

    entry = load_result_file(source)
    truth = None if args.truth is None else _read_truth(args.truth, entry.result, args.tier)
    return entry.result.to_html(
        out, video=args.video or entry.video, truth=truth, embed_video=args.embed_video
    )


def _many_pages(inputs: list[Path], out: Path | None) -> Path:
    from ..results.viewer_index import load_result_file, result_files, view_folder, write_pages

    if len(inputs) == 1:
        return view_folder(inputs[0], out)
    if out is None:
        raise ConfigError("several results need --out DIR for their pages and index.html")
    entries = []
    for item in inputs:
        if item.is_dir():
            entries += result_files(item)
        else:
            entries.append(load_result_file(item))
    return write_pages(entries, out)[0]


def _read_truth(path: Path, result: Result, tier: str | None) -> list[Annotation]:
    """The ground-truth spans of `result`'s video in an annotation file (MS-TCN labels at its fps)."""
    from ..data.annotations import read_annotations

    spans = read_annotations(path, tier=tier, frame_rate=result.fps)
    videos = {span.video for span in spans}
    if len(videos) > 1:
        spans = [span for span in spans if span.video == result.video_id]
        if not spans:
            raise InputError(
                f"'{path}' has no annotations of video {result.video_id!r}; "
                f"it has those of {', '.join(sorted(videos))}"
            )
    return spans
