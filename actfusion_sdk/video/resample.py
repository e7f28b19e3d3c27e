"""Resampling by presentation time: source frames at arbitrary times -> frames at a fixed rate.

Output frame ``i`` stands for time ``i / fps`` and shows the source frame on screen at that time, i.e. the
last frame whose presentation time is <= ``i / fps`` (within half a tick of the source's time base, as
containers round timestamps to it); output frames continue while ``i / fps`` is before the end of the last
source frame. The file decoder and the live sources share this one implementation.

With ``fps=None`` nothing is resampled: every decoded frame comes out once, in decoding order (the MS-TCN
feature protocol uses each frame at the video's own rate, as OpenCV's reader returns them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from .transforms import resize_and_crop


def to_fraction(seconds: float) -> Fraction:
    """Seconds as an exact fraction (microsecond-level denominators, enough for every container)."""
    return Fraction(seconds).limit_denominator(1_000_000)


@dataclass(frozen=True)
class SourceFrame:
    """One source frame: its time after the first frame (None: unknown, continue the cadence), the tick
    its timestamps are rounded to, its display length if known, and how to get its upright RGB image."""

    time: Fraction | None
    tick: Fraction
    length: Fraction | None
    image: Callable[[], np.ndarray]


class FrameResampler:
    """Turn ``SourceFrame``s, pushed in presentation order, into [H, W, 3] uint8 frames at ``fps``.

    Each source frame is converted (resized and cropped) at most once, and only if some output shows it.
    ``frame_interval`` is the assumed spacing of frames without timestamps (default: the output step).
    ``fps=None``: every source frame, none skipped or repeated.
    """

    def __init__(
        self,
        fps: float | None,
        *,
        short_side: int | None = None,
        crop_size: int | None = None,
        frame_interval: Fraction | None = None,
    ) -> None:
        self.step = None if fps is None else 1 / to_fraction(fps)
        self.short_side = short_side
        self.crop_size = crop_size
        self.num_frames = 0
        self.duration: float | None = None  # end of the last source frame, once finished
        self._held: SourceFrame | None = None  # the source frame on screen until the next one starts
        self._last_time = Fraction(-1)
        self._last_delta = frame_interval or self.step or Fraction(0)

    def expect_frame_interval(self, interval: Fraction | None) -> None:
        """Set the spacing assumed for frames without timestamps (known once the stream is open)."""
        self._last_delta = interval or self.step or Fraction(0)

    @property
    def started(self) -> bool:
        return self._held is not None

    def push(self, frame: SourceFrame) -> list[torch.Tensor]:
        """Add the next source frame; returns the output frames that the previous one covers."""
        if frame.time is None:
            frame_time = self._last_time + self._last_delta if self._held is not None else Fraction(0)
        else:
            frame_time = frame.time
        if self.step is None:
            return self._pass(frame, frame_time)
        if frame_time <= self._last_time:
            return []  # repeated or out-of-order timestamp: the earlier frame already covers it
        emitted = []
        if self._held is not None:
            self._last_delta = frame_time - self._last_time
            emitted = self._emit(self._held, before=frame_time)
        self._held, self._last_time = frame, frame_time
        return emitted

    def finish(self) -> list[torch.Tensor]:
        """End of the source: the last frame is shown for its length (or the last spacing seen)."""
        if self._held is None:
            return []
        end = self._last_time + (self._held.length or self._last_delta)
        self.duration = float(end)
        return [] if self.step is None else self._emit(self._held, before=end)

    def _pass(self, frame: SourceFrame, frame_time: Fraction) -> list[torch.Tensor]:
        """Every-frame mode: ``frame`` itself; its time only tracks the spacing and the duration."""
        if self._held is not None and frame_time > self._last_time:
            self._last_delta = frame_time - self._last_time
        self._held, self._last_time = frame, max(self._last_time, frame_time)
        self.num_frames += 1
        return [resize_and_crop(frame.image(), self.short_side, self.crop_size)]

    def _emit(self, frame: SourceFrame, *, before: Fraction) -> list[torch.Tensor]:
        """``frame`` for every output time before ``before`` (converted once, only if used); a time within
        half a tick of ``before`` counts as after it."""
        last = before - frame.tick / 2
        if self.num_frames * self.step > last:
            return []
        converted = resize_and_crop(frame.image(), self.short_side, self.crop_size)
        emitted = []
        while self.num_frames * self.step <= last:
            self.num_frames += 1
            emitted.append(converted)
        return emitted
