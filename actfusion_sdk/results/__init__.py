"""Typed results of segmentation and anticipation, their exports and their timeline plot.

`types` holds the result kinds (and the JSON schema), `segments` the segments built from frame labels,
`exporters` the text formats and the table, `timeline` the matplotlib plot (imported only when drawing).
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
