"""The flow stream's input: TV-L1 settings, flow on known motion, resize/crop/clip, the 21-frame windows."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from actfusion_sdk.cli import main
from actfusion_sdk.errors import ConfigError
from actfusion_sdk.features import mstcn_frames
from actfusion_sdk.features.flow import MSTCN_TVL1, FlowField, prepare_flow
from actfusion_sdk.features.mstcn import WindowAssembler
from actfusion_sdk.features.mstcn_frames import FrameGeometry

cv2 = pytest.importorskip("cv2")

SHIFT = 3  # pixels per frame, to the right


def moving_square(frames: int, height: int = 96, width: int = 128) -> list[np.ndarray]:
    """Grey frames: a textured 40 px square moving SHIFT px right per frame over a still textured ground."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (40, 40)).astype(np.uint8), (5, 5), 1.0)
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width)).astype(np.uint8), (5, 5), 1.0)
    images = []
    for index in range(frames):
        image = background.copy()
        left = 20 + SHIFT * index
        image[28:68, left : left + 40] = texture
        images.append(image)
    return images


def test_tvl1_settings_are_opencv_24_cuda_defaults():
    """tau 0.25, lambda 0.15, theta 0.3, 5 scales halving, 5 warps, epsilon 0.01, 300 iterations a warp (one
    outer loop of 300: the median filter between outer loops is off), no gamma."""
    tvl1 = MSTCN_TVL1.create()
    got = {
        "tau": tvl1.getTau(),
        "lambda": tvl1.getLambda(),
        "theta": tvl1.getTheta(),
        "scales": tvl1.getScalesNumber(),
        "warps": tvl1.getWarpingsNumber(),
        "epsilon": tvl1.getEpsilon(),
        "iterations": tvl1.getInnerIterations() * tvl1.getOuterIterations(),
        "outer": tvl1.getOuterIterations(),
        "scale_step": tvl1.getScaleStep(),
        "median": tvl1.getMedianFiltering(),
        "gamma": tvl1.getGamma(),
        "initial_flow": tvl1.getUseInitialFlow(),
    }
    expected = {
        "tau": 0.25,
        "lambda": 0.15,
        "theta": 0.3,
        "scales": 5,
        "warps": 5,
        "epsilon": 0.01,
        "iterations": 300,
        "outer": 1,
        "scale_step": 0.5,
        "median": 1,
        "gamma": 0.0,
        "initial_flow": False,
    }
    assert got == pytest.approx(expected)


def test_tvl1_finds_the_known_motion():
    previous, current = moving_square(2)
    flow = FlowField().raw(previous, current)
    assert flow.shape == (96, 128, 2) and flow.dtype == np.float32
    interior = flow[38:58, 35:55]  # well inside the square in both frames
    assert np.median(interior[..., 0]) == pytest.approx(SHIFT, abs=0.25)
    assert np.median(interior[..., 1]) == pytest.approx(0, abs=0.25)
    assert np.abs(np.median(flow[:16, :], axis=(0, 1))).max() < 0.25  # the still background above it


def test_flow_is_resized_and_cropped_like_rgb_without_rescaling_the_vectors():
    geometry = FrameGeometry(300, 400)  # resized to 256 x 341 (341.33 rounded), crop at (16, 58)
    assert geometry.resized == (256, 341) and geometry.crop_origin == (16, 58)
    flow = np.zeros((300, 400, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, -5.0  # uniform motion: the resized field keeps these values
    prepared = prepare_flow(flow, geometry)
    assert prepared.shape == (224, 224, 2) and prepared.dtype == np.float32
    np.testing.assert_allclose(prepared[..., 0], 3.0 / 20, atol=1e-3)
    np.testing.assert_allclose(prepared[..., 1], -5.0 / 20, atol=1e-3)


def test_flow_is_clipped_to_20_pixels_and_scaled_to_one():
    geometry = FrameGeometry(256, 256)  # no resize; the crop starts at (16, 16)
    flow = np.zeros((256, 256, 2), np.float32)
    flow[..., 0] = np.linspace(-40, 40, 256, dtype=np.float32)[None, :]
    prepared = prepare_flow(flow, geometry).astype(np.float32)
    expected = np.clip(flow[16:240, 16:240, 0], -20, 20) / 20
    np.testing.assert_allclose(prepared[..., 0], expected, atol=1e-3)
    assert prepared.max() == 1.0 and prepared.min() == -1.0


def test_portrait_geometry_rounds_both_sides():
    geometry = FrameGeometry(1280, 720)  # 1280 * 256 / 720 = 455.1 -> 455
    assert geometry.resized == (455, 256) and geometry.crop_origin == (115, 16)


def _frame(index: int) -> np.ndarray:
    return np.full((224, 224, 3), index, np.uint8)


def _flow(index: int) -> np.ndarray:
    return np.full((224, 224, 2), index + 1, np.float32)  # flow j holds j + 1 (never 0, unlike padding)


def _assemble(frames: int, with_flow: bool = True) -> list:
    assembler = WindowAssembler(with_flow=with_flow)
    windows = []
    for index in range(frames):
        flow = _flow(index - 1) if with_flow and index > 0 else None
        windows += assembler.push(_frame(index), flow)
    return windows + assembler.finish()


def test_windows_repeat_the_edge_frames_and_zero_the_flow_outside_the_video():
    frames = 30
    windows = _assemble(frames)
    assert [w.index for w in windows] == list(range(frames))
    for window in windows:
        t = window.index
        span = np.arange(t - 10, t + 11)
        assert window.rgb.shape == (21, 224, 224, 3) and window.flow.shape == (21, 224, 224, 2)
        np.testing.assert_array_equal(window.rgb[:, 0, 0, 0], np.clip(span, 0, frames - 1))
        # flow j (frame j -> j + 1) exists for 0 <= j <= frames - 2; zero elsewhere
        expected_flow = np.where((span >= 0) & (span <= frames - 2), span + 1, 0)
        np.testing.assert_array_equal(window.flow[:, 0, 0, 0], expected_flow)
        np.testing.assert_array_equal(window.flow[:, 0, 0, 1], expected_flow)


def test_windows_of_a_video_shorter_than_a_window():
    windows = _assemble(3)
    assert len(windows) == 3
    # frame 1's window spans frames -9..11: frame 0 nine times before it, frame 2 ten times after it
    np.testing.assert_array_equal(windows[1].rgb[:, 0, 0, 0], [0] * 10 + [1] + [2] * 10)
    np.testing.assert_array_equal(windows[1].flow[:, 0, 0, 0], [0] * 9 + [1, 2] + [0] * 10)
    single = _assemble(1)
    assert len(single) == 1 and not single[0].flow.any() and not single[0].rgb.any()


def test_rgb_windows_alone_have_no_flow():
    windows = _assemble(12, with_flow=False)
    assert len(windows) == 12 and all(w.flow is None for w in windows)


def test_a_window_is_complete_once_frame_t_plus_11_arrives():
    """Streaming: frame t's window (which needs flow t+10 -> t+11) is returned by the push of frame t + 11."""
    assembler = WindowAssembler(with_flow=True)
    returned = [len(assembler.push(_frame(i), _flow(i - 1) if i else None)) for i in range(14)]
    assert returned == [0] * 11 + [1, 1, 1]


def test_missing_opencv_is_one_clear_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    mstcn_frames.require_opencv.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"pip install 'actfusion-sdk\[mstcn\]'"):
            mstcn_frames.require_opencv()
        argv = ["extract", "v.mp4", "--out", str(tmp_path), "--settings", "mstcn", "--i3d-weights", "w.pt"]
        assert main(argv) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "pip install 'actfusion-sdk[mstcn]'" in line
    finally:
        mstcn_frames.require_opencv.cache_clear()
