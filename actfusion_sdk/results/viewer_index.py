"""Pages for many results: one page per result file and an index with a row per video (a mini timeline,
segment count, duration, a link to its page) and the failures listed in the folder's ``failures.json``.

Result files are the JSON documents of the result schema that ``segment --out`` and ``batch`` write
(``<name>.<kind>.json``); their inputs' records (``<name>.<kind>.record.json``) say where the video is.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from . import html
from .types import READABLE_SCHEMAS, Result, load_result
from .viewer import drawn_segments, write_result_page

FAILURES_FILE = "failures.json"
_NOT_RESULTS = (".record.json", ".activitynet.json")


@dataclass(frozen=True)
class ResultFile:
    """A result loaded from `path`, and the video its page shows (None when it cannot be found)."""

    path: Path
    result: Result
    video: Path | None

    @property
    def page_name(self) -> str:
        """``clip.segmentation.json`` -> ``clip.segmentation.html``."""
        return self.path.name.removesuffix(".json") + ".html"


def result_files(folder: Path) -> list[ResultFile]:
    """The results in `folder` (JSON files of the result schema, by name), each with its video."""
    found = []
    for path in sorted(folder.glob("*.json")):
        if path.name == FAILURES_FILE or path.name.endswith(_NOT_RESULTS):
            continue
        try:
            text = path.read_text(encoding="utf-8")
            schema = json.loads(text).get("schema")
        except (OSError, ValueError, AttributeError):
            continue  # not a JSON object: not one of ours
        if schema in READABLE_SCHEMAS:
            found.append(load_result_file(path, text))
    return found


def load_result_file(path: Path, text: str | None = None) -> ResultFile:
    """A result file and its video: the result's own path, else its input record's, else beside the file."""
    try:
        result = load_result(text if text is not None else path)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"result file '{path}' is damaged ({type(err).__name__}: {err}); write it again"
        ) from err
    return ResultFile(path, result, _find_video(path, result))


def _find_video(path: Path, result: Result) -> Path | None:
    candidates = []
    if result.video:
        candidates.append(Path(result.video))
    record = path.with_name(path.name.removesuffix(".json") + ".record.json")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # no record, or not ours
        candidates.append(Path(json.loads(record.read_text())["input"]["path"]))
    if result.video:
        candidates.append(path.parent / Path(result.video).name)
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def write_pages(
    results: Sequence[ResultFile], out_dir: Path, failures: Sequence[dict[str, Any]] = ()
) -> tuple[Path, list[Path]]:
    """Write each result's page and the index into `out_dir`; returns (index, pages)."""
    pages = [write_result_page(entry.result, out_dir / entry.page_name, entry.video) for entry in results]
    index = html.write_page(out_dir / "index.html", index_page(results, failures))
    return index, pages


def view_folder(folder: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Pages for every result in `folder` (from ``segment --out`` or ``batch``) and its index; returns it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder of results")
    return write_pages(result_files(folder), Path(out_dir or folder), read_failures(folder))[0]


def read_failures(folder: Path) -> list[dict[str, Any]]:
    """The entries of the folder's ``failures.json`` (video, error), or none."""
    try:
        entries = json.loads((folder / FAILURES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def index_page(results: Sequence[ResultFile], failures: Sequence[dict[str, Any]]) -> str:
    """The index: a row per result with its mini timeline, and the failures."""
    palette = html.Palette()
    rows = []
    for entry in results:
        result = entry.result
        colors = palette.classes_of(result.classes)
        segments = drawn_segments(result)
        mini = html.lane_element(html.Lane(result.video_id, segments, colors), result.duration)
        rows.append(
            f'<tr data-result="{html.escape(entry.path.name)}"><td><a href="{html.escape(entry.page_name)}">'
            f"{html.escape(result.video_id)}</a></td><td>{result.kind}</td>"
            f'<td class="mini">{mini}</td><td>{len(segments)}</td><td>{result.duration:.2f} s</td>'
            f"<td>{html.escape(result.model or '')}</td></tr>"
        )
    table = (
        '<table class="videos"><thead><tr><th>video</th><th>kind</th><th>timeline</th><th>segments</th>'
        f"<th>duration</th><th>model</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No results in this folder.</p>"
    )
    failed = "".join(
        f'<li data-video="{html.escape(entry.get("video", ""))}"><b>{html.escape(entry.get("video", "?"))}'
        f"</b>: {html.escape(entry.get('error', ''))}</li>"
        for entry in failures
    )
    failed_section = (
        f'<h2>Failed ({len(failures)})</h2><ul class="failures">{failed}</ul>' if failures else ""
    )
    count = f"{len(results)} result{'s' * (len(results) != 1)}"
    body = f'<h1>Results</h1><div class="meta">{count}</div>{table}{failed_section}'
    return html.page("actfusion results", body, palette, interactive=False)
