"""Every bad input of issue 4 item 5: a VideoError naming the file, or correct features (with a warning)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from actfusion_sdk.errors import InputError, VideoError
from actfusion_sdk.video.clips import ClipSchedule
from actfusion_sdk.video.decode import VideoDecoder, read_frames

from .helpers import tiny_extractor, write_video


def noise_images(count: int, size: tuple[int, int] = (48, 32)) -> list[np.ndarray]:
    width, height = size
    return list(np.random.default_rng(count).integers(0, 256, (count, height, width, 3), dtype=np.uint8))


def expect_video_error(path: Path, match: str) -> None:
    with pytest.raises(VideoError, match=match) as caught:
        list(VideoDecoder(path, 10))
    assert path.name in str(caught.value)
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 3


def test_missing_path(tmp_path: Path) -> None:
    expect_video_error(tmp_path / "nowhere.mp4", "does not exist")


def test_directory(tmp_path: Path) -> None:
    expect_video_error(tmp_path, "is a directory")


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    expect_video_error(empty, "empty")


def test_text_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    expect_video_error(text, "not a readable video")


def test_image_file(tmp_path: Path) -> None:
    image = tmp_path / "still.png"
    with av.open(str(image), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        container.mux(
            stream.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24"))
        )
        container.mux(stream.encode())
    expect_video_error(image, "still image")


def test_audio_only_file(tmp_path: Path) -> None:
    audio = tmp_path / "speech.m4a"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    expect_video_error(audio, "no video stream")


def test_mp4_cut_before_its_index(tmp_path: Path) -> None:
    full = write_video(tmp_path / "full.mp4", 30, images=noise_images(30))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])  # the moov index sits at the end
    expect_video_error(cut, "not a readable video")


def test_truncated_stream_decodes_the_valid_part_with_a_warning(tmp_path: Path, caplog) -> None:
    full = write_video(tmp_path / "full.mkv", 30, fps=10, images=noise_images(30))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    complete = read_frames(full, 10)
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video"):
        partial = read_frames(cut, 10)
    (line,) = [record.getMessage() for record in caplog.records]
    assert re.search(r"cut.mkv.*ends at \d+\.\d\d s of the declared 3\.00 s \(truncated or corrupt\)", line)
    assert 0 < len(partial) < 30
    assert torch.equal(partial[:-1], complete[: len(partial) - 1])  # the last frame may be cut mid-packet


def test_corrupt_middle_stops_with_a_warning(tmp_path: Path, caplog) -> None:
    full = write_video(tmp_path / "full.mkv", 30, fps=10, images=noise_images(30))
    data = bytearray(full.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video"):
        frames = read_frames(broken, 10)
    assert len(caplog.records) == 1 and "broken.mkv" in caplog.records[0].getMessage()
    assert 0 < len(frames) < 30


def test_no_progress_is_given_up(tmp_path: Path) -> None:
    # With B-frames the decoder holds the first packets back; a zero stall budget must end the file at once.
    path = write_video(tmp_path / "slow.mp4", 12, images=noise_images(12), preset="medium")
    with pytest.raises(VideoError, match="slow.mp4.*no frame decoded"):
        list(VideoDecoder(path, 30, stall_seconds=0))


def test_video_shorter_than_one_clip_gives_an_edge_replicated_feature(tmp_path: Path) -> None:
    extractor = tiny_extractor()
    path = write_video(tmp_path / "short.mp4", 3, fps=10, size=(32, 32), images=noise_images(3, (32, 32)))
    result = extractor.extract(path)
    assert result.features.shape == (2048, 1)
    frames = read_frames(path, 10, short_side=36, crop_size=32)
    clip = frames[ClipSchedule(4, 1, 4).frame_indices(0, 3)]  # frames 0, 1, 2, 2
    expected = extractor.embed_clips(clip[None])[0]
    assert torch.allclose(torch.from_numpy(result.features[:, 0]), expected, rtol=1e-5, atol=1e-5)


def test_one_frame_video(tmp_path: Path) -> None:
    extractor = tiny_extractor()
    path = write_video(tmp_path / "one.mp4", 1, fps=10, size=(32, 32), images=noise_images(1, (32, 32)))
    result = extractor.extract(path)
    assert result.features.shape == (2048, 1) and result.num_frames == 1
    frame = read_frames(path, 10, short_side=36, crop_size=32)
    expected = extractor.embed_clips(frame.expand(4, -1, -1, -1)[None])[0]
    assert torch.allclose(torch.from_numpy(result.features[:, 0]), expected, rtol=1e-5, atol=1e-5)


def test_4k_video_is_resized_frame_by_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "uhd.mp4", 2, fps=10, size=(3840, 2160))
    frames = read_frames(path, 10, short_side=36, crop_size=32)
    assert frames.shape == (2, 32, 32, 3)
    assert tiny_extractor().extract(path).features.shape == (2048, 1)


def test_dropped_frames_are_reported_with_the_longest_gap_not_as_truncation(tmp_path: Path, caplog) -> None:
    # 10 fps with 5 frames missing after 0.9 s and 2 after 2.4 s; the stream is complete (0 - 3.0 s).
    times = [t for t in range(0, 3000, 100) if not (900 < t < 1500 or 2400 < t < 2700)]
    path = write_video(tmp_path / "gaps.mkv", len(times), fps=10, pts_ms=times)
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video"):
        frames = read_frames(path, 10)
    assert len(frames) == 30  # the resampler holds each frame over the gap
    (line,) = [record.getMessage() for record in caplog.records]
    assert "gaps.mkv" in line and "about 7 dropped frames (longest gap 0.60 s, before 1.50 s)" in line
    assert "truncated" not in line


def test_a_clean_video_logs_nothing(tmp_path: Path, caplog) -> None:
    path = write_video(tmp_path / "clean.mp4", 20, fps=10)
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video"):
        read_frames(path, 10)
    assert caplog.records == []
