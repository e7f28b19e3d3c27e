"""Segments: maximal runs of equal frame labels, placed in seconds at the feature rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..runs import runs

SEGMENT_COLUMNS = ("label", "label_id", "start", "end", "start_frame", "end_frame", "score")


# The part of an anticipation result after the cut (the observed part is "observed").
ANTICIPATED_PART = "anticipated"


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
        return {name: getattr(self, name) for name in SEGMENT_COLUMNS}

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
    found = runs(frame_labels[first_frame:last_frame])
    segments = []
    for start, end, label_id in zip(
        found.starts.tolist(), found.ends.tolist(), found.values.tolist(), strict=True
    ):
        start_frame, end_frame = start + first_frame, end + first_frame
        score = None
        if frame_probs is not None:
            score = float(np.mean(frame_probs[label_id, start_frame:end_frame], dtype=np.float64))
        segments.append(
            Segment(
                label=classes[label_id],
                label_id=label_id,
                start=frame_time(start_frame, num_frames, fps, duration),
                end=frame_time(end_frame, num_frames, fps, duration),
                start_frame=start_frame,
                end_frame=end_frame,
                score=score,
            )
        )
    return tuple(segments)


def frame_time(frame: int, num_frames: int, fps: float, duration: float) -> float:
    """Start time of feature frame `frame`; the end of the last frame is the video's duration."""
    return duration if frame >= num_frames else min(frame / fps, duration)


def ground_truth_ids(
    labels: Sequence[str] | Sequence[int] | np.ndarray, classes: Sequence[str]
) -> np.ndarray:
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
