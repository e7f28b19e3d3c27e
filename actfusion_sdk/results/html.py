"""Building blocks of the viewer pages: the page shell, timeline lanes of segment elements, the confidence
strip, marks, the legend and the video element. Every page is one file: style and script inline, nothing
fetched, the video referenced by a path relative to the page (or embedded as a data URI).

Segment elements are the pages' stable contract: ``<div class="seg ..." data-label data-start data-end
[data-score] [data-part]>`` with times in seconds, placed in percent of the timeline's end.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from matplotlib.colors import to_hex

from ..errors import ConfigError, InputError
from ..fileio import atomic_write
from .segments import Segment
from .timeline import class_colors
from .viewer_assets import SCRIPT, STYLE

#: The largest video `embed_video=True` puts into a page (larger ones are referenced by path).
MAX_EMBEDDED_BYTES = 32 * 1024 * 1024
_VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".ogv": "video/ogg"}


def escape(text: object) -> str:
    """Text as HTML (quotes included, so it is safe in attribute values too)."""
    return html.escape(str(text), quote=True)


def seconds(value: float) -> str:
    """A time for a data attribute: seconds, to the microsecond, without trailing zeros."""
    return repr(round(float(value), 6))


def percent(value: float, end: float) -> str:
    """`value` as a CSS percentage of `end`, to 7 digits: under a pixel off even at the deepest zoom."""
    return f"{100.0 * value / end:.7g}%"


class Palette:
    """CSS classes for the class colours of the PNG timeline (`timeline.class_colors`), one per colour."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def classes_of(self, classes: Sequence[str]) -> list[str]:
        """The CSS class of each class id of `classes`."""
        return [self._name(to_hex(color)) for color in class_colors(classes)]

    def _name(self, color: str) -> str:
        return self._names.setdefault(color, f"k{len(self._names)}")

    def style(self) -> str:
        return "".join(f".{name}{{background-color:{color}}}" for color, name in self._names.items())


@dataclass(frozen=True)
class Lane:
    """One timeline row: a name and its segments, each with its part (None, "observed" or "anticipated")."""

    name: str
    segments: Sequence[tuple[str | None, Segment]]
    css_classes: Sequence[str]  # the colour class of each class id
    extra: str = ""  # more markup drawn in the lane (a confidence strip, a cut mark)
    attributes: str = ""  # more attributes of the lane element


def segment_element(segment: Segment, css_class: str, end: float, part: str | None = None) -> str:
    """One segment as an element of the pages' contract (see the module docstring)."""
    classes = f"seg {css_class}" + (" anticipated" if part == "anticipated" else "")
    score = "" if segment.score is None else f' data-score="{segment.score:.4g}"'
    part_attribute = "" if part is None else f' data-part="{part}"'
    return (
        f'<div class="{classes}" style="left:{percent(segment.start, end)};'
        f'width:{percent(segment.duration, end)}" data-label="{escape(segment.label)}" '
        f'data-start="{seconds(segment.start)}" data-end="{seconds(segment.end)}"{score}{part_attribute}>'
        "</div>"
    )


def lane_element(lane: Lane, end: float, kind: str = "") -> str:
    body = "".join(
        segment_element(segment, lane.css_classes[segment.label_id], end, part)
        for part, segment in lane.segments
    )
    attributes = f'class="lane {kind}" data-source="{escape(lane.name)}"{lane.attributes}'
    return f"<div {attributes}>{body}{lane.extra}</div>"


def confidence_strip(confidence: np.ndarray, fps: float, duration: float, end: float) -> str:
    """The per-frame confidence as a filled step curve (an inline SVG scaled to the lane, 1 at the top)."""
    num_frames = len(confidence)
    edges = np.minimum(np.arange(1, num_frames + 1) / fps, duration)
    edges[-1] = duration
    heights = 1.0 - np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    steps = "".join(f"V{y:.3f}H{x:.3f}" for y, x in zip(heights.tolist(), edges.tolist(), strict=True))
    return (
        f'<svg class="confidence" viewBox="0 0 {duration:.6g} 1" preserveAspectRatio="none" '
        f'style="width:{percent(duration, end)}"><path d="M0 1{steps}V1Z"/></svg>'
    )


def mark(kind: str, time: float, end: float, label: str) -> str:
    """A vertical line across the lanes (the cut, the end of the video) with its label."""
    return (
        f'<div class="mark {kind}" style="left:{percent(time, end)}" data-time="{seconds(time)}">'
        f"<span>{escape(label)}</span></div>"
    )


def timeline(end: float, lanes: Sequence[tuple[Lane, str]], behind: str = "", over: str = "") -> str:
    """The timeline: lane names on the left, the lanes (each with its kind, a CSS class of lane and name:
    "", "conf" or "update") scrolling horizontally under an axis."""
    names = '<div class="axis-name"></div>' + "".join(
        f'<div class="{kind}" title="{escape(lane.name)}">{escape(lane.name)}</div>' for lane, kind in lanes
    )
    body = "".join(lane_element(lane, end, kind) for lane, kind in lanes)
    return (
        f'<div class="timeline" id="timeline" data-end="{seconds(end)}"><div class="names">{names}</div>'
        f'<div class="scroll"><div class="inner"><div class="axis"></div>{behind}'
        f'<div class="lanes">{body}</div>{over}<div id="playhead"></div></div></div></div>'
    )


def controls() -> str:
    return (
        '<div id="controls"><button id="play" type="button">play / pause</button>'
        '<button id="zoom-out" type="button">&minus;</button><button id="zoom-fit" type="button">fit</button>'
        '<button id="zoom-in" type="button">+</button><span id="clock"></span><span class="keys">'
        "keys: space play/pause &middot; n / p next / previous segment &middot; + / &minus; / 0 zoom "
        "&middot; ctrl+wheel zoom &middot; click a segment to seek</span></div>"
    )


def legend(entries: Iterable[tuple[str, str, str, str]]) -> str:
    """Legend entries (label, swatch CSS classes, text after the label, data-total seconds or "")."""
    items = "".join(
        f'<div class="legend-entry" data-label="{escape(label)}"'
        + (f' data-total="{total}"' if total else "")
        + f'><span class="swatch {swatch}"></span>{escape(label)} '
        f'<span class="total">{escape(text)}</span></div>'
        for label, swatch, text, total in entries
    )
    return f'<div class="legend" id="legend">{items}</div>'


def player(source: str | None, name: str | None) -> str:
    """The video element (muted, so that it may play without a gesture), or a note that there is none."""
    if source is None:
        return (
            '<div id="player"><div class="notice" id="video-error">No video given: the timeline plays on '
            "its own clock. Pass --video (or video=) to watch it beside the segments.</div></div>"
        )
    return (
        f'<div id="player"><video id="video" src="{escape(source)}" controls muted preload="auto" '
        f'playsinline title="{escape(name or "")}"></video>'
        '<div class="notice" id="video-error" hidden></div></div>'
    )


def video_source(video: str | os.PathLike[str], page: Path, embed: bool = False) -> str:
    """How `page` refers to `video`: a URL relative to the page's folder, or with `embed` a data URI."""
    video = Path(video)
    if embed:
        try:
            size = video.stat().st_size
        except OSError as err:
            raise InputError(f"cannot embed video {str(video)!r}: {err.strerror}") from err
        if size > MAX_EMBEDDED_BYTES:
            raise ConfigError(
                f"video {str(video)!r} is {size / 2**20:.1f} MiB; embedding takes at most "
                f"{MAX_EMBEDDED_BYTES // 2**20} MiB: reference it by path instead (no embed)"
            )
        kind = _VIDEO_TYPES.get(video.suffix.lower()) or mimetypes.guess_type(video.name)[0] or "video/mp4"
        return f"data:{kind};base64," + base64.b64encode(video.read_bytes()).decode("ascii")
    relative = os.path.relpath(video.resolve(), page.resolve().parent)
    return quote(Path(relative).as_posix())


def page(title: str, body: str, palette: Palette, interactive: bool = True) -> str:
    """The whole HTML document: style (with the palette's colours) and, for a timeline page, the script."""
    script = f"<script>{SCRIPT}</script>" if interactive else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="actfusion-sdk viewer"><title>{escape(title)}</title>'
        f"<style>{STYLE}{palette.style()}</style></head><body>{body}"
        f'<div id="tooltip" hidden></div>{script}</body></html>\n'
    )


def write_page(path: str | os.PathLike[str], document: str) -> Path:
    """Write a page atomically (a page under its final name is a whole one)."""
    path = Path(path)
    with atomic_write(path, "w") as stream:
        stream.write(document)
    return path
