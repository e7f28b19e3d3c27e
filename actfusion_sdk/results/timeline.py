"""The timeline PNG of a result (matplotlib): coloured bars per part, anticipated ones hatched, a GT row,
the cut and (when the horizon runs past it) the end of the video marked.

Imported only when a timeline is drawn (`Result.plot`), so matplotlib is not loaded with the results.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..errors import ConfigError
from ..fileio import atomic_write
from .segments import ANTICIPATED_PART, Segment, build_segments, ground_truth_ids

if TYPE_CHECKING:
    from .types import Part, Result

# Timeline layout in pixels, so the PNG size is exact: width x (top + rows + axis + legend).
_TOP, _ROW, _GAP, _AXIS, _LEFT, _RIGHT = 36, 34, 12, 44, 120, 24
_LEGEND_ROW, _LEGEND_ENTRY_WIDTH = 22, 180
MIN_WIDTH, MAX_WIDTH = _LEFT + _RIGHT + 176, 20_000  # pixels: room for the bars, and a sane image size
MIN_DPI, MAX_DPI = 10, 1200
# Image files a timeline is written as, by suffix (matplotlib's format names).
IMAGE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}


def timeline_height(num_rows: int, num_legend_entries: int, width: int) -> int:
    """Pixel height of a timeline PNG with `num_rows` bar rows and a legend of that many entries."""
    columns = max(1, (width - _LEFT) // _LEGEND_ENTRY_WIDTH)
    legend_rows = -(-num_legend_entries // columns)
    return _TOP + num_rows * (_ROW + _GAP) + _AXIS + legend_rows * _LEGEND_ROW + 16


# Colour words a class name may contain, and what they are drawn in (matplotlib's named colours).
_COLOR_WORDS = {
    "red": "tab:red",
    "green": "tab:green",
    "blue": "tab:blue",
    "yellow": "gold",
    "orange": "tab:orange",
    "purple": "tab:purple",
    "pink": "tab:pink",
    "brown": "tab:brown",
    "cyan": "tab:cyan",
    "magenta": "magenta",
    "olive": "tab:olive",
    "black": "black",
}  # no "white": a white bar vanishes on the white page (such a class gets a palette colour)
_BACKGROUND_NAMES = {"background", "bg", "sil", "none", "null", "no_action"}
BACKGROUND_GREY = "0.72"
# Least contrast ratio against white (WCAG 2 relative luminance) of any class colour: that of the background
# grey, so that every class stands out from the page at least as well as the background does.
MIN_CONTRAST = 1.95
_HATCH = "///"
_HATCH_COLOR = (1.0, 1.0, 1.0, 0.75)  # a light hatch over the class's own colour: anticipated, same class


def class_colors(classes: Sequence[str]) -> list[tuple[float, float, float, float]]:
    """A fixed colour per class: background classes neutral grey; a class whose name holds a colour word
    (``red_disc_bounce``) in that colour, once per colour; the others from tab20 (even hues beyond 20)."""
    chosen: list[tuple[float, float, float, float] | None] = [None] * len(classes)
    taken: set[str] = set()
    for i, name in enumerate(classes):
        words = name.lower().replace("-", "_").replace(" ", "_").split("_")
        if name.lower() in _BACKGROUND_NAMES:
            chosen[i] = to_rgba(BACKGROUND_GREY)
            continue
        word = next((w for w in words if w in _COLOR_WORDS and w not in taken), None)
        if word is not None:
            taken.add(word)
            chosen[i] = to_rgba(_COLOR_WORDS[word])
    used = {color[:3] for color in chosen if color is not None}
    if len(classes) <= 20:
        palette = [colormaps["tab20"](2 * i if i < 10 else 2 * (i - 10) + 1) for i in range(20)]
    else:
        palette = [colormaps["hsv"](i / len(classes)) for i in range(len(classes))]
    spare = iter(color for color in palette if color[:3] not in used)
    return [_visible_on_white(color if color is not None else next(spare)) for color in chosen]


def contrast_with_white(color: tuple[float, ...]) -> float:
    """WCAG 2 contrast ratio of an sRGB colour against white (1: invisible, 21: black)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in color[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


def _visible_on_white(color: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """`color`, darkened (same hue) until it has at least MIN_CONTRAST against white (gold, light tints)."""
    while contrast_with_white(color) < MIN_CONTRAST:
        color = (color[0] * 0.95, color[1] * 0.95, color[2] * 0.95, color[3])
    return color


def plot(
    result: Result,
    path: Path,
    ground_truth: Sequence[str] | Sequence[int] | np.ndarray | None,
    width: int,
    dpi: int,
) -> Path:
    """Draw `result`'s timeline, with `ground_truth` (names or ids per feature frame) as a second row, in the
    image format that `path`'s suffix names (IMAGE_FORMATS)."""
    image_format = _image_format(path)
    _check_pixels("width", width, MIN_WIDTH, MAX_WIDTH)
    _check_pixels("dpi", dpi, MIN_DPI, MAX_DPI)
    gt_ids = None if ground_truth is None else ground_truth_ids(ground_truth, result.classes)
    _draw(result, path, gt_ids, int(width), int(dpi), image_format)
    return path


def _image_format(path: Path) -> str:
    """The matplotlib format of `path`'s suffix, or a ConfigError listing the suffixes it knows."""
    image_format = IMAGE_FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise ConfigError(
            f"cannot tell the image format of {str(path)!r} from its suffix; use one of "
            f"{', '.join(IMAGE_FORMATS)}"
        )
    return image_format


def _check_pixels(name: str, value: object, low: int, high: int) -> None:
    whole = isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()
    if isinstance(value, bool) or not whole or not low <= value <= high:
        raise ConfigError(f"the timeline's {name} must be an integer from {low} to {high}, got {value!r}")


def _draw(
    result: Result, path: Path, ground_truth: np.ndarray | None, width: int, dpi: int, image_format: str
) -> None:
    """Render the prediction row (an anticipated part hatched after the cut, where it starts), the GT row."""
    parts = result.parts()
    rows: list[tuple[str, Sequence[Part]]] = [("prediction", parts)]
    if ground_truth is not None and len(ground_truth):
        gt_duration = (
            result.duration if len(ground_truth) == result.num_frames else len(ground_truth) / result.fps
        )
        gt_segments = build_segments(ground_truth, result.classes, result.fps, gt_duration)
        rows.append(("ground truth", [("ground truth", gt_segments)]))
    anticipated: tuple[Segment, ...] = dict(parts).get(ANTICIPATED_PART, ())
    shown = sorted({s.label_id for _, row_parts in rows for _, segments in row_parts for s in segments})
    colors = class_colors(result.classes)
    legend = [Patch(facecolor=colors[i], label=result.classes[i]) for i in shown]
    if anticipated:
        legend.append(Patch(facecolor="0.55", edgecolor=_HATCH_COLOR, hatch=_HATCH, label=ANTICIPATED_PART))
    video_end = result.end_of_video()
    if video_end is not None:
        legend.append(Line2D([], [], color="black", linestyle=":", linewidth=1.5, label="end of video"))

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
    end = max(
        result.duration, *(s.end for _, row_parts in rows for _, segments in row_parts for s in segments)
    )
    for row, (_, row_parts) in enumerate(rows):
        y = len(rows) - 1 - row
        for part, segments in row_parts:
            hatched = part == ANTICIPATED_PART
            axes.broken_barh(
                [(s.start, s.duration) for s in segments],
                (y + 0.12, 0.76),
                facecolors=[colors[s.label_id] for s in segments],
                hatch=_HATCH if hatched else None,
                edgecolor=_HATCH_COLOR if hatched else "none",
                linewidth=0.0,
            )
    if anticipated:
        cut_time = anticipated[0].start
        axes.axvspan(cut_time, end, color="0.85", zorder=0)
        axes.axvline(cut_time, color="black", linestyle="--", linewidth=1.5)
        axes.text(cut_time, len(rows), f" cut {cut_time:.2f} s", va="bottom", fontsize=8)
    if video_end is not None:
        axes.axvline(video_end, color="black", linestyle=":", linewidth=1.5)
        axes.text(video_end, len(rows), f" end {video_end:.2f} s", va="bottom", fontsize=8)
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
    with atomic_write(path) as stream:  # an image under its final name is a whole one
        figure.savefig(stream, dpi=dpi, format=image_format)
