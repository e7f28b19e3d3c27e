"""Text exports of a result (our JSON schema, CSV, MS-TCN, ActivityNet, ELAN, Label Studio), the table, and
saving by suffix."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..fileio import atomic_write
from .elan import to_eaf
from .labelstudio import to_labelstudio

if TYPE_CHECKING:
    from .types import Result

FORMATS = ("json", "csv", "mstcn", "activitynet", "eaf", "labelstudio")
_FORMAT_BY_SUFFIX = {
    ".eaf": "eaf",
    ".json": "json",
    ".csv": "csv",
    ".txt": "mstcn",
    ".png": "png",
    ".html": "html",
}


def to_json(result: Result, include_probs: bool = False, indent: int | None = 2) -> str:
    """The document of the result schema (see `Result.to_dict`)."""
    return json.dumps(result.to_dict(include_probs), indent=indent)


def to_csv(result: Result, exclude: Collection[str] = ()) -> str:
    """One row per segment: video (its file stem), label, label_id, start, end (s), start_frame, end_frame,
    score (plus part); segments labelled with a name in `exclude` (e.g. "background") are left out. The
    video, start, end and label columns read back as annotations (`actfusion dataset build`)."""
    rows = [{"video": result.video_id, **row} for row in result.summary() if row["label"] not in exclude]
    fields = ["video", *(name for name in result.summary()[0])]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_mstcn(result: Result) -> str:
    """MS-TCN ground-truth layout: one class name per feature frame, one per line."""
    return "".join(f"{result.classes[label]}\n" for label in result.frame_labels.tolist())


def to_activitynet(result: Result) -> str:
    """ActivityNet detection-results JSON (version 1.3) holding this video's segments."""
    return json.dumps(activitynet_document([result]), indent=2)


def activitynet_document(results: Sequence[Result]) -> dict[str, Any]:
    """ActivityNet detection results (version 1.3) for several videos, keyed by video id (file stem)."""
    document: dict[str, Any] = {
        "version": "VERSION 1.3",
        "results": {},
        "external_data": {"used": False, "details": "actfusion-sdk"},
    }
    for result in results:
        entries = []
        for row in result.summary():
            entry = {"label": row["label"], "score": row["score"], "segment": [row["start"], row["end"]]}
            if "part" in row:
                entry["part"] = row["part"]
            entries.append(entry)
        document["results"][result.video_id] = entries
    return document


_EXPORTERS: dict[str, Callable[[Result], str]] = {
    "json": to_json,
    "csv": to_csv,
    "mstcn": to_mstcn,
    "activitynet": to_activitynet,
    "eaf": to_eaf,
    "labelstudio": to_labelstudio,
}


def export(result: Result, fmt: str) -> str:
    """The text of one of FORMATS: "json", "csv", "mstcn", "activitynet", "eaf" (ELAN) or "labelstudio"
    (Label Studio predictions), each with its defaults."""
    if fmt not in _EXPORTERS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return _EXPORTERS[fmt](result)


def save(result: Result, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write an export (or the timeline PNG, or the viewer page); the format comes from the suffix unless
    `fmt` is given."""
    path = Path(path)
    fmt = fmt or _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot tell the format of {str(path)!r} from its suffix; use one of "
            f"{', '.join(_FORMAT_BY_SUFFIX)} or pass fmt= (one of {', '.join(FORMATS)}, png, html)"
        )
    if fmt == "png":
        return result.plot(path)
    if fmt == "html":
        return result.to_html(path)
    with atomic_write(path, "w") as stream:
        stream.write(export(result, fmt))
    return path


def table(result: Result) -> str:
    """A readable table of the segments, with a header line, the parts' headings and the timings."""
    count = len(result.summary())
    header = (
        f"{result.video or 'features'}  |  {result.duration:.2f} s  |  {count} segment{'s' * (count != 1)}"
    )
    if result.model:
        header += f"  |  model {result.model}"
    lines = [header, f"{'#':>4}  {'label':<24} {'start':>9} {'end':>9} {'length':>9} {'score':>6}"]
    number = 0
    for part, segments in result.parts():
        title = result.part_title(part)
        if title is not None:
            lines.append(f"  -- {title} --")
        for segment in segments:
            number += 1
            score = "" if segment.score is None else f"{segment.score:.2f}"
            lines.append(
                f"{number:>4}  {segment.label:<24} {segment.start:>8.2f}s {segment.end:>8.2f}s "
                f"{segment.duration:>8.2f}s {score:>6}"
            )
    if result.timings:
        stages = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in result.timings.items())
        lines.append(f"timings: {stages}")
    return "\n".join(lines)
