"""Ground truth for one video on a result's frame grid (`--plot --truth LABELS`): from any annotation file the
readers know (CSV/TSV, ELAN, Label Studio, ActivityNet, a result JSON, MS-TCN labels at the result's rate)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .annotations import read_annotations, video_name
from .builder import frame_labels


def truth_labels(
    paths: Sequence[str | Path], video: str | Path, classes: Sequence[str], fps: float, frames: int
) -> list[str]:
    """The class name of each of `frames` feature frames (at `fps` per second) of `video`: the annotation
    covering the frame's centre, or `classes[0]` (the background) where none does.

    The annotations of `video` are those naming its file stem; an MS-TCN label file (named after its video in
    a dataset, not after the video file) counts for whichever video it is given with. An InputError when none
    is found.
    """
    name = video_name(str(video))
    found = []
    for path in paths:
        items = read_annotations(path, frame_rate=fps)
        found += [item for item in items if item.video == name or Path(path).suffix.lower() == ".txt"]
    if not found:
        raise InputError(
            f"no ground truth for '{video}' in {', '.join(map(str, paths))}: the annotations name other "
            "videos; give a file whose video column (or name) is this video's file name"
        )
    labels = sorted({item.label for item in found} | set(classes))
    index = {label: i for i, label in enumerate(labels)}
    centres = (np.arange(frames) + 0.5) / fps
    ids = frame_labels(sorted(found, key=lambda item: item.start), centres, index, index[classes[0]])
    return [labels[i] for i in ids]
