"""The result types: one frozen base for what both kinds share, and the segmentation and anticipation kinds.

Results know nothing of torch: a result is built from per-frame labels (and optionally probabilities) at the
feature rate `fps` (feature frames per second). Feature frame i covers [i/fps, (i+1)/fps); the last frame ends
at the video's `duration`, so the segments are contiguous and cover [0, duration].

JSON schema "actfusion-sdk/result/2" (`to_json`, loaded back by `from_json` / `load_result`; documents of
"actfusion-sdk/result/1", which lack "frame_confidence", still load)::

    {
      "schema": "actfusion-sdk/result/2",
      "kind": "segmentation" | "anticipation",
      "video": str | null,            # source video path, if any
      "model": str | null,            # model name from the model card
      "fps": float,                   # feature frames per second
      "duration": float,              # seconds covered by the frame labels
      "num_frames": int,
      "classes": [str, ...],          # label_id -> label
      "frame_labels": [int, ...],     # one label id per feature frame
      "frame_probs": [[float]] | null,  # [classes][frames], only with include_probs=True
      "frame_confidence": [float] | null,  # per frame, the highest class probability (when probs were known)
      "timings": {stage: seconds},
      # kind "segmentation":
      "segments": [segment, ...],
      # kind "anticipation":
      "observed_segments": [segment, ...], "anticipated_segments": [segment, ...],
      "cut_frame": int, "cut_time": float, "horizon": float, "observation_ratio": float | null,
      "video_end": float | null       # where the video ends, when the anticipated window runs past it
    }
    segment = {"label": str, "label_id": int, "start": float, "end": float,
               "start_frame": int, "end_frame": int, "score": float | null}

Times are seconds, `end` and `end_frame` are exclusive, `score` is the mean probability of the segment's label
over its frames.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..errors import ConfigError, InputError
from . import exporters
from .document import check_consistent, check_fields, source_name
from .elan import to_eaf
from .labelstudio import to_labelstudio
from .segments import ANTICIPATED_PART, Segment, build_segments, frame_time

SCHEMA = "actfusion-sdk/result/2"
#: Earlier schemas that still load (their missing fields read as absent).
READABLE_SCHEMAS = (SCHEMA, "actfusion-sdk/result/1")

Part = tuple[str, tuple[Segment, ...]]
R = TypeVar("R", bound="Result")
_KINDS: dict[str, type[Result]] = {}


@dataclass(frozen=True, eq=False, kw_only=True)
class Result:
    """What both result kinds share: the frame labels they were built from and where they came from.

    A kind sets `kind` and overrides the hooks `parts`, `_kind_to_dict` and `_kind_from_dict` (and, if its
    parts need them, `_segment_row` and `part_title`); exports, table and plot work on the parts.
    """

    frame_labels: np.ndarray
    fps: float
    duration: float
    classes: tuple[str, ...]
    frame_probs: np.ndarray | None = None
    frame_confidence: np.ndarray | None = None  # [T] the highest class probability per frame
    video: str | None = None
    model: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _KINDS[cls.kind] = cls

    def parts(self) -> tuple[Part, ...]:
        """(part name, segments) in time order."""
        raise NotImplementedError

    def part_title(self, part: str) -> str | None:
        """The table's heading of a part, or None for no heading."""
        return None

    def end_of_video(self) -> float | None:
        """Where the source video ends, when the result reaches past it (the timeline marks it)."""
        return None

    def _segment_row(self, part: str, segment: Segment) -> dict[str, Any]:
        return segment.to_dict()

    def _kind_to_dict(self) -> dict[str, Any]:
        """The JSON fields of this kind."""
        raise NotImplementedError

    @classmethod
    def _kind_from_dict(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor arguments of this kind from its JSON fields."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        """Equal when of the same kind with the same content (arrays by value, timings included)."""
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict(include_probs=True) == other.to_dict(include_probs=True)

    __hash__ = None  # mutable-looking content (arrays): results are compared, not hashed

    @property
    def num_frames(self) -> int:
        return len(self.frame_labels)

    @property
    def video_id(self) -> str:
        """The video's file stem, or "video" for features without a source file."""
        return Path(self.video).stem if self.video else "video"

    def summary(self) -> list[dict[str, Any]]:
        """One dict per segment (with its part for anticipation), in time order."""
        return [self._segment_row(part, segment) for part, segments in self.parts() for segment in segments]

    def to_dict(self, include_probs: bool = False) -> dict[str, Any]:
        """The JSON document of schema SCHEMA as a dict (see the module docstring)."""
        probs = self.frame_probs.tolist() if include_probs and self.frame_probs is not None else None
        confidence = None if self.frame_confidence is None else self.frame_confidence.tolist()
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "video": self.video,
            "model": self.model,
            "fps": self.fps,
            "duration": self.duration,
            "num_frames": self.num_frames,
            "classes": list(self.classes),
            **self._kind_to_dict(),
            "frame_labels": self.frame_labels.tolist(),
            "frame_probs": probs,
            "frame_confidence": confidence,
            "timings": dict(self.timings),
        }

    @classmethod
    def from_json(cls: type[R], source: str | os.PathLike[str]) -> R:
        """Load a result written by `to_json` / `save` (a path or the JSON text).

        On `Result` either kind loads; on a kind's class, a document of another kind is an InputError. What
        is loaded is checked (`results.document`): a missing or mistyped field, a label that is not a class
        id, segments that contradict the frame labels are each an InputError naming the file and the field.
        """
        data, where = _read_document(source), source_name(source)
        kind = _KINDS.get(data["kind"]) if isinstance(data.get("kind"), str) else None
        if kind is None:
            raise InputError(
                f"{where}: unknown result kind {data.get('kind')!r}; expected one of "
                f"{', '.join(map(repr, _KINDS))}"
            )
        if not issubclass(kind, cls):
            raise InputError(
                f"{where}: expected a result of kind {cls.kind!r}, got kind {kind.kind!r}; use "
                f"{kind.__name__} (or load_result for either kind)"
            )
        check_fields(data, kind.kind, where)  # every field's type and range, before any is used
        probs = data.get("frame_probs")
        confidence = data.get("frame_confidence")
        if confidence is not None and len(confidence) != len(data["frame_labels"]):
            raise InputError(
                f"{where}: frame_confidence holds {len(confidence)} values for {len(data['frame_labels'])} "
                "frame_labels; expected one per frame (rewrite the file with to_json)"
            )
        shared = _shared_fields(
            frame_labels=np.array(data["frame_labels"], dtype=np.int64),
            frame_probs=None if probs is None else np.array(probs, dtype=np.float32),
            frame_confidence=None if confidence is None else np.array(confidence, dtype=np.float32),
            fps=data["fps"],
            duration=data["duration"],
            classes=data["classes"],
            video=data.get("video"),
            model=data.get("model"),
            timings=data.get("timings"),
        )
        result = kind(**shared, **kind._kind_from_dict(data))
        check_consistent(result, where)  # labels in range, segments exactly those the labels give
        return result

    def to_json(self, include_probs: bool = False, indent: int | None = 2) -> str:
        return exporters.to_json(self, include_probs, indent)

    def to_csv(self, exclude: Collection[str] = ()) -> str:
        """One row per segment: video, label, label_id, start, end (s), start_frame, end_frame, score (plus
        part); segments labelled with a name in `exclude` (e.g. "background") are left out."""
        return exporters.to_csv(self, exclude)

    def to_mstcn(self) -> str:
        """MS-TCN ground-truth layout: one class name per feature frame, one per line."""
        return exporters.to_mstcn(self)

    def to_activitynet(self) -> str:
        """ActivityNet detection-results JSON (version 1.3) holding this video's segments."""
        return exporters.to_activitynet(self)

    def to_eaf(self, **options: Any) -> str:
        """An ELAN .eaf document, one tier per part (see `actfusion_sdk.results.elan.to_eaf`)."""
        return to_eaf(self, **options)

    def to_labelstudio(self, **options: Any) -> str:
        """Label Studio predictions of one video task (see `actfusion_sdk.results.labelstudio`)."""
        return to_labelstudio(self, **options)

    def export(self, fmt: str) -> str:
        """The text of one of FORMATS: "json", "csv", "mstcn", "activitynet", "eaf" or "labelstudio"."""
        return exporters.export(self, fmt)

    def save(self, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
        """Write an export (or the timeline PNG, or the viewer page); the format comes from the suffix unless
        `fmt` is given.

        Suffixes: .json (our schema), .csv, .txt (MS-TCN), .eaf (ELAN), .png (plot), .html (`to_html`);
        ActivityNet and Label Studio need fmt="activitynet" / fmt="labelstudio".
        """
        return exporters.save(self, path, fmt)

    def table(self) -> str:
        """A readable table of the segments, with a header line and the timings."""
        return exporters.table(self)

    def __str__(self) -> str:
        return self.table()

    def plot(
        self,
        path: str | os.PathLike[str],
        ground_truth: Sequence[str] | Sequence[int] | np.ndarray | None = None,
        width: int = 1200,
        dpi: int = 100,
    ) -> Path:
        """Draw the timeline (coloured bars, legend, optional ground-truth row), `width` px wide, as the image
        format that the suffix names (.png, .jpg, .svg, .pdf); a bad suffix or size is a ConfigError."""
        from . import timeline  # matplotlib loads only when a timeline is drawn

        return timeline.plot(self, Path(path), ground_truth, width, dpi)

    def to_html(
        self,
        path: str | os.PathLike[str],
        video: str | os.PathLike[str] | None = None,
        truth: Result | Sequence[Any] | np.ndarray | None = None,
        embed_video: bool = False,
    ) -> Path:
        """Write a self-contained HTML page: the video (default: the result's source, referenced relative to
        the page; `embed_video` puts a small one inside) over timeline rows of the prediction, the ground
        truth (`truth`: a result, labels per feature frame, or spans with label/start/end such as
        `data.annotations.read_annotations` returns) and the per-frame confidence."""
        from .viewer import write_result_page

        return write_result_page(self, path, video, truth, embed_video)


@dataclass(frozen=True, eq=False, kw_only=True)
class SegmentationResult(Result):
    """Temporal action segmentation of one video. Build it with `from_frames`; arrays are read-only."""

    segments: tuple[Segment, ...]

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
            **_shared_fields(labels, probs, fps, duration, classes, video, model, timings),
        )

    def parts(self) -> tuple[Part, ...]:
        return (("segments", self.segments),)

    def _kind_to_dict(self) -> dict[str, Any]:
        return {"segments": [segment.to_dict() for segment in self.segments]}

    @classmethod
    def _kind_from_dict(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"segments": _segments_from_dicts(data["segments"])}


@dataclass(frozen=True, eq=False, kw_only=True)
class AnticipationResult(Result):
    """Long-term anticipation: segments of the observed part and the anticipated future, split at the cut.

    `frame_labels` covers observed and anticipated frames; `duration` is the end of the anticipated window,
    so `horizon` = duration - cut_time. A segment spanning the cut is split into an observed and an
    anticipated one.
    """

    observed_segments: tuple[Segment, ...]
    anticipated_segments: tuple[Segment, ...]
    cut_frame: int
    cut_time: float
    observation_ratio: float | None = None
    video_end: float | None = None  # the video's end, when the anticipated window runs past it

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
        video_duration: float | None = None,
        video: str | None = None,
        model: str | None = None,
        timings: Mapping[str, float] | None = None,
    ) -> AnticipationResult:
        """Split per-frame labels [T] at `cut_frame` (the first frame the model did not observe).

        `video_duration`: the source video's length; kept as `video_end` when the window runs past it.
        """
        labels, probs, duration = _validated_frames(frame_labels, classes, fps, frame_probs, duration)
        if not isinstance(cut_frame, numbers.Integral) or isinstance(cut_frame, bool):
            raise ConfigError(f"cut_frame must be an integer frame index, got {cut_frame!r}")
        if observation_ratio is not None and not (_finite(observation_ratio) and 0 < observation_ratio < 1):
            raise ConfigError(f"observation_ratio must be in (0, 1) or None, got {observation_ratio!r}")
        if not 0 < cut_frame < len(labels):
            raise ConfigError(f"cut_frame must be in (0, {len(labels)}) (frames), got {cut_frame}")

        def part(first: int, last: int) -> tuple[Segment, ...]:
            return build_segments(
                labels, classes, fps, duration, frame_probs=probs, first_frame=first, last_frame=last
            )

        return cls(
            observed_segments=part(0, cut_frame),
            anticipated_segments=part(cut_frame, len(labels)),
            cut_frame=int(cut_frame),
            cut_time=frame_time(cut_frame, len(labels), fps, duration),
            observation_ratio=observation_ratio,
            video_end=video_duration if video_duration is not None and video_duration < duration else None,
            **_shared_fields(labels, probs, fps, duration, classes, video, model, timings),
        )

    def parts(self) -> tuple[Part, ...]:
        return (("observed", self.observed_segments), (ANTICIPATED_PART, self.anticipated_segments))

    def end_of_video(self) -> float | None:
        return self.video_end

    def part_title(self, part: str) -> str:
        if part == ANTICIPATED_PART:
            return f"anticipated, horizon {self.horizon:.2f} s"
        ratio = "" if self.observation_ratio is None else f", ratio {self.observation_ratio:g}"
        return f"observed until the cut at {self.cut_time:.2f} s{ratio}"

    def _segment_row(self, part: str, segment: Segment) -> dict[str, Any]:
        return {"part": part, **segment.to_dict()}

    def _kind_to_dict(self) -> dict[str, Any]:
        return {
            "observed_segments": [segment.to_dict() for segment in self.observed_segments],
            "anticipated_segments": [segment.to_dict() for segment in self.anticipated_segments],
            "cut_frame": self.cut_frame,
            "cut_time": self.cut_time,
            "horizon": self.horizon,
            "observation_ratio": self.observation_ratio,
            "video_end": self.video_end,
        }

    @classmethod
    def _kind_from_dict(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "observed_segments": _segments_from_dicts(data["observed_segments"]),
            "anticipated_segments": _segments_from_dicts(data["anticipated_segments"]),
            "cut_frame": int(data["cut_frame"]),
            "cut_time": float(data["cut_time"]),
            "observation_ratio": data.get("observation_ratio"),
            "video_end": data.get("video_end"),
        }


def load_result(source: str | os.PathLike[str]) -> Result:
    """Load either result kind from JSON text or a path to a file written by `to_json` / `save`."""
    return Result.from_json(source)


def _read_document(source: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON document of schema SCHEMA in `source` (JSON text or a path)."""
    text, where = str(source), source_name(source)
    if not text.lstrip().startswith("{"):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as err:
            raise InputError(f"cannot read result file {where}: {err.strerror}") from err
        except UnicodeDecodeError as err:
            raise InputError(f"{where} is not a result JSON file (not UTF-8 text: {err.reason})") from err
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise InputError(f"{where} is not valid JSON ({err}); expected schema {SCHEMA!r}") from err
    if not isinstance(data, dict) or data.get("schema") not in READABLE_SCHEMAS:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{where}: expected a result of schema {SCHEMA!r}, found {found!r}")
    return data


def _validated_frames(
    frame_labels: Any, classes: Sequence[str], fps: float, frame_probs: Any, duration: float | None
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Check types, shapes and ranges; return the labels, the probs and the duration (frames / fps by
    default)."""
    labels = _label_ids(frame_labels)
    if len(labels) == 0:
        raise ConfigError("a result needs at least one frame label; got an empty sequence")
    if not _finite(fps) or not fps > 0:
        raise ConfigError(f"fps must be positive (feature frames per second), got {fps!r}")
    if isinstance(classes, str) or not all(isinstance(name, str) and name.strip() for name in classes):
        raise ConfigError(f"classes must be a sequence of non-empty class names, got {classes!r:.60}")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"classes must be unique names, got {list(classes)!r:.80}")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ConfigError(
            f"frame labels must be class ids in [0, {len(classes)}); "
            f"got values in [{labels.min()}, {labels.max()}]"
        )
    probs = None
    if frame_probs is not None:
        try:
            probs = np.array(frame_probs, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"frame_probs must be an array of probabilities ({err})") from err
        if not np.isfinite(probs).all():
            raise ConfigError("frame_probs holds NaN or infinite values")
        if probs.shape != (len(classes), len(labels)):
            raise ConfigError(
                f"frame_probs must have shape [classes, frames] = {(len(classes), len(labels))}, "
                f"got {probs.shape}"
            )
    if duration is None:
        duration = len(labels) / fps
    if not _finite(duration):
        raise ConfigError(f"duration must be a finite number of seconds, got {duration!r}")
    if not duration > (len(labels) - 1) / fps:
        raise ConfigError(
            f"duration {duration} s is too short for {len(labels)} frames at {fps} frames/s "
            f"(the last frame starts at {(len(labels) - 1) / fps} s)"
        )
    return labels, probs, float(duration)


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _label_ids(frame_labels: Any) -> np.ndarray:
    """`frame_labels` as int64 class ids [T], or a ConfigError (strings, NaN, fractions, huge numbers)."""
    values = np.asarray(frame_labels)
    whole = values.dtype.kind in "iu" or (
        values.dtype.kind == "f" and bool(np.all(np.isfinite(values) & (values == np.round(values))))
    )
    if not whole or (values.size and np.abs(values).max() >= 2**62):
        raise ConfigError(f"frame labels must be integer class ids, got {frame_labels!r:.60}")
    return values.astype(np.int64).reshape(-1)


def _shared_fields(
    frame_labels: np.ndarray,
    frame_probs: np.ndarray | None,
    fps: float,
    duration: float,
    classes: Sequence[str],
    video: str | None,
    model: str | None,
    timings: Mapping[str, float] | None,
    frame_confidence: np.ndarray | None = None,
) -> dict[str, Any]:
    """The base fields as a result stores them: read-only arrays (owned by the result), immutable timings.

    The per-frame confidence is the probabilities' maximum over classes when they are given, else
    `frame_confidence` as loaded (a document written without its probabilities keeps it)."""
    if frame_probs is not None:
        frame_confidence = frame_probs.max(axis=0)
    for array in (frame_labels, frame_probs, frame_confidence):
        if array is not None:
            array.setflags(write=False)
    return {
        "frame_labels": frame_labels,
        "frame_probs": frame_probs,
        "frame_confidence": frame_confidence,
        "fps": float(fps),
        "duration": float(duration),
        "classes": tuple(classes),
        "video": video,
        "model": model,
        "timings": MappingProxyType(dict(timings or {})),
    }


def _segments_from_dicts(rows: Sequence[Mapping[str, Any]]) -> tuple[Segment, ...]:
    return tuple(Segment.from_dict(row) for row in rows)
