"""The result page (`Result.to_html`): the video, and under it the prediction, the ground truth and the
per-frame confidence as timeline rows in the PNG timeline's class colours, with a legend of total times.

An anticipation result draws its observed part plain and its anticipated part hatched after the cut (the
area after the cut shaded, as in the PNG); the end of the video is marked where the horizon runs past it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError
from . import html
from .segments import ANTICIPATED_PART, Segment, build_segments, ground_truth_ids

if TYPE_CHECKING:
    from .types import Result

log = logging.getLogger(__name__)


class Labelled(Protocol):
    """A labelled time span in seconds (a Segment, or an annotation read by `data.annotations`)."""

    label: str
    start: float
    end: float


def write_result_page(
    result: Result,
    path: str | os.PathLike[str],
    video: str | os.PathLike[str] | None = None,
    truth: Any = None,
    embed_video: bool = False,
) -> Path:
    """Write `result`'s page to `path`; `video` defaults to the result's source video (when it exists)."""
    path = Path(path)
    document = result_page(result, path, video, truth, embed_video)
    return html.write_page(path, document)


def result_page(
    result: Result,
    path: Path,
    video: str | os.PathLike[str] | None = None,
    truth: Any = None,
    embed_video: bool = False,
) -> str:
    """The HTML of `result`'s page as it will be written to `path` (the video is referenced from there)."""
    palette = html.Palette()
    colors = palette.classes_of(result.classes)
    truth_segments = None if truth is None else truth_of(truth, result)
    end = max([result.duration, *(s.end for s in truth_segments or ())])

    lanes = [(html.Lane("prediction", drawn_segments(result), colors), "")]
    if truth_segments is not None:
        rows = [(None, segment) for segment in truth_segments]
        lanes.append((html.Lane("ground truth", rows, colors), ""))
    if result.frame_confidence is not None:
        strip = html.confidence_strip(result.frame_confidence, result.fps, result.duration, end)
        lanes.append((html.Lane("confidence", (), colors, strip), "conf"))

    behind = over = ""
    anticipated = dict(result.parts()).get(ANTICIPATED_PART, ())
    if anticipated:
        cut = anticipated[0].start
        behind = f'<div class="shade" style="left:{html.percent(cut, end)};right:0"></div>'
        over = html.mark("cut", cut, end, f"cut {cut:.2f} s")
    video_end = result.end_of_video()
    if video_end is not None:
        over += html.mark("video-end", video_end, end, f"end of video {video_end:.2f} s")

    source, name = _video_reference(video if video is not None else result.video, path, embed_video)
    title = f"{result.video_id}: {result.kind}" + (f" ({result.model})" if result.model else "")
    body = (
        f'<h1>{html.escape(title)}</h1><div class="meta">{html.escape(_meta(result))}</div>'
        + html.player(source, name)
        + html.controls()
        + html.timeline(end, lanes, behind, over)
        + html.legend(_legend(result, colors, truth_segments, bool(anticipated)))
    )
    return html.page(title, body, palette)


def drawn_segments(result: Result) -> list[tuple[str | None, Segment]]:
    """The result's segments in time order, each with its part for anticipation (None for segmentation)."""
    anticipation = result.kind == "anticipation"
    return [
        (part if anticipation else None, segment) for part, segments in result.parts() for segment in segments
    ]


def truth_of(truth: Any, result: Result) -> tuple[Segment, ...]:
    """Ground-truth segments in `result`'s classes from a result, frame labels or labelled spans."""
    from .types import Result

    if isinstance(truth, Result):
        return _placed([segment for _, segments in truth.parts() for segment in segments], result)
    values = list(truth)
    if values and all(hasattr(value, "label") and hasattr(value, "start") for value in values):
        return _placed(sorted(values, key=lambda value: value.start), result)
    ids = ground_truth_ids(values, result.classes)  # labels per feature frame, as `plot(ground_truth=)` takes
    if len(ids) == 0:
        raise ConfigError("the ground truth is empty; give one label per feature frame or labelled spans")
    duration = result.duration if len(ids) == result.num_frames else len(ids) / result.fps
    return build_segments(ids, result.classes, result.fps, duration)


def _placed(spans: Iterable[Labelled], result: Result) -> tuple[Segment, ...]:
    """Labelled spans as segments of `result`'s classes (their colours); unknown labels are a ConfigError."""
    index = {name: i for i, name in enumerate(result.classes)}
    spans = list(spans)
    unknown = sorted({span.label for span in spans if span.label not in index})
    if unknown:
        raise ConfigError(
            f"ground-truth labels {unknown} are not classes of the result ({', '.join(result.classes)})"
        )
    return tuple(
        Segment(
            label=span.label,
            label_id=index[span.label],
            start=float(span.start),
            end=float(span.end),
            start_frame=round(span.start * result.fps),
            end_frame=round(span.end * result.fps),
        )
        for span in spans
    )


def _video_reference(
    video: str | os.PathLike[str] | None, page: Path, embed: bool
) -> tuple[str | None, str | None]:
    """The page's video source and its name, or (None, None) without a video."""
    if video is None:
        return None, None
    if "://" in str(video):  # a stream URL: the page fetches nothing from a network
        log.warning("video %s is a URL; the page shows the timeline without it (pass a local file)", video)
        return None, None
    if not Path(video).is_file():
        log.warning("video %s does not exist (yet); the page refers to it by its relative path", video)
    return html.video_source(video, page, embed), Path(video).name


def _meta(result: Result) -> str:
    count = len(result.summary())
    parts = [
        f"{result.duration:.2f} s",
        f"{count} segment{'s' * (count != 1)}",
        f"{result.num_frames} frames at {result.fps:g} frames/s",
    ]
    parts += [result.part_title(part) or "" for part, _ in result.parts() if result.part_title(part)]
    return "  |  ".join(parts)


def _legend(
    result: Result, colors: Sequence[str], truth: Sequence[Segment] | None, anticipated: bool
) -> list[tuple[str, str, str, str]]:
    """Each class shown, with its total time in the prediction (and in the ground truth)."""
    predicted = total_times(segment for _, segments in result.parts() for segment in segments)
    truth_totals = total_times(truth or ())
    entries = []
    for label_id, label in enumerate(result.classes):
        if label_id not in predicted and label_id not in truth_totals:
            continue
        total = predicted.get(label_id, 0.0)
        text = f"{total:.2f} s"
        if truth is not None:
            text += f" (truth {truth_totals.get(label_id, 0.0):.2f} s)"
        entries.append((label, colors[label_id], text, html.seconds(total)))
    if anticipated:
        entries.append((ANTICIPATED_PART, "anticipated hatch", "after the cut (hatched)", ""))
    return entries


def total_times(segments: Iterable[Segment]) -> dict[int, float]:
    """Seconds per class id over `segments`."""
    totals: dict[int, float] = {}
    for segment in segments:
        totals[segment.label_id] = totals.get(segment.label_id, 0.0) + segment.duration
    return totals
