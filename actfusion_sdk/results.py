"""Typed results of segmentation and anticipation, their exports and their timeline plot.

Results know nothing of torch: a result is built from per-frame labels (and optionally probabilities) at the
feature rate `fps` (feature frames per second). Feature frame i covers [i/fps, (i+1)/fps); the last frame ends
at the video's `duration`, so the segments are contiguous and cover [0, duration].

JSON schema "actfusion-sdk/result/1" (`to_json`, loaded back by `from_json` / `load_result`)::

    {
      "schema": "actfusion-sdk/result/1",
      "kind": "segmentation" | "anticipation",
      "video": str | null,            # source video path, if any
      "model": str | null,            # model name from the model card
      "fps": float,                   # feature frames per second
      "duration": float,              # seconds covered by the frame labels
      "num_frames": int,
      "classes": [str, ...],          # label_id -> label
      "frame_labels": [int, ...],     # one label id per feature frame
      "frame_probs": [[float]] | null,  # [classes][frames], only with include_probs=True
      "timings": {stage: seconds},
      # kind "segmentation":
      "segments": [segment, ...],
      # kind "anticipation":
      "observed_segments": [segment, ...], "anticipated_segments": [segment, ...],
      "cut_frame": int, "cut_time": float, "horizon": float, "observation_ratio": float | null
    }
    segment = {"label": str, "label_id": int, "start": float, "end": float,
               "start_frame": int, "end_frame": int, "score": float | null}

Times are seconds, `end` and `end_frame` are exclusive, `score` is the mean probability of the segment's label
over its frames.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import ConfigError, InputError
from .fileio import atomic_write

SCHEMA = "actfusion-sdk/result/1"
FORMATS = ("json", "csv", "mstcn", "activitynet")
_FORMAT_BY_SUFFIX = {".json": "json", ".csv": "csv", ".txt": "mstcn", ".png": "png"}
_SEGMENT_COLUMNS = ("label", "label_id", "start", "end", "start_frame", "end_frame", "score")


@dataclass(frozen=True)
class Segment:
    """One action instance: a maximal run of equal frame labels, in seconds and in feature frames."""

    label: str
    label_id: int
    start: float
    end: float
    start_frame: int
    end_frame: int
    score: float | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SEGMENT_COLUMNS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        score = data.get("score")
        return cls(
            label=str(data["label"]),
            label_id=int(data["label_id"]),
            start=float(data["start"]),
            end=float(data["end"]),
            start_frame=int(data["start_frame"]),
            end_frame=int(data["end_frame"]),
            score=None if score is None else float(score),
        )


def build_segments(
    frame_labels: np.ndarray,
    classes: Sequence[str],
    fps: float,
    duration: float,
    *,
    frame_probs: np.ndarray | None = None,
    first_frame: int = 0,
    last_frame: int | None = None,
) -> tuple[Segment, ...]:
    """Maximal runs of `frame_labels[first_frame:last_frame]` at `fps`; the last frame ends at `duration`."""
    num_frames = len(frame_labels)
    last_frame = num_frames if last_frame is None else last_frame
    part = frame_labels[first_frame:last_frame]
    if len(part) == 0:
        return ()
    starts = np.concatenate([[0], np.flatnonzero(np.diff(part)) + 1]) + first_frame
    ends = np.append(starts[1:], last_frame)
    segments = []
    for start_frame, end_frame in zip(starts.tolist(), ends.tolist(), strict=True):
        label_id = int(frame_labels[start_frame])
        score = None
        if frame_probs is not None:
            score = float(np.mean(frame_probs[label_id, start_frame:end_frame], dtype=np.float64))
        segments.append(
            Segment(
                label=classes[label_id],
                label_id=label_id,
                start=_frame_time(start_frame, num_frames, fps, duration),
                end=_frame_time(end_frame, num_frames, fps, duration),
                start_frame=start_frame,
                end_frame=end_frame,
                score=score,
            )
        )
    return tuple(segments)


def _frame_time(frame: int, num_frames: int, fps: float, duration: float) -> float:
    """Start time of feature frame `frame`; the end of the last frame is the video's duration."""
    return duration if frame >= num_frames else min(frame / fps, duration)


def _validated_frames(
    frame_labels: Any, classes: Sequence[str], fps: float, frame_probs: Any, duration: float | None
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Check shapes and ranges; return read-only labels, read-only probs and the duration."""
    labels = np.array(frame_labels, dtype=np.int64).reshape(-1)
    if len(labels) == 0:
        raise ConfigError("a result needs at least one frame label; got an empty sequence")
    if not fps > 0:
        raise ConfigError(f"fps must be positive (feature frames per second), got {fps}")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ConfigError(
            f"frame labels must be class ids in [0, {len(classes)}); "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    probs = None
    if frame_probs is not None:
        probs = np.array(frame_probs, dtype=np.float32)
        if probs.shape != (len(classes), len(labels)):
            raise ConfigError(
                f"frame_probs must have shape [classes, frames] = {(len(classes), len(labels))}, "
                f"got {probs.shape}"
            )
        probs.setflags(write=False)
    if duration is None:
        duration = len(labels) / fps
    if not duration > (len(labels) - 1) / fps:
        raise ConfigError(
            f"duration {duration} s is too short for {len(labels)} frames at {fps} frames/s "
            f"(the last frame starts at {(len(labels) - 1) / fps} s)"
        )
    labels.setflags(write=False)
    return labels, probs, float(duration)


class _TimelineExports:
    """Exports, table and plot shared by both result kinds (they only differ in their segment parts)."""

    kind: str
    frame_labels: np.ndarray
    frame_probs: np.ndarray | None
    fps: float
    duration: float
    classes: tuple[str, ...]
    video: str | None
    model: str | None
    timings: Mapping[str, float]

    def _parts(self) -> list[tuple[str, tuple[Segment, ...]]]:
        """(part name, segments) in time order; one part for segmentation, two for anticipation."""
        raise NotImplementedError

    def _kind_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def _part_title(self, part: str) -> str:
        return part

    @property
    def num_frames(self) -> int:
        return len(self.frame_labels)

    @property
    def video_id(self) -> str:
        """The video's file stem, or "video" for features without a source file."""
        return Path(self.video).stem if self.video else "video"

    def summary(self) -> list[dict[str, Any]]:
        """One dict per segment (with its part for anticipation), in time order."""
        rows = []
        for part, segments in self._parts():
            for segment in segments:
                row = segment.to_dict()
                if self.kind == "anticipation":
                    row = {"part": part, **row}
                rows.append(row)
        return rows

    def to_dict(self, include_probs: bool = False) -> dict[str, Any]:
        """The JSON document of schema "actfusion-sdk/result/1" as a dict (see the module docstring)."""
        probs = self.frame_probs.tolist() if include_probs and self.frame_probs is not None else None
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "video": self.video,
            "model": self.model,
            "fps": self.fps,
            "duration": self.duration,
            "num_frames": self.num_frames,
            "classes": list(self.classes),
            **self._kind_fields(),
            "frame_labels": self.frame_labels.tolist(),
            "frame_probs": probs,
            "timings": dict(self.timings),
        }

    def to_json(self, include_probs: bool = False, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(include_probs), indent=indent)

    def to_csv(self) -> str:
        """One row per segment: label, label_id, start, end (s), start_frame, end_frame, score (plus part)."""
        rows = self.summary()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()

    def to_mstcn(self) -> str:
        """MS-TCN ground-truth layout: one class name per feature frame, one per line."""
        return "".join(f"{self.classes[label]}\n" for label in self.frame_labels.tolist())

    def to_activitynet(self) -> str:
        """ActivityNet detection-results JSON (version 1.3) holding this video's segments."""
        return json.dumps(activitynet_document([self]), indent=2)

    def export(self, fmt: str) -> str:
        """The text of one of FORMATS: "json", "csv", "mstcn" or "activitynet"."""
        exporters = {
            "json": self.to_json,
            "csv": self.to_csv,
            "mstcn": self.to_mstcn,
            "activitynet": self.to_activitynet,
        }
        if fmt not in exporters:
            raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return exporters[fmt]()

    def save(self, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
        """Write an export (or the timeline PNG); the format comes from the suffix unless `fmt` is given.

        Suffixes: .json (our schema), .csv, .txt (MS-TCN), .png (plot); ActivityNet needs fmt="activitynet".
        """
        path = Path(path)
        fmt = fmt or _FORMAT_BY_SUFFIX.get(path.suffix.lower())
        if fmt is None:
            raise ConfigError(
                f"cannot tell the format of {str(path)!r} from its suffix; use one of "
                f"{', '.join(_FORMAT_BY_SUFFIX)} or pass fmt= (one of {', '.join(FORMATS)}, png)"
            )
        if fmt == "png":
            return self.plot(path)
        with atomic_write(path, "w") as stream:
            stream.write(self.export(fmt))
        return path

    def table(self) -> str:
        """A readable table of the segments, with a header line and the timings."""
        count = len(self.summary())
        header = (
            f"{self.video or 'features'}  |  {self.duration:.2f} s  |  {count} segment{'s' * (count != 1)}"
        )
        if self.model:
            header += f"  |  model {self.model}"
        lines = [header, f"{'#':>4}  {'label':<24} {'start':>9} {'end':>9} {'length':>9} {'score':>6}"]
        number = 0
        for part, segments in self._parts():
            if self.kind == "anticipation":
                lines.append(f"  -- {self._part_title(part)} --")
            for segment in segments:
                number += 1
                score = "" if segment.score is None else f"{segment.score:.2f}"
                lines.append(
                    f"{number:>4}  {segment.label:<24} {segment.start:>8.2f}s {segment.end:>8.2f}s "
                    f"{segment.duration:>8.2f}s {score:>6}"
                )
        if self.timings:
            stages = ", ".join(f"{stage} {seconds:.2f} s" for stage, seconds in self.timings.items())
            lines.append(f"timings: {stages}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(
        self,
        path: str | os.PathLike[str],
        ground_truth: Sequence[str] | Sequence[int] | np.ndarray | None = None,
        width: int = 1200,
        dpi: int = 100,
    ) -> Path:
        """Draw the timeline (coloured bars, legend, optional ground-truth row) as a PNG, `width` px wide."""
        gt_ids = None if ground_truth is None else _label_ids(ground_truth, self.classes)
        path = Path(path)
        _draw_timeline(self, path, gt_ids, width, dpi)
        return path


@dataclass(frozen=True, eq=False)
class SegmentationResult(_TimelineExports):
    """Temporal action segmentation of one video. Build it with `from_frames`; arrays are read-only."""

    segments: tuple[Segment, ...]
    frame_labels: np.ndarray
    fps: float
    duration: float
    classes: tuple[str, ...]
    frame_probs: np.ndarray | None = None
    video: str | None = None
    model: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)

    kind = "segmentation"

    @classmethod
    def from_frames(
        cls,
        frame_labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        fps: float,
        *,
        frame_probs: np.ndarray | None = None,
        duration: float | None = None,
        video: str | None = None,
        model: str | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> SegmentationResult:
        """Segments from per-frame labels [T] (and probabilities [classes, T]) at `fps` feature frames/s."""
        labels, probs, duration = _validated_frames(frame_labels, classes, fps, frame_probs, duration)
        return cls(
            segments=build_segments(labels, classes, fps, duration, frame_probs=probs),
            frame_labels=labels,
            fps=float(fps),
            duration=duration,
            classes=tuple(classes),
            frame_probs=probs,
            video=video,
            model=model,
            timings=MappingProxyType(dict(timings or {})),
        )

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> SegmentationResult:
        """Load a result written by `to_json` (a path or the JSON text)."""
        result = load_result(source)
        if not isinstance(result, cls):
            raise InputError(
                f"expected a segmentation result, got kind {result.kind!r}; use AnticipationResult"
            )
        return result

    def _parts(self) -> list[tuple[str, tuple[Segment, ...]]]:
        return [("segments", self.segments)]

    def _kind_fields(self) -> dict[str, Any]:
        return {"segments": [segment.to_dict() for segment in self.segments]}


@dataclass(frozen=True, eq=False)
class AnticipationResult(_TimelineExports):
    """Long-term anticipation: segments of the observed part and the anticipated future, split at the cut.

    `frame_labels` covers observed and anticipated frames; `duration` is the end of the anticipated window,
    so `horizon` = duration - cut_time. A segment spanning the cut is split into an observed and an
    anticipated one.
    """

    observed_segments: tuple[Segment, ...]
    anticipated_segments: tuple[Segment, ...]
    frame_labels: np.ndarray
    fps: float
    duration: float
    classes: tuple[str, ...]
    cut_frame: int
    cut_time: float
    observation_ratio: float | None = None
    frame_probs: np.ndarray | None = None
    video: str | None = None
    model: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)

    kind = "anticipation"

    @property
    def horizon(self) -> float:
        """Seconds anticipated after the cut."""
        return self.duration - self.cut_time

    @property
    def segments(self) -> tuple[Segment, ...]:
        """Observed then anticipated segments."""
        return self.observed_segments + self.anticipated_segments

    @classmethod
    def from_frames(
        cls,
        frame_labels: Sequence[int] | np.ndarray,
        classes: Sequence[str],
        fps: float,
        cut_frame: int,
        *,
        frame_probs: np.ndarray | None = None,
        duration: float | None = None,
        observation_ratio: float | None = None,
        video: str | None = None,
        model: str | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> AnticipationResult:
        """Split per-frame labels [T] at `cut_frame` (the first frame the model did not observe)."""
        labels, probs, duration = _validated_frames(frame_labels, classes, fps, frame_probs, duration)
        if not 0 < cut_frame < len(labels):
            raise ConfigError(f"cut_frame must be in (0, {len(labels)}) (frames), got {cut_frame}")

        def part(first: int, last: int) -> tuple[Segment, ...]:
            return build_segments(
                labels, classes, fps, duration, frame_probs=probs, first_frame=first, last_frame=last
            )

        return cls(
            observed_segments=part(0, cut_frame),
            anticipated_segments=part(cut_frame, len(labels)),
            frame_labels=labels,
            fps=float(fps),
            duration=duration,
            classes=tuple(classes),
            cut_frame=int(cut_frame),
            cut_time=_frame_time(cut_frame, len(labels), fps, duration),
            observation_ratio=observation_ratio,
            frame_probs=probs,
            video=video,
            model=model,
            timings=MappingProxyType(dict(timings or {})),
        )

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> AnticipationResult:
        """Load a result written by `to_json` (a path or the JSON text)."""
        result = load_result(source)
        if not isinstance(result, cls):
            raise InputError(
                f"expected an anticipation result, got kind {result.kind!r}; use SegmentationResult"
            )
        return result

    def _parts(self) -> list[tuple[str, tuple[Segment, ...]]]:
        return [("observed", self.observed_segments), ("anticipated", self.anticipated_segments)]

    def _part_title(self, part: str) -> str:
        if part == "observed":
            ratio = "" if self.observation_ratio is None else f", ratio {self.observation_ratio:g}"
            return f"observed until the cut at {self.cut_time:.2f} s{ratio}"
        return f"anticipated, horizon {self.horizon:.2f} s"

    def _kind_fields(self) -> dict[str, Any]:
        return {
            "observed_segments": [segment.to_dict() for segment in self.observed_segments],
            "anticipated_segments": [segment.to_dict() for segment in self.anticipated_segments],
            "cut_frame": self.cut_frame,
            "cut_time": self.cut_time,
            "horizon": self.horizon,
            "observation_ratio": self.observation_ratio,
        }


Result = SegmentationResult | AnticipationResult


def load_result(source: str | os.PathLike[str]) -> Result:
    """Load either result kind from JSON text or a path to a file written by `to_json` / `save`."""
    text = str(source)
    if not text.lstrip().startswith("{"):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(f"cannot read result file {str(source)!r}: {err.strerror}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"result JSON is not valid JSON ({err}); expected schema {SCHEMA!r}") from err
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"expected a result of schema {SCHEMA!r}, found {found!r}")
    common = {
        "frame_labels": _read_only(np.array(data["frame_labels"], dtype=np.int64)),
        "fps": float(data["fps"]),
        "duration": float(data["duration"]),
        "classes": tuple(data["classes"]),
        "frame_probs": None
        if data.get("frame_probs") is None
        else _read_only(np.array(data["frame_probs"], dtype=np.float32)),
        "video": data.get("video"),
        "model": data.get("model"),
        "timings": MappingProxyType(dict(data.get("timings") or {})),
    }
    if data["kind"] == "segmentation":
        return SegmentationResult(segments=_segments(data["segments"]), **common)
    if data["kind"] == "anticipation":
        return AnticipationResult(
            observed_segments=_segments(data["observed_segments"]),
            anticipated_segments=_segments(data["anticipated_segments"]),
            cut_frame=int(data["cut_frame"]),
            cut_time=float(data["cut_time"]),
            observation_ratio=data.get("observation_ratio"),
            **common,
        )
    raise InputError(f"unknown result kind {data['kind']!r}; expected 'segmentation' or 'anticipation'")


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


def _segments(rows: Sequence[Mapping[str, Any]]) -> tuple[Segment, ...]:
    return tuple(Segment.from_dict(row) for row in rows)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _label_ids(labels: Sequence[str] | Sequence[int] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class ids of a label sequence given as names or ids (ConfigError names an unknown label)."""
    values = list(labels)
    if values and isinstance(values[0], str):
        index = {name: i for i, name in enumerate(classes)}
        unknown = sorted({value for value in values if value not in index})
        if unknown:
            raise ConfigError(
                f"ground-truth labels {unknown} are not classes of the model ({', '.join(classes)})"
            )
        return np.array([index[value] for value in values], dtype=np.int64)
    ids = np.array(values, dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= len(classes)):
        raise ConfigError(
            f"ground-truth label ids must be in [0, {len(classes)}), got [{ids.min()}, {ids.max()}]"
        )
    return ids


# Timeline layout in pixels, so the PNG size is exact: width x (top + rows + axis + legend).
_TOP, _ROW, _GAP, _AXIS, _LEFT, _RIGHT = 36, 34, 12, 44, 120, 24
_LEGEND_ROW, _LEGEND_ENTRY_WIDTH = 22, 180


def timeline_height(num_rows: int, num_legend_entries: int, width: int) -> int:
    """Pixel height of a timeline PNG with `num_rows` bar rows and a legend of that many entries."""
    columns = max(1, (width - _LEFT) // _LEGEND_ENTRY_WIDTH)
    legend_rows = -(-num_legend_entries // columns)
    return _TOP + num_rows * (_ROW + _GAP) + _AXIS + legend_rows * _LEGEND_ROW + 16


def class_colors(num_classes: int) -> list[tuple[float, float, float, float]]:
    """A fixed colour per class id: tab20's dark shades then its light ones (up to 20), even hues beyond."""
    from matplotlib import colormaps

    if num_classes <= 20:
        return [colormaps["tab20"](2 * i if i < 10 else 2 * (i - 10) + 1) for i in range(num_classes)]
    return [colormaps["hsv"](i / num_classes) for i in range(num_classes)]


def _draw_timeline(
    result: _TimelineExports, path: Path, ground_truth: np.ndarray | None, width: int, dpi: int
) -> None:
    """Render the prediction row (observed solid, anticipated hatched after the cut), optional GT row."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    rows: list[tuple[str, list[tuple[str, tuple[Segment, ...]]]]] = [("prediction", result._parts())]
    if ground_truth is not None and len(ground_truth):
        gt_duration = (
            result.duration if len(ground_truth) == result.num_frames else len(ground_truth) / result.fps
        )
        gt_segments = build_segments(ground_truth, result.classes, result.fps, gt_duration)
        rows.append(("ground truth", [("ground truth", gt_segments)]))
    shown = sorted({s.label_id for _, parts in rows for _, segments in parts for s in segments})
    colors = class_colors(len(result.classes))
    legend = [Patch(facecolor=colors[i], label=result.classes[i]) for i in shown]
    if result.kind == "anticipation":
        legend.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="anticipated"))

    height = timeline_height(len(rows), len(legend), width)
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    bars_height = len(rows) * (_ROW + _GAP)
    axes = figure.add_axes(
        (
            _LEFT / width,
            1 - (_TOP + bars_height) / height,
            (width - _LEFT - _RIGHT) / width,
            bars_height / height,
        )
    )
    end = max(result.duration, *(s.end for _, parts in rows for _, segments in parts for s in segments))
    for row, (_, parts) in enumerate(rows):
        y = len(rows) - 1 - row
        for part, segments in parts:
            anticipated = part == "anticipated"
            axes.broken_barh(
                [(s.start, s.duration) for s in segments],
                (y + 0.12, 0.76),
                facecolors=[colors[s.label_id] for s in segments],
                alpha=0.55 if anticipated else 1.0,
                hatch="///" if anticipated else None,
                edgecolor="black" if anticipated else "none",
                linewidth=0.4,
            )
    if result.kind == "anticipation":
        axes.axvspan(result.cut_time, end, color="0.85", zorder=0)
        axes.axvline(result.cut_time, color="black", linestyle="--", linewidth=1.5)
        axes.text(result.cut_time, len(rows), f" cut {result.cut_time:.2f} s", va="bottom", fontsize=8)
    axes.set_xlim(0, end)
    axes.set_ylim(0, len(rows))
    axes.set_yticks([len(rows) - 0.5 - row for row in range(len(rows))], [name for name, _ in rows])
    axes.set_xlabel("time (s)")
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    title = f"{result.video_id}: {result.kind}"
    if result.model:
        title += f" ({result.model})"
    figure.suptitle(title, x=_LEFT / width, y=1 - 6 / height, ha="left", va="top", fontsize=10)
    figure.legend(
        handles=legend,
        loc="lower left",
        bbox_to_anchor=(_LEFT / width, 4 / height),
        ncol=max(1, (width - _LEFT) // _LEGEND_ENTRY_WIDTH),
        frameon=False,
        fontsize=8,
        handlelength=1.6,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, format="png")
