"""Streaming PyAV decoding, resampled to a target frame rate by presentation time.

Frames are never all in memory: each decoded frame is rotated upright, resized and cropped as it arrives,
and only the frames the target rate selects are converted at all. Output frame ``i`` stands for time
``i / fps`` (seconds after the first frame) and shows the source frame on screen at that time, i.e. the last
frame whose presentation time is <= ``i / fps`` (within half a tick of the stream's time base, as containers
round timestamps to it); output frames continue while ``i / fps`` is before the end of the last source frame.
This handles variable frame rate streams exactly.

Bad inputs raise ``VideoError`` naming the file; a FIFO, device or socket is refused before it is opened (it
would block or be consumed), a one-frame image is refused, and an animated image (GIF, APNG) is a video. A
truncated or corrupt stream is decoded up to the point where it breaks and the valid frames are returned (a
stream with no decodable frame raises). What decoding found — a stream ending before its declared duration,
corrupt data, dropped frames (with the longest gap), out-of-order timestamps — is logged as one warning line
per file on the ``actfusion_sdk.video.decode`` logger, and timestamps that would make absurdly many frames are
warned about before the work (`PlanCheck`). An mp4 cut before its index (moov atom) cannot be opened at all.
Decoding never hangs: if no frame arrives for ``stall_seconds`` the file is given up with a ``VideoError``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from ..errors import VideoError
from ..fileio import unreadable_reason
from .resample import FrameResampler, SourceFrame, to_fraction

log = logging.getLogger(__name__)

# Container formats of images: one frame is a still image (refused), more an animation (decoded as a video).
_IMAGE_FORMATS = ("image2", "_pipe", "gif", "webp", "apng")
# A decoding plan is absurd when it makes over ABSURD_PLAN_RATIO frames per source frame and over
# ABSURD_PLAN_FRAMES frames in all: e.g. timestamps an hour apart in a 3-frame file.
ABSURD_PLAN_RATIO = 100
ABSURD_PLAN_FRAMES = 10_000


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
    comment: str | None = None  # the container's comment tag, if any


def _open(path: Path) -> av.container.InputContainer:
    reason = unreadable_reason(path)  # also answers a FIFO or device at once, before anything waits on it
    if reason is not None:
        raise VideoError(f"'{path}' {reason}")
    if path.stat().st_size == 0:
        raise VideoError(f"'{path}' is empty (0 bytes); re-copy or re-encode the video")
    container = _container(path)
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"'{path}' has no video stream (it holds {', '.join(kinds)})")
    fmt = container.format.name
    if any(marker in fmt for marker in _IMAGE_FORMATS):
        # An image container holding more than one frame (an animated GIF or PNG) is decoded as a video.
        frames = _count_frames(container, limit=2)
        container.close()
        if frames < 2:
            raise VideoError(f"'{path}' is a still image ({fmt}), not a video")
        container = _container(path)  # from the start again
    return container


def _container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise VideoError(
            f"'{path}' is not a readable video (corrupt, truncated before its index, or not a video at "
            f"all): {err}"
        ) from err


def _count_frames(container: av.container.InputContainer, limit: int) -> int:
    """The number of frames (non-empty packets) of the first video stream, counted up to `limit`."""
    count = 0
    try:
        for packet in container.demux(container.streams.video[0]):
            count += packet.size > 0
            if count >= limit:
                break
    except av.FFmpegError:
        pass  # a broken container: the frames before the break are what it holds
    return count


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
        comment=container.metadata.get("comment"),
    )


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation (PyAV's ``VideoFrame.rotation``), rounded to 90 degrees."""
    quarter_turns = round(rotation / 90) % 4
    return np.rot90(image, k=quarter_turns) if quarter_turns else image


def frame_interval(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The stream's nominal frame spacing (for frames without timestamps), if it declares a rate."""
    return 1 / to_fraction(float(stream.average_rate)) if stream.average_rate else None


class PresentationClock:
    """Times decoded frames from their pts, relative to the first timestamped frame."""

    def __init__(self) -> None:
        self.start: Fraction | None = None

    def source_frame(self, frame: av.VideoFrame) -> SourceFrame:
        offset = None
        if frame.pts is not None:
            pts_time = Fraction(frame.pts) * frame.time_base
            self.start = pts_time if self.start is None else self.start
            offset = pts_time - self.start
        return SourceFrame(
            time=offset,
            tick=Fraction(frame.time_base or 0),
            length=Fraction(frame.duration) * frame.time_base if frame.duration else None,
            image=lambda: _upright(frame.to_ndarray(format="rgb24"), frame.rotation),
        )


class StreamTimeline:
    """What the frame times of one stream show: dropped frames (gaps over 1.5 nominal intervals, the longest
    one) and out-of-order or repeated timestamps (which decoding skips)."""

    def __init__(self, interval: Fraction | None) -> None:
        self.interval = interval
        self.last: Fraction | None = None
        self.dropped = 0
        self.longest_gap: tuple[Fraction, Fraction] | None = None  # (gap, time it ends)
        self.out_of_order = 0

    def observe(self, time: Fraction | None) -> None:
        if time is None:
            return
        if self.last is not None and time <= self.last:
            self.out_of_order += 1
            return
        if self.last is not None and self.interval and time - self.last > self.interval * 3 / 2:
            gap = time - self.last
            self.dropped += round(gap / self.interval) - 1
            if self.longest_gap is None or gap > self.longest_gap[0]:
                self.longest_gap = (gap, time)
        self.last = time

    def findings(self) -> list[str]:
        found = []
        if self.dropped and self.longest_gap is not None:
            gap, end = self.longest_gap
            found.append(
                f"about {self.dropped} dropped frames (longest gap {float(gap):.2f} s, "
                f"before {float(end):.2f} s)"
            )
        if self.out_of_order:
            found.append(f"{self.out_of_order} out-of-order or repeated timestamps skipped")
        return found


class PlanCheck:
    """Warns once, before the work, when decoding at `fps` would make absurdly many frames from few source
    frames (timestamps far apart): from the container's declared frame count and duration when it states
    them, else at the first frame whose timestamp would make it so."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.warned = False

    def declared(self, info: VideoInfo) -> None:
        if info.declared_frames and info.duration:
            self.check(info.duration, info.declared_frames)

    def check(self, span: float | Fraction | None, source_frames: int) -> None:
        """`span`: seconds from the first frame to the latest; `source_frames`: frames that span holds."""
        if self.warned or span is None or self.fps is None:  # fps None: one frame per source frame
            return
        planned = math.floor(span * self.fps) + 1
        if planned > ABSURD_PLAN_FRAMES and planned > ABSURD_PLAN_RATIO * max(source_frames, 1):
            self.warned = True
            log.warning(
                "'%s': its timestamps span %.2f s for %d source frame(s); decoding at %g fps makes %s "
                "frames of it (mostly repeats of the same picture), which takes long. If the timestamps are "
                "wrong, re-encode the video with regular ones",
                self.path,
                float(span),
                source_frames,
                self.fps,
                f"{planned:,}",
            )


class VideoDecoder:
    """Iterate a video's frames at ``fps`` as [H, W, 3] uint8 tensors, resized/cropped as they are decoded.

    Opening validates the file (``VideoError`` otherwise); ``info``, when the caller has probed it already,
    skips that second read of the header. After iteration, ``num_frames`` is the number of frames produced,
    ``source_frames`` the number decoded from the file and ``duration`` the source duration in seconds (end
    of the last decoded frame).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        *,
        short_side: int | None = None,
        crop_size: int | None = None,
        stall_seconds: float = 60.0,
        info: VideoInfo | None = None,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.short_side = short_side
        self.crop_size = crop_size
        self.stall_seconds = stall_seconds
        self.info = info if info is not None else probe_video(self.path)
        self.num_frames = 0
        self.source_frames = 0
        self.duration: float | None = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        with _open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            resampler = FrameResampler(
                self.fps,
                short_side=self.short_side,
                crop_size=self.crop_size,
                frame_interval=frame_interval(stream),
            )
            clock = PresentationClock()
            # An animation's frames have delays of their own (a GIF may hold one for seconds): no frame
            # rate to have dropped frames from.
            animation = any(marker in container.format.name for marker in _IMAGE_FORMATS)
            timeline = StreamTimeline(None if animation else frame_interval(stream))
            plan = PlanCheck(self.path, self.fps)
            plan.declared(self.info)
            self._damage: str | None = None
            for frame in self._decoded(container, stream):
                source = clock.source_frame(frame)
                timeline.observe(source.time)
                plan.check(source.time, self.source_frames)
                yield from resampler.push(source)
            yield from resampler.finish()
            if not resampler.started:
                raise VideoError(f"'{self.path}' contains no decodable video frame")
            self.num_frames, self.duration = resampler.num_frames, resampler.duration
        self._report(timeline)

    def _declared_duration(self) -> float | None:
        """The duration the container declares: its frame count at its rate when it states both."""
        if self.info.declared_frames and self.info.average_fps:
            return self.info.declared_frames / self.info.average_fps
        return self.info.duration

    def _report(self, timeline: StreamTimeline) -> None:
        """Log one line with everything decoding found, if it found anything."""
        found = [] if self._damage is None else [self._damage]
        declared = self._declared_duration()
        slack = 2 / self.info.average_fps if self.info.average_fps else 0.1
        if declared and self.duration < declared - slack:
            found.append(
                f"the stream ends at {self.duration:.2f} s of the declared {declared:.2f} s "
                "(truncated or corrupt); using the frames before that"
            )
        found += timeline.findings()
        if found:
            log.warning("'%s': %s", self.path, "; ".join(found))

    def _decoded(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[av.VideoFrame]:
        """Decoded frames in presentation order; stops where the stream breaks (noted for the report).

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
            self._damage = f"corrupt data after {produced} frames ({err}); decoding stopped there"
            return


def read_frames(
    path: str | Path, fps: float, *, short_side: int | None = None, crop_size: int | None = None
) -> torch.Tensor:
    """All frames of a (short) video at ``fps`` as one [N, H, W, 3] uint8 tensor (tests, small clips)."""
    return torch.stack(list(VideoDecoder(path, fps, short_side=short_side, crop_size=crop_size)))
