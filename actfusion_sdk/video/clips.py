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
from typing import Generic, TypeVar

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
        assembler = ClipAssembler(self)
        for frame in frames:
            yield from assembler.push(frame)
        yield from assembler.finish()


class ClipAssembler(Generic[Frame]):
    """Incremental clips: push frames one by one and get each clip as soon as its window is complete.

    ``finish()`` ends the stream and returns the remaining clips, edge-padded with the last frame. Offline
    extraction (``ClipSchedule.clips``) and the live loop both assemble clips through this one class.
    """

    def __init__(self, schedule: ClipSchedule) -> None:
        self.schedule = schedule
        self.num_frames = 0
        self.num_clips = 0
        self._window: deque[tuple[int, Frame]] = deque()

    def push(self, frame: Frame) -> list[list[Frame]]:
        """Add the next frame; returns the clips it completes (usually none or one)."""
        schedule, last = self.schedule, self.num_frames
        self._window.append((last, frame))
        self.num_frames += 1
        completed = []
        while (
            self.num_clips * schedule.feature_stride <= last
            and schedule.frame_indices(self.num_clips)[-1] <= last
        ):
            completed.append(self._gather(self.num_clips, last + 1))
            self.num_clips += 1
            keep_from = schedule.frame_indices(self.num_clips)[0]
            while len(self._window) > 1 and self._window[0][0] < keep_from:
                self._window.popleft()
        return completed

    def finish(self) -> list[list[Frame]]:
        """The clips still open at the end of the stream, their missing frames replaced by the last one."""
        completed = []
        while self.num_clips < self.schedule.num_features(self.num_frames):
            completed.append(self._gather(self.num_clips, self.num_frames))
            self.num_clips += 1
        return completed

    def _gather(self, feature: int, num_frames: int) -> list[Frame]:
        first_index = self._window[0][0]  # never after the clip's first clamped index (see ``push``)
        return [
            self._window[int(i) - first_index][1] for i in self.schedule.frame_indices(feature, num_frames)
        ]
