"""Feature settings, the seeded demo weights, and the extractor against pytorchvideo's own i3d_r50 forward."""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from itertools import count, islice
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from actfusion_sdk.errors import ConfigError, WeightsError
from actfusion_sdk.features.i3d import (
    I3DFeatureExtractor,
    download_kinetics_weights,
    load_i3d_weights,
)
from actfusion_sdk.features.seeded import (
    SEED0_FINGERPRINT,
    draw_seeded_i3d_state_dict,
    i3d_r50_skeleton,
    state_dict_fingerprint,
)
from actfusion_sdk.features.settings import FeatureSettings, WeightsSource
from actfusion_sdk.video.clips import ClipSchedule
from actfusion_sdk.video.decode import read_frames
from actfusion_sdk.video.prefetch import prefetch as _prefetch

from .helpers import seeded_i3d, tiny_extractor, tiny_settings, write_video

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def seed0() -> dict[str, torch.Tensor]:
    return seeded_i3d(0)


@pytest.fixture
def extractor() -> I3DFeatureExtractor:
    return tiny_extractor()


def pytorchvideo_i3d(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """pytorchvideo's own, unmodified i3d_r50 trunk with the head's pool made adaptive and its projection
    removed, as spec §8 prescribes for inputs other than 8×224²."""
    model = i3d_r50_skeleton().to_empty(device="cpu")
    model.load_state_dict(state_dict, strict=True)
    model.blocks[6].proj = nn.Identity()
    model.blocks[6].pool = nn.AdaptiveAvgPool3d(1)
    return model.eval()


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).abs().max() / expected.abs().max()).item()


# ---- settings ---------------------------------------------------------------------------------------


def test_settings_round_trip_through_json() -> None:
    for settings in (FeatureSettings.demo(), FeatureSettings.kinetics(sha256="ab" * 32), tiny_settings()):
        data = json.loads(json.dumps(settings.to_dict()))
        assert FeatureSettings.from_dict(data) == settings


def test_named_settings() -> None:
    demo, kinetics = FeatureSettings.demo(), FeatureSettings.kinetics()
    assert (demo.fps, demo.clip_frames, demo.frame_stride, demo.feature_stride) == (16.0, 8, 2, 8)
    assert (demo.short_side, demo.crop_size, demo.weights.to_dict()) == (
        112,
        112,
        {"kind": "seeded", "seed": 0},
    )
    assert (kinetics.fps, kinetics.clip_frames, kinetics.frame_stride) == (30.0, 8, 8)
    assert (kinetics.short_side, kinetics.crop_size, kinetics.weights.kind) == (256, 224, "file")
    assert demo.mean == kinetics.mean == (0.45,) * 3 and demo.std == (0.225,) * 3
    assert demo.extractor == "pytorchvideo/i3d_r50"


@pytest.mark.parametrize(
    "change",
    [
        {"fps": 0},
        {"clip_frames": 0},
        {"feature_stride": 2.5},
        {"crop_size": 300},
        {"std": [0.2, 0.0, 0.2]},
        {"mean": [0.4]},
        {"precision": "fp16"},
        {"extractor": "x3d"},
        {"weights": {"kind": "url"}},
        {"weights": {"kind": "seeded", "seed": -1}},
        {"weights": {"kind": "file", "sha256": "xyz"}},
        {"surprise": 1},
    ],
)
def test_invalid_settings_raise_config_error(change: dict) -> None:
    data = FeatureSettings.demo().to_dict() | change
    with pytest.raises(ConfigError):
        FeatureSettings.from_dict(data)


# ---- seeded weights ---------------------------------------------------------------------------------


def test_seed0_fingerprint_is_reproduced() -> None:
    # Drawn afresh (not from the on-disk cache): catches drift of numpy's stream or torch across versions.
    assert state_dict_fingerprint(draw_seeded_i3d_state_dict(0)) == SEED0_FINGERPRINT


def test_seeded_draw_follows_the_stated_recipe(seed0: dict[str, torch.Tensor]) -> None:
    # The stem conv is drawn first: its weights are the stream's first values times sqrt(2/fan_out).
    stem = seed0["blocks.0.conv.weight"]
    fan_out = 64 * 5 * 7 * 7
    first = np.random.RandomState(0).standard_normal(stem.shape) * math.sqrt(2 / fan_out)
    assert np.array_equal(stem.numpy(), first.astype(np.float32))
    assert torch.equal(seed0["blocks.0.norm.weight"], torch.ones(64))
    assert torch.equal(seed0["blocks.0.norm.running_var"], torch.ones(64))
    assert torch.equal(seed0["blocks.0.norm.running_mean"], torch.zeros(64))
    assert not seed0["blocks.6.proj.bias"].any()


def test_fingerprint_sees_any_change(seed0: dict[str, torch.Tensor]) -> None:
    changed = dict(seed0)
    changed["blocks.0.norm.bias"] = seed0["blocks.0.norm.bias"] + 1e-7
    assert state_dict_fingerprint(changed) != SEED0_FINGERPRINT


# ---- the network ------------------------------------------------------------------------------------


def test_pooled_features_equal_pytorchvideo_forward(seed0: dict[str, torch.Tensor], extractor) -> None:
    clips = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = pytorchvideo_i3d(seed0)(clips)
        got = extractor.network(clips.contiguous(memory_format=torch.channels_last_3d))
    assert got.shape == (2, 2048)
    assert relative_error(got, expected) <= 1e-5


def test_embed_clips_normalises_uint8_frames(seed0: dict[str, torch.Tensor], extractor) -> None:
    frames = torch.randint(
        0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    normalised = (frames.permute(0, 4, 1, 2, 3).double() / 255 - 0.45) / 0.225
    with torch.inference_mode():
        expected = pytorchvideo_i3d(seed0)(normalised.float())
    assert relative_error(extractor.embed_clips(frames), expected) <= 1e-5


def test_bf16_features_stay_close_to_fp32(seed0: dict[str, torch.Tensor], extractor) -> None:
    frames = torch.randint(
        0, 256, (1, 4, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "emulated bf16" on CPUs without native support
        bf16 = I3DFeatureExtractor(tiny_settings(), weights=seed0, device="cpu", precision="bf16")
    fp32_features, bf16_features = extractor.embed_clips(frames), bf16.embed_clips(frames)
    assert bf16_features.dtype == torch.float32
    assert relative_error(bf16_features, fp32_features) <= 5e-2
    assert torch.nn.functional.cosine_similarity(bf16_features, fp32_features).min() >= 0.999


# ---- whole videos -----------------------------------------------------------------------------------


def test_extract_equals_clips_built_from_decoded_frames(tmp_path: Path, extractor) -> None:
    images = np.random.default_rng(4).integers(0, 256, (13, 40, 48, 3), dtype=np.uint8)
    path = write_video(tmp_path / "noise.mp4", 13, fps=10, size=(48, 40), images=list(images))
    result = extractor.extract(path)
    # 13 frames at 10 fps, one feature per 4 frames: ceil(13/4) = 4 features centred at 0.2, 0.6, 1.0, 1.4 s.
    assert result.features.shape == (2048, 4) and result.features.dtype == np.float32
    assert np.allclose(result.timestamps, [0.2, 0.6, 1.0, 1.4])
    assert (result.fps_features, result.num_frames, result.duration) == (2.5, 13, pytest.approx(1.3))
    frames = read_frames(path, 10, short_side=36, crop_size=32)
    schedule = ClipSchedule(4, 1, 4)
    clips = torch.stack([frames[schedule.frame_indices(k, 13)] for k in range(4)])
    assert relative_error(torch.from_numpy(result.features), extractor.embed_clips(clips).T) <= 1e-6


def test_progress_reports_every_batch(tmp_path: Path, extractor) -> None:
    path = write_video(tmp_path / "p.mp4", 20, fps=10)
    calls: list[tuple[int, int | None]] = []
    extractor.extract(path, progress=lambda done, expected: calls.append((done, expected)))
    assert calls == [(3, 5), (5, 5)]


def test_prefetch_passes_items_errors_and_early_stops() -> None:
    def failing():
        yield 1
        yield 2
        raise ValueError("decoder broke")

    received = []
    with pytest.raises(ValueError, match="decoder broke"):
        for item in _prefetch(failing(), depth=1):
            received.append(item)
    assert received == [1, 2]
    # The consumer may stop early, even on an endless producer blocked on a full queue.
    assert list(islice(_prefetch(count(), depth=1), 3)) == [0, 1, 2]


# ---- weights ----------------------------------------------------------------------------------------


def test_weights_from_pyth_and_plain_files(tmp_path: Path, seed0: dict[str, torch.Tensor], extractor) -> None:
    pyth, plain = tmp_path / "i3d.pyth", tmp_path / "i3d_state.pt"
    torch.save({"model_state": seed0, "epoch": 1}, pyth)
    torch.save(seed0, plain)
    state, sha256 = load_i3d_weights(plain)
    assert sha256 == hashlib.sha256(plain.read_bytes()).hexdigest() and state.keys() == seed0.keys()
    assert all(torch.equal(state[k], seed0[k]) for k in seed0)
    loaded = I3DFeatureExtractor(tiny_settings(WeightsSource("file")), weights=pyth, device="cpu")
    assert loaded.settings.weights == WeightsSource(
        "file", sha256=hashlib.sha256(pyth.read_bytes()).hexdigest()
    )
    frames = torch.randint(
        0, 256, (1, 4, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(loaded.embed_clips(frames), extractor.embed_clips(frames))


def test_download_path_fetches_a_local_file_url(tmp_path: Path, seed0: dict[str, torch.Tensor]) -> None:
    """The optional online path, exercised with a file:// URL (tests never touch the network)."""
    source = tmp_path / "mirror" / "I3D_8x8_R50.pyth"
    source.parent.mkdir()
    torch.save({"model_state": seed0}, source)
    dest = download_kinetics_weights(tmp_path / "cache" / "i3d.pyth", url=source.as_uri(), progress=False)
    assert dest.read_bytes() == source.read_bytes() and not dest.with_name("i3d.pyth.part").exists()
    state, _ = load_i3d_weights(dest)
    assert state.keys() == seed0.keys()


def test_bad_weights_raise_weights_error(tmp_path: Path, seed0: dict[str, torch.Tensor]) -> None:
    settings = tiny_settings(WeightsSource("file"))
    with pytest.raises(WeightsError, match="need an I3D weights file"):
        I3DFeatureExtractor(settings)
    with pytest.raises(WeightsError, match="does not exist"):
        I3DFeatureExtractor(settings, weights=tmp_path / "missing.pyth")
    garbage = tmp_path / "garbage.pyth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="not a readable"):
        I3DFeatureExtractor(settings, weights=garbage)
    partial = tmp_path / "partial.pyth"
    torch.save({k: v for k, v in seed0.items() if not k.startswith("blocks.5")}, partial)
    with pytest.raises(WeightsError, match="missing keys"):
        I3DFeatureExtractor(settings, weights=partial)
    pinned = tiny_settings(WeightsSource("file", sha256="0" * 64))
    torch.save(seed0, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="sha256"):
        I3DFeatureExtractor(pinned, weights=tmp_path / "other.pt")


def test_invalid_extractor_arguments() -> None:
    with pytest.raises(ConfigError):
        I3DFeatureExtractor(tiny_settings(), weights={}, precision="fp8")
    with pytest.raises(ConfigError):
        I3DFeatureExtractor(tiny_settings(), weights={}, batch_size=0)
