"""Streaming PyAV decoding, resampled to a target frame rate by presentation time.

Frames are never all in memory: each decoded frame is rotated upright, resized and cropped as it arrives,
and only the frames the target rate selects are converted at all. Output frame ``i`` stands for time
``i / fps`` (seconds after the first frame) and shows the source frame on screen at that time, i.e. the last
frame whose presentation time is <= ``i / fps`` (within half a tick of the stream's time base, as containers
round timestamps to it); output frames continue while ``i / fps`` is before the end of the last source frame.
This handles variable frame rate streams exactly.

Bad inputs raise ``VideoError`` naming the file. A truncated or corrupt stream is decoded up to the point
where it breaks: the valid frames are returned and a ``UserWarning`` names the file (a stream with no
decodable frame raises). An mp4 cut before its index (moov atom) cannot be opened at all and raises.
Decoding never hangs: if no frame arrives for ``stall_seconds`` the file is given up with a ``VideoError``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from ..errors import VideoError
from ..fileio import unreadable_reason
from .transforms import resize_and_crop

# Container formats that hold still images, which PyAV would otherwise open as one-frame videos.
_IMAGE_FORMATS = ("image2", "_pipe", "gif", "webp", "apng")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream (coded sizes, before any display rotation)."""

    path: Path
    width: int
    height: int
    codec: str
    pixel_format: str | None
    average_fps: float | None
    duration: float | None
    declared_frames: int | None
    container: str


def _fraction(value: float) -> Fraction:
    return Fraction(value).limit_denominator(1_000_000)


def _open(path: Path) -> av.container.InputContainer:
    reason = unreadable_reason(path)
    if reason is not None:
        raise VideoError(f"'{path}' {reason}")
    if path.stat().st_size == 0:
        raise VideoError(f"'{path}' is empty (0 bytes); re-copy or re-encode the video")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise VideoError(
            f"'{path}' is not a readable video (corrupt, truncated before its index, or not a video at "
            f"all): {err}"
        ) from err
    fmt = container.format.name
    if any(marker in fmt for marker in _IMAGE_FORMATS):
        container.close()
        raise VideoError(f"'{path}' is a still image ({fmt}), not a video")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"'{path}' has no video stream (it holds {', '.join(kinds)})")
    return container


def probe_video(path: str | Path) -> VideoInfo:
    """Read the container header of ``path`` (raises ``VideoError`` for anything that is not a video)."""
    path = Path(path)
    with _open(path) as container:
        return _info(path, container)


def _info(path: Path, container: av.container.InputContainer) -> VideoInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    return VideoInfo(
        path=path,
        width=ctx.width,
        height=ctx.height,
        codec=ctx.name,
        pixel_format=ctx.pix_fmt,
        average_fps=float(stream.average_rate) if stream.average_rate else None,
        duration=duration,
        declared_frames=stream.frames or None,
        container=container.format.name,
    )


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation (PyAV's ``VideoFrame.rotation``), rounded to 90 degrees."""
    quarter_turns = round(rotation / 90) % 4
    return np.rot90(image, k=quarter_turns) if quarter_turns else image


class VideoDecoder:
    """Iterate a video's frames at ``fps`` as [H, W, 3] uint8 tensors, resized/cropped as they are decoded.

    Opening validates the file (``VideoError`` otherwise). After iteration, ``num_frames`` is the number of
    frames produced, ``source_frames`` the number decoded from the file and ``duration`` the source duration
    in seconds (end of the last decoded frame).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        *,
        short_side: int | None = None,
        crop_size: int | None = None,
        stall_seconds: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.short_side = short_side
        self.crop_size = crop_size
        self.stall_seconds = stall_seconds
        self.info = probe_video(self.path)
        self.num_frames = 0
        self.source_frames = 0
        self.duration: float | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        step = 1 / _fraction(self.fps)
        self.num_frames = 0
        held: av.VideoFrame | None = None  # the source frame on screen until the next one starts
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fallback = 1 / _fraction(float(stream.average_rate)) if stream.average_rate else step
            start = None
            last_time = Fraction(-1)
            last_delta = fallback
            for frame in self._decoded(container, stream):
                if frame.pts is None:
                    frame_time = last_time + last_delta if held is not None else Fraction(0)
                else:
                    pts_time = Fraction(frame.pts) * frame.time_base
                    start = pts_time if start is None else start
                    frame_time = pts_time - start
                if frame_time <= last_time:
                    continue  # repeated or out-of-order timestamp: the earlier frame already covers it
                if held is not None:
                    last_delta = frame_time - last_time
                    yield from self._emit(held, before=frame_time, step=step)
                held, last_time = frame, frame_time
            if held is None:
                raise VideoError(f"'{self.path}' contains no decodable video frame")
            held_length = Fraction(held.duration) * held.time_base if held.duration else last_delta
            self.duration = float(last_time + held_length)
            yield from self._emit(held, before=last_time + held_length, step=step)
        self._warn_if_incomplete()

    def _warn_if_incomplete(self) -> None:
        """Warn when fewer frames or less time decoded than the container declares (a cut-off file)."""
        declared_frames, declared_duration = self.info.declared_frames, self.info.duration
        slack = 2 / self.info.average_fps if self.info.average_fps else 0.1
        if (declared_frames and self.source_frames < declared_frames) or (
            declared_duration and self.duration < declared_duration - slack
        ):
            warnings.warn(
                f"'{self.path}': stream ends early (truncated or corrupt): decoded {self.source_frames} "
                f"frames / {self.duration:.3f} s of the declared {declared_frames or '?'} frames / "
                f"{declared_duration or 0:.3f} s; using the frames before the damage",
                stacklevel=3,
            )

    def _emit(self, frame: av.VideoFrame, *, before: Fraction, step: Fraction) -> Iterator[torch.Tensor]:
        """Yield ``frame`` for every output time before ``before`` (converting it once, only if used).

        Timestamps are rounded to whole ticks of the stream's time base (e.g. 67 ms for 1/15 s in mkv), so a
        time within half a tick of ``before`` is counted as after it.
        """
        last = before - Fraction(frame.time_base or 0) / 2
        if self.num_frames * step > last:
            return
        image = _upright(frame.to_ndarray(format="rgb24"), frame.rotation)
        converted = resize_and_crop(image, self.short_side, self.crop_size)
        while self.num_frames * step <= last:
            self.num_frames += 1
            yield converted

    def _decoded(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[av.VideoFrame]:
        """Decoded frames in presentation order; stops with a warning where the stream breaks.

        The stall clock counts only time spent demuxing and decoding, not time the consumer holds a frame.
        """
        produced = self.source_frames = 0
        try:
            waiting_since = time.monotonic()
            for packet in container.demux(stream):
                frames = packet.decode()
                if not frames and time.monotonic() - waiting_since > self.stall_seconds:
                    raise VideoError(
                        f"'{self.path}': no frame decoded for {self.stall_seconds:g} s after frame "
                        f"{produced}; the stream looks corrupt (re-encode it)"
                    )
                for frame in frames:
                    produced = self.source_frames = produced + 1
                    yield frame
                if frames:
                    waiting_since = time.monotonic()
        except av.FFmpegError as err:
            if produced == 0:
                raise VideoError(f"'{self.path}': the video stream cannot be decoded: {err}") from err
            warnings.warn(
                f"'{self.path}': stream is corrupt or truncated after {produced} frames ({err}); "
                "using the frames decoded before the damage",
                stacklevel=2,
            )
            return


def read_frames(
    path: str | Path, fps: float, *, short_side: int | None = None, crop_size: int | None = None
) -> torch.Tensor:
    """All frames of a (short) video at ``fps`` as one [N, H, W, 3] uint8 tensor (tests, small clips)."""
    return torch.stack(list(VideoDecoder(path, fps, short_side=short_side, crop_size=crop_size)))
