"""Encoding of rendered frames as mp4 (PyAV, yuv420p): libx264 where this build has it, else mpeg4."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

from ..errors import ConfigError
from ..weights import DEMO_VIDEO_TAG

PREFERRED_CODECS = ("libx264", "mpeg4")


def available_codec() -> str:
    """The best video encoder this PyAV build has: libx264 (H.264), else mpeg4 (MPEG-4 Part 2)."""
    for name in PREFERRED_CODECS:
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:  # this FFmpeg build lacks the encoder
            continue
        return name
    raise ConfigError(
        f"this PyAV build has none of the encoders {', '.join(PREFERRED_CODECS)}; install av>=11"
    )


def write_mp4(chunks: Iterable[np.ndarray], path: Path, *, fps: int, codec: str | None = None) -> str:
    """Encode uint8 [n, H, W, 3] RGB chunks as an mp4 (yuv420p) at `fps`; returns the encoder used.

    The file appears only when complete (written to a temporary name, then renamed)."""
    codec = codec or available_codec()
    partial = path.with_name(path.name + ".part")
    try:
        with av.open(str(partial), mode="w", format="mp4") as container:
            container.metadata["comment"] = DEMO_VIDEO_TAG  # the predictor's demo-model notice looks for it
            stream = None
            for chunk in chunks:
                if stream is None:
                    stream = _add_video_stream(
                        container, codec, fps, height=chunk.shape[1], width=chunk.shape[2]
                    )
                for frame in chunk:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            if stream is None:
                raise ConfigError(f"no frames to write to {path}; the timeline is empty")
            container.mux(stream.encode())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return codec


def _add_video_stream(
    container: av.container.OutputContainer, codec: str, fps: int, *, height: int, width: int
) -> av.video.stream.VideoStream:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = height, width
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": "23", "preset": "veryfast"}  # x264's default quality, fast enough for tests
    else:
        stream.bit_rate = 2_000_000  # mpeg4 has no constant-quality default; ample for 160x160 at 15 fps
    return stream
