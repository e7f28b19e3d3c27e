"""Clip sampling: which decoded frames make up the clip behind each feature.

Feature ``k`` stands for decoded frames ``[k·S, (k+1)·S)`` (``S = feature_stride``) and its time is their
centre, ``(k + 0.5)·S / fps``. Its clip has ``C = clip_frames`` frames taken every ``s = frame_stride``-th
frame, placed symmetrically around that centre: frame ``k·S + ⌊(S − (C−1)·s − 1) / 2⌋ + m·s`` for
``m = 0..C−1`` (when the bracket is odd the clip sits half a frame early, the nearest integer placement).
Indices before the first or after the last frame are replaced by the edge frame. A video of ``N`` frames
has ``⌈N / S⌉`` features, so even a one-frame video gives one (fully replicated) clip.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

Frame = TypeVar("Frame")


@dataclass(frozen=True)
class ClipSchedule:
    clip_frames: int
    frame_stride: int
    feature_stride: int

    @property
    def _offset(self) -> int:
        return (self.feature_stride - (self.clip_frames - 1) * self.frame_stride - 1) // 2

    def num_features(self, num_frames: int) -> int:
        return math.ceil(num_frames / self.feature_stride)

    def frame_indices(self, feature: int, num_frames: int | None = None) -> np.ndarray:
        """Frame indices of feature ``feature``'s clip; clamped to ``[0, num_frames)`` when that is given."""
        first = feature * self.feature_stride + self._offset
        indices = first + self.frame_stride * np.arange(self.clip_frames)
        return indices if num_frames is None else np.clip(indices, 0, num_frames - 1)

    def timestamps(self, num_features: int, fps: float) -> np.ndarray:
        """Centre time in seconds of each feature."""
        return (np.arange(num_features) + 0.5) * (self.feature_stride / fps)

    def clips(self, frames: Iterable[Frame]) -> Iterator[list[Frame]]:
        """Stream ``frames`` into clips, one per feature, in order, holding only the frames still needed."""
        window: deque[tuple[int, Frame]] = deque()
        feature = 0
        last = -1
        for last, frame in enumerate(frames):
            window.append((last, frame))
            while feature * self.feature_stride <= last and self.frame_indices(feature)[-1] <= last:
                yield self._gather(window, feature, last + 1)
                feature += 1
                keep_from = self.frame_indices(feature)[0]
                while len(window) > 1 and window[0][0] < keep_from:
                    window.popleft()
        num_frames = last + 1
        while feature < self.num_features(num_frames):
            yield self._gather(window, feature, num_frames)
            feature += 1

    def _gather(self, window: deque[tuple[int, Frame]], feature: int, num_frames: int) -> list[Frame]:
        first_index = window[0][0]  # never after the clip's first clamped index (see ``clips``)
        return [window[int(i) - first_index][1] for i in self.frame_indices(feature, num_frames)]
