"""The timeline PNG of a result (matplotlib): coloured bars per part, anticipated ones hatched, a GT row.

Imported only when a timeline is drawn (`Result.plot`), so matplotlib is not loaded with the results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..errors import ConfigError
from .segments import Segment, build_segments
from .types import ANTICIPATED_PART

if TYPE_CHECKING:
    from .types import Part, Result

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
    if num_classes <= 20:
        return [colormaps["tab20"](2 * i if i < 10 else 2 * (i - 10) + 1) for i in range(num_classes)]
    return [colormaps["hsv"](i / num_classes) for i in range(num_classes)]


def plot(
    result: Result,
    path: Path,
    ground_truth: Sequence[str] | Sequence[int] | np.ndarray | None,
    width: int,
    dpi: int,
) -> Path:
    """Draw `result`'s timeline, with `ground_truth` (names or ids per feature frame) as a second row."""
    gt_ids = None if ground_truth is None else _label_ids(ground_truth, result.classes)
    _draw(result, path, gt_ids, width, dpi)
    return path


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


def _draw(result: Result, path: Path, ground_truth: np.ndarray | None, width: int, dpi: int) -> None:
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
    colors = class_colors(len(result.classes))
    legend = [Patch(facecolor=colors[i], label=result.classes[i]) for i in shown]
    if anticipated:
        legend.append(Patch(facecolor="white", edgecolor="black", hatch="///", label=ANTICIPATED_PART))

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
                alpha=0.55 if hatched else 1.0,
                hatch="///" if hatched else None,
                edgecolor="black" if hatched else "none",
                linewidth=0.4,
            )
    if anticipated:
        cut_time = anticipated[0].start
        axes.axvspan(cut_time, end, color="0.85", zorder=0)
        axes.axvline(cut_time, color="black", linestyle="--", linewidth=1.5)
        axes.text(cut_time, len(rows), f" cut {cut_time:.2f} s", va="bottom", fontsize=8)
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
