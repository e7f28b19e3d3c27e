"""Helpers the test modules share: synthetic videos, tiny models and extractors, attention checks.

Fixtures live in conftest.py; this module holds plain functions and constants (``from .helpers import ...``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from actfusion_sdk.features.i3d import I3DFeatureExtractor
from actfusion_sdk.features.seeded import seeded_i3d_state_dict
from actfusion_sdk.features.settings import FeatureSettings, WeightsSource
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.attention import dilated_attention, reference_dilated_attention, rel_tap_bias
from actfusion_sdk.model.checkpoint import ModelCard, save_model
from actfusion_sdk.model.config import (
    ActFusionConfig,
    DecoderConfig,
    DiffusionConfig,
    EncoderConfig,
    PostprocessConfig,
    preset,
)
from actfusion_sdk.model.layers import DilatedAttentionLayer

REPO = Path(__file__).resolve().parents[1]

# ---- videos -----------------------------------------------------------------------------------------

LEVEL_STEP = 20  # frame i is a flat grey image of level 10 + 20·i, so a decoded frame's mean names its index


def frame_level(index: int) -> int:
    return 10 + LEVEL_STEP * (index % 12)


def write_video(
    path: Path,
    num_frames: int,
    *,
    fps: int = 30,
    size: tuple[int, int] = (48, 32),
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts_ms: Sequence[int] | None = None,
    rotation: int | None = None,
    images: Sequence[np.ndarray] | None = None,
    preset: str = "ultrafast",
) -> Path:
    """Write a video of flat frames (or ``images``); ``pts_ms`` gives explicit presentation times (VFR)."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            # Flat test frames are coded losslessly so their grey level identifies them exactly.
            stream.options = {"preset": preset} if images is not None else {"qp": "0", "preset": preset}
        if pts_ms is not None:
            stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(num_frames):
            image = images[i] if images is not None else np.full((height, width, 3), frame_level(i), np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


VIDEO_FPS = 16  # frame rate of ``write_moving_square``'s clips


def write_moving_square(path: Path, seconds: float, *, fps: int = VIDEO_FPS, size: int = 64) -> Path:
    """A small real mp4: a bright square moving over a background whose colour changes every second."""
    count = round(seconds * fps)
    frames = np.zeros((count, size, size, 3), dtype=np.uint8)
    for index in range(count):
        frames[index] = (40 * (index // fps) % 255, 90, 160)
        x = index * 2 % (size - 16)
        frames[index, 20:36, x : x + 16] = 255
    return write_video(path, count, fps=fps, size=(size, size), images=frames)


# ---- feature extraction -----------------------------------------------------------------------------


@functools.cache
def seeded_i3d(seed: int) -> dict[str, torch.Tensor]:
    """The seeded extractor weights, drawn once per test session (drawing them takes seconds)."""
    return seeded_i3d_state_dict(seed)


def tiny_settings(weights: WeightsSource | None = None) -> FeatureSettings:
    """32 px, 4-frame clips: the smallest input i3d_r50 accepts, to keep the tests fast."""
    return FeatureSettings(
        fps=10.0,
        clip_frames=4,
        frame_stride=1,
        feature_stride=4,
        short_side=36,
        crop_size=32,
        weights=weights or WeightsSource("seeded", seed=0),
    )


@functools.cache
def tiny_extractor() -> I3DFeatureExtractor:
    """A demo-weights extractor with ``tiny_settings``, built once per test session."""
    return I3DFeatureExtractor(tiny_settings(), weights=seeded_i3d(0), device="cpu", batch_size=3)


# ---- models -----------------------------------------------------------------------------------------


def small_config(**changes) -> ActFusionConfig:
    """A scaled-down 50salads-like configuration for fast tests (sample rate 4, median 5)."""
    base = dataclasses.replace(
        preset("50salads"),
        name="small",
        encoder=EncoderConfig(4, 16, 5, 0.5, 0.5, 0.5, (1, 3)),
        decoder=DecoderConfig(3, 8, 5, 0.1, time_emb_dim=32),
        diffusion=DiffusionConfig(sampling_timesteps=6, snr_scale=0.5),
        postprocess=PostprocessConfig("median", 5),
        sample_rate=4,
    )
    return dataclasses.replace(base, **changes)


def small_model(seed: int = 0, num_classes: int = 5, **changes) -> ActFusion:
    torch.manual_seed(seed)
    model = ActFusion(small_config(**changes), num_classes)
    model.attention_impl = "reference"
    return model.eval()


TINY_CLASSES = ("background", "pick", "place", "pour")
# 16 decoded frames/s, one feature every 8 frames: 2 features per second, tiny 32 px crops.
TINY_SETTINGS = FeatureSettings(
    fps=16.0,
    clip_frames=8,
    frame_stride=2,
    feature_stride=8,
    short_side=32,
    crop_size=32,
    weights=WeightsSource("seeded", seed=0),
)


def write_tiny_weights(directory: Path) -> Path:
    """A randomly initialised tiny ActFusion (2 streams, 3 DDIM steps) whose card names TINY_SETTINGS."""
    base = preset("50salads")
    config = dataclasses.replace(
        base,
        name="tiny",
        encoder=EncoderConfig(3, 8, 5, 0.5, 0.5, 0.5, (0, 1, 2)),
        decoder=DecoderConfig(2, 8, 5, 0.1, time_emb_dim=16),
        diffusion=DiffusionConfig(sampling_timesteps=3, snr_scale=1.0),
        postprocess=PostprocessConfig("median", 3),
        sample_rate=2,
    )
    torch.manual_seed(0)
    model = ActFusion(config, num_classes=len(TINY_CLASSES))
    card = ModelCard(
        format_version=1,
        config=config,
        classes=TINY_CLASSES,
        features=TINY_SETTINGS.to_dict(),
        fps=TINY_SETTINGS.features_per_second,
        description="tiny random model for tests",
        training=None,
    )
    save_model(model, card, directory)
    return directory


# ---- attention --------------------------------------------------------------------------------------


def official_attention_inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v and per-tap bias of an attention_layers.pt case, via the layer's 1x1 convs (spec §1.3-1.4)."""
    state = case["state_dict"]
    x = case["x"]
    qk_input = torch.cat([x, case["x_cross"]], dim=1) if case["kind"] == "decoder" else x

    def project(name: str, inputs: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv1d(inputs, state[f"{name}.weight"], state[f"{name}.bias"])

    bias = rel_tap_bias(state["rel_pos_emb.weight"], case["dilation"], case["K"])
    return (
        project("att_linear_q", qk_input),
        project("att_linear_k", qk_input),
        project("att_linear_v", x),
        bias,
    )


def kernel_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    dilation: int,
    kernel_size: int,
) -> torch.Tensor:
    """The CPU kernel's dilated attention alone (kernels/cpu.py), with the official log-mask terms."""
    from actfusion_sdk.kernels import cpu
    from actfusion_sdk.model.attention import log_mask_terms

    log_invalid, log_valid = log_mask_terms()
    bias = None if bias is None else bias.to(torch.float32).contiguous()
    return cpu.attention(
        q, k, v, kernel_size, dilation, tap_bias=bias, log_valid=log_valid, log_invalid=log_invalid
    )


def assert_official_cases_pass(cases: list[dict], impl: str | Callable[..., torch.Tensor]) -> None:
    """The attention branch of every official layer case within 1e-5 (max abs) through `impl` (a seam
    implementation's name, or a function like `kernel_attention`)."""
    assert len(cases) == 60
    attend = impl if callable(impl) else functools.partial(dilated_attention, impl=impl)
    for index, case in enumerate(cases):
        q, k, v, bias = official_attention_inputs(case)
        out = attend(q, k, v, bias, case["dilation"], case["K"])
        error = (out - case["attention"]).abs().max().item()
        where = f"case {index} ({case['kind']}, K={case['K']}, d={case['dilation']}, L={case['L']})"
        assert error <= 1e-5, where


def random_inputs(
    generator: torch.Generator, batch: int, channels: int, value_channels: int, length: int, kernel_size: int
) -> tuple[torch.Tensor, ...]:
    """float64 q, k, v, bias with gradients enabled; scaled so softmaxes are neither flat nor one-hot."""
    q = torch.randn(batch, channels, length, generator=generator, dtype=torch.float64) * 2
    k = torch.randn(batch, channels, length, generator=generator, dtype=torch.float64)
    v = torch.randn(batch, value_channels, length, generator=generator, dtype=torch.float64)
    bias = torch.randn(kernel_size, generator=generator, dtype=torch.float64) * 3
    return tuple(t.requires_grad_(True) for t in (q, k, v, bias))


def assert_matches_reference(
    impl: str, inputs: tuple[torch.Tensor, ...], dilation: int, kernel_size: int, tolerance: float = 1e-10
) -> None:
    """Forward and all four gradients of `impl` against the reference, relative to each tensor's max, or
    absolute where that max is below 1: a gradient that is nearly zero (e.g. dq when only one tap is in range)
    holds rounding noise, and relative to its own max that noise says nothing about correctness."""
    expected = reference_dilated_attention(*inputs, dilation, kernel_size)
    actual = dilated_attention(*inputs, dilation, kernel_size, impl=impl)
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(7), dtype=expected.dtype)
    grads_expected = torch.autograd.grad(expected, inputs, upstream)
    grads_actual = torch.autograd.grad(actual, inputs, upstream)
    names = ("out", "dq", "dk", "dv", "dbias")
    for name, want, got in zip(names, (expected, *grads_expected), (actual, *grads_actual), strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        scale = max(want.abs().max().item(), 1.0)
        error = (got - want).abs().max().item() / scale
        assert error <= tolerance, f"{name}: relative error {error:.3e} (d={dilation}, K={kernel_size})"


# ---- small videos and models of the integrity tests --------------------------------------------------

SMALL_SETTINGS = tiny_settings()  # 10 fps, 4-frame clips: the integrity tests' small videos


def write_level_video(path: Path, seconds: float, *, level: int = 60, rotation: int | None = None) -> Path:
    """A small real mp4 at 10 fps (40x32); `rotation` sets display-matrix side data that PyAV reads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 40, 32, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(round(seconds * 10)):
            image = np.full((32, 40, 3), (level + 9 * index) % 256, np.uint8)
            image[:8, :8] = 255  # a bright top-left corner shows which way the frame is turned
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_small_model(directory: Path) -> Path:
    """A random tiny ActFusion (3 classes, 2 DDIM steps) whose card names SMALL_SETTINGS."""
    from actfusion_sdk.model.actfusion import ActFusion
    from actfusion_sdk.model.checkpoint import ModelCard
    from actfusion_sdk.model.config import DecoderConfig, EncoderConfig, PostprocessConfig, preset

    config = dataclasses.replace(
        preset("50salads"),
        name="tiny",
        encoder=EncoderConfig(3, 8, 5, 0.5, 0.5, 0.5, (0, 1, 2)),
        decoder=DecoderConfig(2, 8, 5, 0.1, time_emb_dim=16),
        postprocess=PostprocessConfig("median", 3),
        sample_rate=2,
    )
    config = dataclasses.replace(
        config, diffusion=dataclasses.replace(config.diffusion, sampling_timesteps=2)
    )
    torch.manual_seed(0)
    model = ActFusion(config, num_classes=3)
    card = ModelCard(
        format_version=1,
        config=config,
        classes=("a", "b", "c"),
        features=SMALL_SETTINGS.to_dict(),
        fps=SMALL_SETTINGS.features_per_second,
    )
    return save_model(model, card, directory)


# ---- training ----------------------------------------------------------------------------------------

TRAIN_FEATURE_DIM = 16


def tiny_config(**training):
    """The 50salads recipe (all its masking types, sr = 2 streams) at toy sizes."""
    base = preset("50salads")
    return dataclasses.replace(
        base,
        name="tiny",
        encoder=EncoderConfig(4, 8, 3, 0.1, 0.1, 0.1, (1, 3), input_dim=TRAIN_FEATURE_DIM),
        decoder=DecoderConfig(2, 8, 3, 0.1, time_emb_dim=16),
        sample_rate=2,
        postprocess=PostprocessConfig("median", 3),
        training=dataclasses.replace(
            base.training, **{"boundary_smooth": 2.0, "learning_rate": 5e-3, "patch_size": 4, **training}
        ),
    )


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Max abs error, relative to the expected tensor's max magnitude where that exceeds 1."""
    scale = max(want.abs().max().item(), 1.0) if want.numel() else 1.0
    return (got.double() - want.double()).abs().max().item() / scale if want.numel() else 0.0


def float64_torch_forward(layer: DilatedAttentionLayer, x: torch.Tensor, cross: torch.Tensor | None):
    """The layer's output on the torch path in float64 (a copy of the layer): the fused paths' oracle."""
    twin = copy.deepcopy(layer).double()
    twin.attention_impl = "torch"
    with torch.inference_mode():
        projection = None if cross is None else twin.project_cross(cross.double())
        return twin(x.double(), projection)
