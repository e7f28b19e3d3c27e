"""Typed results of segmentation and anticipation, their exports, their timeline plot and their HTML pages.

`types` holds the result kinds (and the JSON schema), `segments` the segments built from frame labels,
`exporters` the text formats and the table, `timeline` the matplotlib plot (imported only when drawing),
`viewer` a result's self-contained HTML page and `viewer_index` the pages of a folder of results (built from
`html`, with the style and script of `viewer_assets`; imported only when a page is written).
"""

from __future__ import annotations

from .exporters import FORMATS, activitynet_document
from .segments import Segment, build_segments
from .types import SCHEMA, AnticipationResult, Result, SegmentationResult, load_result

__all__ = [
    "FORMATS",
    "SCHEMA",
    "AnticipationResult",
    "Result",
    "Segment",
    "SegmentationResult",
    "activitynet_document",
    "build_segments",
    "load_result",
]
