"""Action annotations read from the files annotation tools write, as one typed list of segments in seconds.

Formats (`read_annotations` picks one by suffix, and for ``.json`` by content):

- CSV / TSV (``.csv``, ``.tsv``): one segment per row, times in seconds (``12.5``) or as ``[h:]mm:ss.sss``.
  A header names the columns; accepted spellings (any case): video = video, file, filename, name, video_id;
  start = start, start_time, begin, from, t_start; end = end, end_time, stop, to, t_end;
  label = label, action, class, activity. Without a header the columns are ``video,start,end,label``.
  The video is a file name or stem (``clip01.mp4`` or ``clip01``); the delimiter is sniffed (``,`` ``;`` tab).
- ELAN ``.eaf`` (read with pympi-ling): the annotations of one tier (``tier``; may be left out when the file
  has a single tier), time slots in milliseconds; the video is the first linked media file, else the stem.
- Label Studio JSON (or JSON-MIN) export of video timeline labels (``timelinelabels``; 1-based frames,
  both ends included, converted with the task's ``data.fps`` / ``frameRate``, else ``frame_rate``, else
  Label Studio's default of 24 fps); the video is the stem of ``data.video``. Predictions are read when a
  task has no annotations (a pre-annotation file comes back as it was written).
- ActivityNet JSON: ``database -> <video> -> annotations -> [{segment: [s, e], label}]`` (ground truth) or
  ``results -> <video> -> [{segment, label}]`` (detections, as `activitynet_document` writes them).
- The SDK's result JSON (`Result.to_json`, with its "schema"): its segments (a corrected prediction as ground
  truth).
- MS-TCN ground truth (``<video>.txt``, one label per frame at ``frame_rate`` frames per second).

Readers check syntax only (numbers, required fields); what a segment means for a dataset (overlaps, times
past the video's end, label spellings) is judged by `actfusion_sdk.data.builder`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from ..video.files import VIDEO_SUFFIXES

LABEL_STUDIO_DEFAULT_FPS = 24.0  # the <Video> tag's default frameRate (labelstud.io/tags/video)
COLUMN_NAMES = {
    "video": ("video", "file", "filename", "name", "video_id"),
    "start": ("start", "start_time", "begin", "from", "t_start"),
    "end": ("end", "end_time", "stop", "to", "t_end"),
    "label": ("label", "action", "class", "activity"),
}
SUFFIXES = (".csv", ".tsv", ".eaf", ".json", ".txt")


@dataclass(frozen=True)
class Annotation:
    """One labelled segment of one video: [start, end) in seconds, and where it was read from.

    ``video`` is the video's name (its file stem); ``line`` is the 1-based line of a text file, or for
    structured files a description of the element (an ELAN annotation id, a JSON path).
    """

    video: str
    start: float
    end: float
    label: str
    source: Path
    line: int | str

    @property
    def where(self) -> str:
        """``file:line`` or ``file (element)``, for messages."""
        return f"{self.source}:{self.line}" if isinstance(self.line, int) else f"{self.source} ({self.line})"

    @property
    def duration(self) -> float:
        return self.end - self.start


def video_name(reference: str) -> str:
    """The video an annotation names: the stem of a file name, path or URL (``a/b/clip01.mp4`` -> clip01).
    Only a video suffix (or a short alphabetic one) is cut, so ``take.v2`` stays ``take.v2``."""
    name = reference.strip().replace("\\", "/").rsplit("/", 1)[-1]
    name = name.split("?", 1)[0]  # URLs such as /data/upload/1/clip.mp4?d=...
    stem, dot, suffix = name.rpartition(".")
    is_suffix = f".{suffix.lower()}" in VIDEO_SUFFIXES or (suffix.isalpha() and len(suffix) <= 4)
    return stem if dot and stem and is_suffix else name


def read_annotations(
    path: str | Path, *, tier: str | None = None, frame_rate: float | None = None
) -> list[Annotation]:
    """The segments of one annotation file (format by suffix and content, see the module docstring).

    ``tier``: the ELAN tier to read. ``frame_rate``: frames per second of MS-TCN ground truth (required
    there) and of Label Studio frame ranges whose task states no rate.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file '{path}' not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return read_table(path)
    if suffix == ".eaf":
        return read_eaf(path, tier)
    if suffix == ".txt":
        if frame_rate is None:
            raise DatasetError(
                f"'{path}' is read as MS-TCN ground truth (one label per frame) and needs its frame rate: "
                "pass --gt-fps (frame_rate=)"
            )
        return read_mstcn(path, frame_rate)
    if suffix == ".json":
        return read_json(path, frame_rate)
    raise DatasetError(
        f"cannot tell the annotation format of '{path}' from its suffix; use one of {', '.join(SUFFIXES)}"
    )


def read_all(
    paths: Iterable[str | Path], *, tier: str | None = None, frame_rate: float | None = None
) -> list[Annotation]:
    """The segments of several annotation files, in file order."""
    return [item for path in paths for item in read_annotations(path, tier=tier, frame_rate=frame_rate)]


# ---- text formats ----------------------------------------------------------------------------------


def parse_seconds(text: str, where: str) -> float:
    """Seconds from ``12.5`` or ``[h:]mm:ss.sss``; a DatasetError naming ``where`` otherwise."""
    value = text.strip()
    try:
        seconds = 0.0
        for part in value.split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError:
        seconds = math.nan
    if not value or not math.isfinite(seconds):
        raise DatasetError(f"{where}: time {text!r} is not a number of seconds (e.g. 12.5 or 00:12.5)")
    return seconds


def read_table(path: Path) -> list[Annotation]:
    """CSV/TSV rows ``video,start,end,label`` (see the module docstring for header names)."""
    text = path.read_text(encoding="utf-8-sig")
    rows = [
        (number, row) for number, row in enumerate(csv.reader(text.splitlines(), _dialect(path, text)), 1)
    ]
    rows = [(number, row) for number, row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise DatasetError(f"'{path}' holds no annotation rows; write 'video,start,end,label' lines")
    columns = _header_columns(path, rows[0][1])
    if columns is None:
        columns = {"video": 0, "start": 1, "end": 2, "label": 3}
    else:
        rows = rows[1:]
    width = max(columns.values()) + 1
    found = []
    for number, row in rows:
        where = f"{path}:{number}"
        if len(row) < width:
            raise DatasetError(
                f"{where}: expected {width} columns (video, start, end, label), got {len(row)}"
            )
        video, label = row[columns["video"]].strip(), row[columns["label"]].strip()
        if not video or not label:
            raise DatasetError(f"{where}: the video and the label must not be empty")
        found.append(
            Annotation(
                video=video_name(video),
                start=parse_seconds(row[columns["start"]], where),
                end=parse_seconds(row[columns["end"]], where),
                label=label,
                source=path,
                line=number,
            )
        )
    return found


def _dialect(path: Path, text: str) -> type[csv.Dialect] | csv.Dialect:
    if path.suffix.lower() == ".tsv":
        return csv.excel_tab
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _header_columns(path: Path, row: list[str]) -> dict[str, int] | None:
    """Column index of each field when `row` is a header, None when it is data (its start is a time)."""
    names = [cell.strip().lower().replace(" ", "_") for cell in row]
    columns = {}
    for field, spellings in COLUMN_NAMES.items():
        matches = [index for index, name in enumerate(names) if name in spellings]
        if matches:
            columns[field] = matches[0]
    if not columns:
        return None
    missing = [field for field in COLUMN_NAMES if field not in columns]
    if missing:
        accepted = "; ".join(f"{field}: {', '.join(COLUMN_NAMES[field])}" for field in missing)
        raise DatasetError(f"{path}:1: the header {row} lacks a column for {', '.join(missing)} ({accepted})")
    return columns


def read_mstcn(path: Path, frame_rate: float) -> list[Annotation]:
    """MS-TCN ground truth, one label per line: equal labels on lines i..j-1 make [i, j) / frame_rate."""
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise DatasetError(f"the ground-truth frame rate must be a positive number, got {frame_rate!r}")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise DatasetError(f"ground truth '{path}' is empty")
    found, first = [], 0
    for index in range(1, len(labels) + 1):
        if index < len(labels) and labels[index] == labels[first]:
            continue
        if not labels[first]:
            raise DatasetError(f"{path}:{first + 1}: empty line; every frame needs a label")
        found.append(
            Annotation(path.stem, first / frame_rate, index / frame_rate, labels[first], path, first + 1)
        )
        first = index
    return found


# ---- ELAN ------------------------------------------------------------------------------------------


def read_eaf(path: Path, tier: str | None) -> list[Annotation]:
    """The aligned annotations of one tier of an ELAN file (times from its millisecond time slots)."""
    try:
        from pympi.Elan import Eaf  # pympi-ling: the library ELAN users script with
    except ImportError as err:
        raise DatasetError(
            f"reading ELAN files ('{path}') needs pympi-ling: pip install 'actfusion-sdk[elan]'"
        ) from err
    try:
        document = Eaf(str(path))
    except Exception as err:  # pympi raises bare XML, key and value errors for broken files
        raise DatasetError(f"'{path}' is not a readable ELAN file: {type(err).__name__}: {err}") from err
    names = [name for name in document.get_tier_names() if name != "default" or document.tiers[name][0]]
    if tier is None:
        if len(names) != 1:
            raise DatasetError(f"'{path}' has tiers {names}; choose one with --tier (tier=)")
        tier = names[0]
    if tier not in document.tiers:
        raise DatasetError(f"'{path}' has no tier {tier!r}; its tiers are {names}")
    aligned = document.tiers[tier][0]
    if not aligned:
        raise DatasetError(f"tier {tier!r} of '{path}' has no time-aligned annotations")
    media = [item.get("MEDIA_URL") or item.get("RELATIVE_MEDIA_URL") for item in document.media_descriptors]
    video = video_name(media[0]) if media and media[0] else path.stem
    found = []
    for annotation_id, (start_slot, end_slot, value, _) in aligned.items():
        where = f"tier {tier!r}, annotation {annotation_id}"
        start, end = document.timeslots.get(start_slot), document.timeslots.get(end_slot)
        if start is None or end is None:
            raise DatasetError(f"{path} ({where}): its time slots have no time; align it in ELAN")
        if not value.strip():
            raise DatasetError(f"{path} ({where}): the annotation has no label")
        found.append(Annotation(video, start / 1000, end / 1000, value.strip(), path, where))
    return sorted(found, key=lambda item: (item.start, item.end))


# ---- JSON formats ----------------------------------------------------------------------------------


def read_json(path: Path, frame_rate: float | None = None) -> list[Annotation]:
    """A Label Studio export, an ActivityNet document or an SDK result, told apart by their shape."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"'{path}' is not valid JSON: {err}") from err
    if isinstance(document, list) or (isinstance(document, dict) and "data" in document):
        return read_label_studio(path, document, frame_rate)
    if isinstance(document, dict) and ("database" in document or "results" in document):
        return read_activitynet(path, document)
    if isinstance(document, dict) and "schema" in document:
        return read_result(path)
    raise DatasetError(
        f"'{path}' is neither a Label Studio export (a list of tasks), an ActivityNet document "
        "('database' or 'results') nor an actfusion result ('schema')"
    )


def read_activitynet(path: Path, document: dict[str, Any]) -> list[Annotation]:
    """ActivityNet ground truth (``database``) or detection results (``results``)."""
    key = "database" if "database" in document else "results"
    videos = document[key]
    if not isinstance(videos, dict):
        raise DatasetError(f"{path} ({key}): expected an object keyed by video id")
    found = []
    for video, entry in videos.items():
        items = entry.get("annotations") if key == "database" and isinstance(entry, dict) else entry
        where = f"{key}/{video}" + ("/annotations" if key == "database" else "")
        if not isinstance(items, list):
            raise DatasetError(f"{path} ({where}): expected a list of {{segment, label}} objects")
        for index, item in enumerate(items):
            element = f"{where}[{index}]"
            segment = item.get("segment") if isinstance(item, dict) else None
            if not (isinstance(segment, list) and len(segment) == 2) or not isinstance(
                item.get("label"), str
            ):
                raise DatasetError(f"{path} ({element}): expected {{'segment': [start, end], 'label': str}}")
            start, end = (_number(value, path, element) for value in segment)
            found.append(Annotation(video_name(video), start, end, item["label"].strip(), path, element))
    return found


def read_result(path: Path) -> list[Annotation]:
    """The segments of an SDK result (`Result.from_json`): observed and anticipated ones for anticipation."""
    from ..errors import InputError
    from ..results.types import load_result

    try:
        result = load_result(path)
    except (InputError, KeyError, TypeError, ValueError) as err:
        raise DatasetError(f"'{path}' is not a readable actfusion result: {err}") from err
    video = video_name(result.video) if result.video else path.name.split(".", 1)[0]
    return [
        Annotation(video, segment.start, segment.end, segment.label, path, f"{part}[{index}]")
        for part, segments in result.parts()
        for index, segment in enumerate(segments)
    ]


def read_label_studio(path: Path, document: Any, frame_rate: float | None) -> list[Annotation]:
    """``timelinelabels`` regions of a Label Studio JSON export (a list of tasks, or one task)."""
    tasks = document if isinstance(document, list) else [document]
    found = []
    for number, task in enumerate(tasks):
        where = f"task {task.get('id', number) if isinstance(task, dict) else number}"
        if isinstance(task, dict) and "data" not in task and isinstance(task.get("video"), str):
            found += _json_min_task(path, where, task, frame_rate)
            continue
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("video"), str):
            raise DatasetError(f"{path} ({where}): a task needs data.video (the video's URL or path)")
        fps = _task_frame_rate(path, where, data, frame_rate)
        kind, entries = _task_regions(task)
        for entry_index, entry in enumerate(entries):
            regions = entry.get("result", []) if isinstance(entry, dict) else []
            for region_index, region in enumerate(regions):
                if not isinstance(region, dict) or region.get("type") != "timelinelabels":
                    continue
                element = f"{where}, {kind}[{entry_index}].result[{region_index}]"
                found += _timeline_region(path, element, video_name(data["video"]), region, fps)
    if not found:
        raise DatasetError(f"'{path}' holds no timelinelabels regions (Label Studio video timeline labels)")
    return found


def _json_min_task(
    path: Path, where: str, task: dict[str, Any], frame_rate: float | None
) -> list[Annotation]:
    """A task of Label Studio's JSON-MIN export: the task's data and each control's values side by side
    (``{"video": ..., "<control>": [{"ranges": [...], "timelinelabels": [...]}, ...]}``)."""
    fps = _task_frame_rate(path, where, task, frame_rate)
    found = []
    for key, values in task.items():
        for index, value in enumerate(values if isinstance(values, list) else [values]):
            if isinstance(value, dict) and "timelinelabels" in value:
                element = f"{where}, {key}[{index}]"
                found += _timeline_region(path, element, video_name(task["video"]), {"value": value}, fps)
    return found


def _task_regions(task: dict[str, Any]) -> tuple[str, list[Any]]:
    """A task's annotations, or its predictions when it has no annotation yet."""
    annotations = [item for item in task.get("annotations") or [] if not item.get("was_cancelled")]
    return ("annotations", annotations) if annotations else ("predictions", task.get("predictions") or [])


def _task_frame_rate(path: Path, where: str, data: dict[str, Any], given: float | None) -> float:
    for key in ("fps", "frameRate", "framerate", "frame_rate"):
        if key in data:
            rate = _number(data[key], path, f"{where}, data.{key}")
            if rate <= 0:
                raise DatasetError(f"{path} ({where}): data.{key} must be positive, got {rate}")
            return rate
    return given if given is not None else LABEL_STUDIO_DEFAULT_FPS


def _timeline_region(
    path: Path, element: str, video: str, region: dict[str, Any], fps: float
) -> list[Annotation]:
    value = region.get("value")
    labels = value.get("timelinelabels") if isinstance(value, dict) else None
    ranges = value.get("ranges") if isinstance(value, dict) else None
    if not (isinstance(labels, list) and len(labels) == 1 and isinstance(labels[0], str)):
        raise DatasetError(f"{path} ({element}): value.timelinelabels must hold exactly one label")
    if not isinstance(ranges, list) or not ranges:
        raise DatasetError(f"{path} ({element}): value.ranges must list {{start, end}} frame ranges")
    found = []
    for frames in ranges:
        if not isinstance(frames, dict):
            raise DatasetError(f"{path} ({element}): a range must be {{'start': frame, 'end': frame}}")
        first = _number(frames.get("start"), path, element)
        last = _number(frames.get("end", first), path, element)
        # Frames are 1-based and both ends are included: frame n shows [(n - 1) / fps, n / fps).
        found.append(Annotation(video, (first - 1) / fps, last / fps, labels[0].strip(), path, element))
    return found


def _number(value: Any, path: Path, element: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{path} ({element}): expected a number, got {value!r}")
    return float(value)
