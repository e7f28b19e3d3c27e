"""Label Studio export: results as pre-annotations (predictions) of video tasks, one task per video.

The shape follows Label Studio's documentation: tasks as in "Import pre-annotated data" (labelstud.io/guide/
predictions: ``[{"data": {...}, "predictions": [{"model_version", "score", "result"}]}]``),
regions of the ``TimelineLabels`` tag (labelstud.io/tags/timelinelabels: ``"type": "timelinelabels"``,
``value.ranges = [{"start", "end"}]`` in frames, ``value.timelinelabels = [label]``). Frames are 1-based with
both ends included, at ``frame_rate`` (default 24, the ``<Video>`` tag's default ``frameRate``); the task also
carries it as ``data.fps``, so a labelling config may say ``<Video name="video" value="$video"
frameRate="$fps"/>``. The config's names must match ``from_name`` (the TimelineLabels tag) and ``to_name``
(the Video tag).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from ..metrics import DEFAULT_BG_CLASSES

if TYPE_CHECKING:
    from .types import Result

DEFAULT_FRAME_RATE = 24.0


def labelstudio_tasks(
    results: Sequence[Result],
    *,
    frame_rate: float = DEFAULT_FRAME_RATE,
    from_name: str = "label",
    to_name: str = "video",
    exclude: Collection[str] = DEFAULT_BG_CLASSES,
) -> list[dict[str, Any]]:
    """One Label Studio task per result, its segments as one prediction of ``timelinelabels`` regions
    (segments labelled with a name in `exclude` are left out)."""
    tasks = []
    for result in results:
        regions = []
        scores = []
        for part, segments in result.parts():
            for segment in segments:
                if segment.label in exclude:
                    continue
                first = round(segment.start * frame_rate) + 1
                last = max(first, round(segment.end * frame_rate))
                region: dict[str, Any] = {
                    "id": f"{part}-{len(regions)}",
                    "from_name": from_name,
                    "to_name": to_name,
                    "type": "timelinelabels",
                    "value": {"ranges": [{"start": first, "end": last}], "timelinelabels": [segment.label]},
                }
                if segment.score is not None:
                    region["score"] = segment.score
                    scores.append(segment.score)
                regions.append(region)
        prediction: dict[str, Any] = {"model_version": result.model or "actfusion", "result": regions}
        if scores:
            prediction["score"] = sum(scores) / len(scores)
        tasks.append(
            {
                "data": {"video": result.video or result.video_id, "fps": frame_rate},
                "predictions": [prediction],
            }
        )
    return tasks


def to_labelstudio(result: Result, **options: Any) -> str:
    """The Label Studio tasks file (JSON) holding `result` as one task (options of `labelstudio_tasks`)."""
    return json.dumps(labelstudio_tasks([result], **options), indent=2)
