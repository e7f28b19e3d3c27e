"""Live video sources: frames at a fixed rate from a stream that is still arriving.

A source is anything PyAV opens as it arrives (a file, optionally paced at 1x; a file still being written,
with ``follow``; ``pipe:0`` or a FIFO path; ``rtsp://``; ``http(s)://`` HLS; a V4L2 device with
``format="v4l2"``) or an iterable of ``(timestamp_seconds, HxWx3 uint8 array)`` pushed from Python. Decoding
runs in a producer thread; frames are resampled by presentation time exactly as the file decoder does.
A source that cannot be opened, or that breaks off with an I/O error, raises ``VideoError``; a source that
delivers nothing for ``stall_seconds`` ends the stream (``stalled`` is then True) instead of hanging.

Damage is handled as the file decoder handles it, and reported with its accounting (``StreamTimeline``): a
corrupt packet is skipped; a frame whose timestamp repeats or goes back (garbage in the stream, two
recordings joined, a clock reset) is dropped until the timestamps pass the latest one seen; gaps count as
dropped frames. The first such event is logged as it happens, and one warning line at the end of the stream
gives the counts (``actfusion_sdk.video.live`` logger). A pushed frame that cannot be used at all (a timestamp
that is not a finite number, an image with no pixels) raises ``VideoError`` naming the frame.
"""

from __future__ import annotations

import errno
import logging
import math
import numbers
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch

from ..errors import ConfigError, VideoError
from ..limits import MAX_SECONDS, check_seconds
from .decode import PresentationClock, StreamTimeline, frame_interval
from .prefetch import SourceStalled, prefetch
from .resample import FrameResampler, SourceFrame, to_fraction

PushedFrames = Iterable[tuple[float, np.ndarray]]
_PUSHED_TICK = Fraction(1, 1_000_000)  # pushed timestamps are exact to the microsecond (to_fraction)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveFrame:
    """Output frame ``index`` (time ``index / fps``), and when it became known (``time.monotonic()``)."""

    index: int
    arrival: float
    image: torch.Tensor


class LiveSource:
    """Frames of a live source at ``fps``, resized and cropped, as they arrive (see the module docstring).

    ``realtime`` paces the source at 1x by its timestamps (a file standing in for a camera). ``options`` are
    FFmpeg options for PyAV (e.g. ``{"video_size": "640x480"}`` for V4L2); ``follow`` keeps reading a file
    that is still being written. ``buffer_frames`` bounds the frames waiting for the consumer.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | PushedFrames,
        fps: float,
        *,
        short_side: int | None = None,
        crop_size: int | None = None,
        format: str | None = None,  # noqa: A002 - PyAV's name for the container/device format
        options: dict[str, str] | None = None,
        realtime: bool = False,
        follow: bool = False,
        stall_seconds: float = 10.0,
        buffer_frames: int = 256,
    ) -> None:
        stall_seconds = check_seconds("stall_seconds", stall_seconds)
        if isinstance(buffer_frames, bool) or not isinstance(buffer_frames, int) or buffer_frames < 1:
            raise ConfigError(f"buffer_frames must be a positive integer, got {buffer_frames!r}")
        self.source = source
        self.name = str(source) if isinstance(source, (str, os.PathLike)) else "frames from Python"
        self.fps = fps
        self.short_side, self.crop_size = short_side, crop_size
        self.format = format
        self.options = dict(options or {})
        if follow:
            # FFmpeg's file protocol retries at the end of the file; rw_timeout (µs) ends a finished one.
            # Without skip_estimate_duration_from_pts, opening an MPEG-TS seeks to the file's end for its
            # duration, i.e. waits until the file stops growing (measured: no frame until then).
            self.options.setdefault("follow", "1")
            self.options.setdefault("rw_timeout", str(int(stall_seconds * 1e6)))
            self.options.setdefault("skip_estimate_duration_from_pts", "1")
        self.realtime = realtime
        self.stall_seconds = stall_seconds
        self.buffer_frames = buffer_frames
        self.stalled = False
        self.skipped_packets = 0
        self.timeline = StreamTimeline(None)  # what the frame times show (set anew when a container opens)
        self.newest = -1  # index of the newest frame produced so far
        self.duration: float | None = None  # stream seconds, once the source has ended

    @property
    def newest_time(self) -> float:
        """Stream time (seconds) of the newest frame that has arrived."""
        return max(self.newest, 0) / self.fps

    def frames(self) -> Iterator[LiveFrame]:
        """Frames in order until the source ends or stalls; raises ``VideoError`` for a bad source."""
        try:
            yield from prefetch(self._produce(), depth=self.buffer_frames, stall_seconds=self.stall_seconds)
        except SourceStalled:
            self.stalled = True
            warnings.warn(
                f"{self.name!r}: no frame for {self.stall_seconds:g} s; ending the stream", stacklevel=2
            )
        self._report()

    def _report(self) -> None:
        """One warning line with what the damage of the stream cost, if it had any (as the decoder says)."""
        found = self.timeline.findings()
        if self.skipped_packets:
            found.insert(0, f"{self.skipped_packets} corrupt packets skipped")
        if found:
            log.warning("'%s': %s", self.name, "; ".join(found))

    def _timed(self, frame: SourceFrame) -> SourceFrame:
        """`frame`, its time noted on the timeline; the first repeated or backward time is said at once."""
        before = self.timeline.out_of_order
        latest = self.timeline.last
        self.timeline.observe(frame.time)
        if before == 0 and self.timeline.out_of_order == 1:
            log.warning(
                "'%s': a frame's timestamp (%.3f s) does not follow the latest one (%.3f s): the stream has "
                "damage, a splice or a clock reset; such frames are dropped until the timestamps pass %.3f s "
                "(the count follows at the end)",
                self.name,
                float(frame.time),
                float(latest),
                float(latest),
            )
        return frame

    def _produce(self) -> Iterator[LiveFrame]:
        resampler = FrameResampler(self.fps, short_side=self.short_side, crop_size=self.crop_size)
        pacer = _Pacer(self.realtime)
        for source_frame in self._source_frames(resampler):
            pacer.wait(source_frame.time)
            yield from self._stamped(resampler.push(source_frame))
        yield from self._stamped(resampler.finish())
        if not resampler.started:
            raise VideoError(f"{self.name!r} ended before its first decodable video frame")
        self.duration = resampler.duration

    def _stamped(self, images: list[torch.Tensor]) -> Iterator[LiveFrame]:
        arrival = time.monotonic()
        for image in images:
            self.newest += 1
            yield LiveFrame(self.newest, arrival, image)

    def _source_frames(self, resampler: FrameResampler) -> Iterator[SourceFrame]:
        if not isinstance(self.source, (str, os.PathLike)):
            for frame in _pushed(self.source):
                yield self._timed(frame)
            return
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            resampler.expect_frame_interval(frame_interval(stream))
            self.timeline = StreamTimeline(frame_interval(stream))
            clock = PresentationClock()
            for frame in self._decoded(container, stream):
                yield self._timed(clock.source_frame(frame))

    def _open(self) -> av.container.InputContainer:
        target = str(self.source)
        if not (target.startswith("pipe:") or "://" in target or self.format or os.path.exists(target)):
            raise VideoError(f"{target!r} does not exist and is not a stream URL; check the path")
        kwargs: dict[str, Any] = {"format": self.format, "options": self.options}
        if "://" in target:
            kwargs["timeout"] = self.stall_seconds  # network sources honour open/read timeouts
        try:
            container = av.open(target, mode="r", **kwargs)
        except (av.FFmpegError, OSError) as err:
            raise VideoError(f"cannot open live source {target!r}: {err}") from err
        if not container.streams.video:
            container.close()
            raise VideoError(f"live source {target!r} has no video stream")
        return container

    def _decoded(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Iterator[av.VideoFrame]:
        """Decoded frames; a packet that fails to decode is skipped with a warning, a failing read raises."""
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as err:
                if "follow" in self.options and _ended_growing(err):
                    for frame in stream.codec_context.decode(None):  # the frames the decoder still holds
                        frame.time_base = frame.time_base or stream.time_base
                        yield frame
                    return  # a followed file stopped growing for rw_timeout: its end
                raise VideoError(f"live source {self.name!r} broke off: {err}") from err
            try:
                frames = packet.decode()
            except av.FFmpegError as err:
                self.skipped_packets += 1
                if self.skipped_packets == 1:
                    log.warning(
                        "'%s': skipped a corrupt packet (%s); the count follows at the end", self.name, err
                    )
                continue
            yield from frames


def _ended_growing(err: BaseException) -> bool:
    """Whether a read error of a followed file means it stopped growing: FFmpeg's file protocol gives up
    after rw_timeout with an exit, a timeout or EIO."""
    return isinstance(err, (av.ExitError, TimeoutError)) or getattr(err, "errno", None) == errno.EIO


def _pushed(frames: PushedFrames) -> Iterator[SourceFrame]:
    """(timestamp seconds, HxWx3 uint8 image) pairs as source frames, timed from the first timestamp."""
    start = None
    for index, item in enumerate(frames):
        timestamp, image = _pushed_pair(index, item)
        moment = to_fraction(timestamp)
        start = moment if start is None else start
        if abs(moment - start) > MAX_SECONDS:
            raise VideoError(
                f"pushed frame {index}: timestamp {timestamp} s is more than a week from the first frame's "
                f"({float(start)} s); timestamps are seconds of stream time"
            )
        yield SourceFrame(moment - start, _PUSHED_TICK, None, lambda image=image: image)


def _pushed_pair(index: int, item: object) -> tuple[float, np.ndarray]:
    """Pushed frame `index` checked: a finite timestamp in seconds and an HxWx3 uint8 image with pixels."""
    try:
        timestamp, image = item  # type: ignore[misc]
    except (TypeError, ValueError):
        raise VideoError(
            f"pushed frame {index} is {type(item).__name__}, not a (timestamp seconds, image) pair"
        ) from None
    if isinstance(timestamp, bool) or not isinstance(timestamp, numbers.Real) or not math.isfinite(timestamp):
        raise VideoError(f"pushed frame {index}: timestamp {timestamp!r} is not a finite number of seconds")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise VideoError(
            f"pushed frame {index}: frames must be HxWx3 uint8 arrays, got shape {image.shape} "
            f"dtype {image.dtype}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise VideoError(f"pushed frame {index} has no pixels (shape {image.shape}); push real images")
    return float(timestamp), image


class _Pacer:
    """Holds frames back until their stream time has passed on the wall clock (when ``realtime``)."""

    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        self._origin: float | None = None

    def wait(self, stream_time: Fraction | None) -> None:
        if not self.realtime or stream_time is None:
            return
        if self._origin is None:
            self._origin = time.monotonic() - float(stream_time)
        delay = self._origin + float(stream_time) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
