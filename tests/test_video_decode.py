"""Decoding real files written with PyAV: frame selection by timestamp, sizes, formats, rotation."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from actfusion_sdk.video.decode import VideoDecoder, probe_video, read_frames
from actfusion_sdk.video.transforms import resize_and_crop, resized_size

from .helpers import LEVEL_STEP, write_video


def decoded_indices(frames: torch.Tensor) -> list[int]:
    """Source frame index of each decoded flat frame (levels are 20 apart; codecs move them by a few)."""
    means = frames.float().mean(dim=(1, 2, 3))
    return [round((m.item() - 10) / LEVEL_STEP) for m in means]


@pytest.mark.parametrize(
    ("source_fps", "target_fps", "expected"),
    [
        (30, 30, list(range(12))),
        (30, 15, [0, 2, 4, 6, 8, 10]),
        # 12 frames at 30 fps last 0.4 s; at 16 fps, times 0, 1/16, .., 6/16 show frames floor(30·i/16).
        (30, 16, [0, 1, 3, 5, 7, 9, 11]),
        (10, 20, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11]),
        (24, 10, [0, 2, 4, 7, 9]),
    ],
)
def test_constant_rate_resampling(
    tmp_path: Path, source_fps: int, target_fps: int, expected: list[int]
) -> None:
    path = write_video(tmp_path / "cfr.mp4", 12, fps=source_fps)
    decoder = VideoDecoder(path, target_fps)
    frames = torch.stack(list(decoder))
    assert decoded_indices(frames) == expected
    assert decoder.num_frames == len(expected) == math.ceil(12 * target_fps / source_fps)
    assert decoder.duration == pytest.approx(12 / source_fps)


def test_variable_frame_rate_by_presentation_time(tmp_path: Path) -> None:
    # Frames shown at 0, 100, 150, 400 and 500 ms; the last lasts one 1/30 s tick of the stream rate.
    path = write_video(tmp_path / "vfr.mkv", 5, fps=30, pts_ms=[0, 100, 150, 400, 500])
    frames = read_frames(path, 10)
    # Output times 0, .1, .2, .3, .4, .5 s show the latest frame that started at or before them.
    assert decoded_indices(frames) == [0, 1, 2, 2, 3, 4]


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "size"),
    [
        ("libx264", "yuv420p", (48, 32)),
        ("libx264", "yuv444p", (33, 17)),
        ("libx264", "gray", (40, 30)),
        ("libx264", "yuv420p10le", (48, 32)),
        ("mpeg4", "yuv420p", (64, 48)),
        ("ffv1", "yuv444p", (35, 21)),
    ],
)
def test_codecs_pixel_formats_and_odd_sizes(
    tmp_path: Path, codec: str, pix_fmt: str, size: tuple[int, int]
) -> None:
    path = write_video(tmp_path / "v.mkv", 6, codec=codec, pix_fmt=pix_fmt, size=size)
    info = probe_video(path)
    assert (info.width, info.height) == size
    frames = read_frames(path, 30)
    assert frames.shape == (6, size[1], size[0], 3) and frames.dtype == torch.uint8
    with av.open(str(path)) as container:
        plain = [torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert torch.equal(frames, torch.stack(plain))


def test_resize_and_centre_crop_sizes(tmp_path: Path) -> None:
    path = write_video(tmp_path / "wide.mp4", 3, size=(64, 48))
    # short side 48 -> 32 scales the width to round(64·32/48) = 43, then a centred 32×32 crop.
    assert resized_size(48, 64, 32) == (32, 43)
    assert read_frames(path, 30, short_side=32).shape == (3, 32, 43, 3)
    assert read_frames(path, 30, short_side=32, crop_size=32).shape == (3, 32, 32, 3)
    assert resized_size(101, 37, 20) == (55, 20)


def test_resize_matches_float_antialiased_interpolation() -> None:
    image = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    got = resize_and_crop(image, 24, 20)
    reference = F.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None].double(),
        size=(24, 37),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0].permute(1, 2, 0)
    top, left = (24 - 20) // 2, (37 - 20) // 2
    expected = reference[top : top + 20, left : left + 20]
    assert (got.double() - expected).abs().max() <= 1.0


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    image = np.zeros((32, 48, 3), np.uint8)
    image[:8, :8] = 255  # a white block in the top-left corner of the stored frame
    upright = write_video(tmp_path / "plain.mp4", 2, images=[image] * 2)
    rotated = write_video(tmp_path / "rot.mp4", 2, images=[image] * 2, rotation=90)
    plain_frames = read_frames(upright, 30)
    rotated_frames = read_frames(rotated, 30)
    # 90° counter-clockwise display rotation: 48×32 stored, 32×48 shown, the block moves to the bottom-left.
    assert rotated_frames.shape == (2, 48, 32, 3)
    assert torch.equal(rotated_frames, torch.rot90(plain_frames, k=1, dims=(1, 2)))
    assert rotated_frames[0, -4, 4, 0] > 200 and rotated_frames[0, 4, 4, 0] < 50


def test_probe_reports_stream_facts(tmp_path: Path) -> None:
    path = write_video(tmp_path / "p.mp4", 9, fps=15, size=(48, 32))
    info = probe_video(path)
    assert (info.codec, info.pixel_format, info.declared_frames) == ("h264", "yuv420p", 9)
    assert info.average_fps == pytest.approx(15)
    assert info.duration == pytest.approx(9 / 15)
