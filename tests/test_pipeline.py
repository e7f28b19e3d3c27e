"""Pipeline end to end on generated videos with a tiny random model, weights resolution and the manifest."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_sdk import weights as shipped
from actfusion_sdk.errors import ConfigError, InputError, VideoError, WeightsError
from actfusion_sdk.features import i3d
from actfusion_sdk.model import inference
from actfusion_sdk.model.checkpoint import load_model, save_model
from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.results import AnticipationResult, SegmentationResult
from actfusion_sdk.runtime import resolve_device

from .helpers import TINY_CLASSES, VIDEO_FPS, write_moving_square, write_tiny_weights

pytestmark = pytest.mark.usefixtures("fast_seeded_weights")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return {
        "weights": write_tiny_weights(root / "tiny"),
        "video": write_moving_square(root / "kitchen.mp4", 6.0),
        "short": write_moving_square(root / "short.mp4", 3.0),
        "corrupt": corrupt,
    }


@pytest.fixture(scope="module")
def pipeline(assets) -> Pipeline:
    return Pipeline(assets["video"], weights=assets["weights"], device="cpu", progress=False)


def assert_contiguous(segments, first_frame, last_frame, start, end, fps):
    assert segments[0].start_frame == first_frame and segments[-1].end_frame == last_frame
    assert segments[0].start == pytest.approx(start) and segments[-1].end == pytest.approx(end)
    for previous, current in zip(segments, segments[1:], strict=False):
        assert previous.end_frame == current.start_frame and previous.end == current.start
    for segment in segments[:-1]:
        assert segment.end == pytest.approx(segment.end_frame / fps)


def test_segment_runs_the_model_on_the_extracted_features(pipeline, assets):
    result = pipeline.segment(seed=3)
    assert isinstance(result, SegmentationResult)
    prepared = pipeline.features()[0]
    # 6 s at 16 fps = 96 frames, one feature per 8 frames (ceil), 2 per second.
    assert prepared.features.shape == (2048, 12) and result.fps == 2.0
    assert result.duration == pytest.approx(6.0, abs=1 / VIDEO_FPS)
    expected = inference.segment(pipeline.model, prepared.features, seed=3)
    np.testing.assert_array_equal(result.frame_labels, expected.labels)
    np.testing.assert_allclose(result.frame_probs, expected.probs)
    assert_contiguous(result.segments, 0, 12, 0.0, result.duration, 2.0)
    for segment in result.segments:
        assert set(result.frame_labels[segment.start_frame : segment.end_frame].tolist()) == {
            segment.label_id
        }
        assert segment.label == TINY_CLASSES[segment.label_id]
    assert result.video == str(assets["video"]) and result.model == "tiny"
    assert set(result.timings) == {"features", "model", "results"} and result.timings["features"] > 0


def test_features_are_extracted_once_and_shared(assets, monkeypatch):
    calls = []
    extract = i3d.I3DFeatureExtractor.extract

    def counting(self, video_path, progress=None, **options):
        calls.append(video_path)
        return extract(self, video_path, progress, **options)

    monkeypatch.setattr(i3d.I3DFeatureExtractor, "extract", counting)
    pipeline = Pipeline([assets["short"]], weights=assets["weights"], device="cpu", progress=False)
    segmented = pipeline.segment()
    anticipated = pipeline.anticipate(ratio=0.5)
    assert isinstance(segmented, list) and isinstance(anticipated, list)
    assert len(calls) == 1
    assert anticipated[0].timings["features"] == segmented[0].timings["features"]


def test_anticipate_with_a_ratio_cuts_where_the_model_stopped_observing(pipeline):
    result = pipeline.anticipate(ratio=0.3, seed=1)
    assert isinstance(result, AnticipationResult)
    # Official protocol (spec §4): round(ceil(12 / 2) * 0.3) = 2 sampled steps = 4 full-rate frames.
    assert result.cut_frame == 4 and result.cut_time == pytest.approx(2.0)
    expected = inference.anticipate(
        pipeline.model, pipeline.features()[0].features, total_frames=12, observation_ratio=0.3, seed=1
    )
    np.testing.assert_array_equal(result.frame_labels, expected.labels)
    assert result.observation_ratio == 0.3
    assert result.horizon == pytest.approx(result.duration - 2.0)
    assert_contiguous(result.observed_segments, 0, 4, 0.0, 2.0, 2.0)
    assert_contiguous(result.anticipated_segments, 4, 12, 2.0, result.duration, 2.0)


def test_anticipate_observed_seconds_and_horizon_beyond_the_video(pipeline):
    result = pipeline.anticipate(observed=2.5, horizon=7.0)
    assert (result.cut_frame, result.cut_time) == (5, 2.5)
    assert result.duration == pytest.approx(9.5) and result.horizon == pytest.approx(7.0)
    assert len(result.frame_labels) == 19
    assert_contiguous(result.anticipated_segments, 5, 19, 2.5, 9.5, 2.0)


def test_every_export_of_a_real_result_parses_back(pipeline, tmp_path):
    result = pipeline.anticipate(ratio=0.5)
    loaded = AnticipationResult.from_json(result.save(tmp_path / "a.json"))
    assert loaded.segments == result.segments and loaded.cut_time == result.cut_time
    np.testing.assert_array_equal(loaded.frame_labels, result.frame_labels)
    rows = list(csv.DictReader(result.save(tmp_path / "a.csv").open()))
    assert [(row["part"], row["label"], float(row["start"]), float(row["end"])) for row in rows] == [
        ("observed" if s.end <= result.cut_time else "anticipated", s.label, s.start, s.end)
        for s in result.segments
    ]
    lines = result.save(tmp_path / "a.txt").read_text().splitlines()
    assert lines == [TINY_CLASSES[label] for label in result.frame_labels]
    document = json.loads(result.save(tmp_path / "a.anet", fmt="activitynet").read_text())
    entries = document["results"]["kitchen"]
    assert [entry["segment"] for entry in entries] == [[s.start, s.end] for s in result.segments]
    assert entries[-1]["segment"][1] == pytest.approx(result.duration)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_ratio_outside_the_open_interval_is_rejected(pipeline, ratio):
    with pytest.raises(ConfigError, match=r"ratio must be in \(0, 1\)"):
        pipeline.anticipate(ratio=ratio)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"observed": 2.0}, "go together"),
        ({"ratio": 0.3, "observed": 2.0, "horizon": 1.0}, "not both"),
        ({"observed": -1.0, "horizon": 1.0}, "positive"),
        ({"observed": 60.0, "horizon": 1.0}, "at most all"),
    ],
)
def test_invalid_anticipation_windows(pipeline, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        pipeline.anticipate(**kwargs)


def test_from_features_array_and_npy(assets, tmp_path):
    features = np.random.default_rng(0).standard_normal((2048, 9)).astype(np.float32)
    result = Pipeline.from_features(features, fps=1.5, weights=assets["weights"], device="cpu").segment()
    assert result.video is None and result.duration == pytest.approx(6.0) and result.fps == 1.5
    assert result.timings["features"] == 0.0
    np.save(tmp_path / "clip.npy", features)
    results = Pipeline.from_features(
        [tmp_path / "clip.npy"], weights=assets["weights"], device="cpu"
    ).segment()
    assert len(results) == 1 and results[0].video == str(tmp_path / "clip.npy")
    assert results[0].fps == 2.0  # the model card's feature rate
    np.testing.assert_array_equal(
        results[0].frame_labels, inference.segment(load_model(assets["weights"]).model, features).labels
    )


def test_from_features_rejects_bad_inputs(assets, tmp_path):
    with pytest.raises(InputError, match=r"\[2048, T\]"):
        Pipeline.from_features(np.zeros((9, 2048), np.float32), fps=2.0, weights=assets["weights"])
    with pytest.raises(InputError, match="cannot load features"):
        Pipeline.from_features(tmp_path / "missing.npy", fps=2.0, weights=assets["weights"])
    with pytest.raises(ConfigError, match="fps"):
        Pipeline.from_features(np.zeros((2048, 9), np.float32), fps=-1.0, weights=assets["weights"])


def test_video_errors(assets, tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        Pipeline(tmp_path / "nope.mp4", weights=assets["weights"], device="cpu")
    with pytest.raises(ConfigError, match="at least one video"):
        Pipeline([], weights=assets["weights"], device="cpu")
    broken = Pipeline(assets["corrupt"], weights=assets["weights"], device="cpu", progress=False)
    with pytest.raises(VideoError, match="corrupt.mp4"):
        broken.segment()


def test_a_card_without_feature_settings_cannot_run_on_video(assets, tmp_path):
    loaded = load_model(assets["weights"])
    save_model(loaded.model, dataclasses.replace(loaded.card, features=None), tmp_path / "no-features")
    with pytest.raises(WeightsError, match="no feature settings"):
        Pipeline(assets["video"], weights=tmp_path / "no-features", device="cpu")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_weights_resolution_order(tmp_path, monkeypatch, assets):
    monkeypatch.delenv(shipped.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(shipped, "BUNDLED_DEFAULT", tmp_path / "bundled")
    with pytest.raises(WeightsError) as error:
        shipped.resolve_weights()
    message = str(error.value)
    assert "weights argument: not given" in message and "$ACTFUSION_WEIGHTS: not given" in message
    assert str(tmp_path / "bundled") in message and "does not exist" in message

    (tmp_path / "bundled").mkdir()
    with pytest.raises(WeightsError, match="directory without model.json"):
        shipped.resolve_weights()
    (tmp_path / "bundled" / "model.json").write_text("{}")
    assert shipped.resolve_weights() == tmp_path / "bundled"

    monkeypatch.setenv(shipped.ENVIRONMENT_VARIABLE, str(assets["weights"]))
    assert shipped.resolve_weights() == assets["weights"]
    explicit = assets["weights"] / "model.safetensors"
    assert shipped.resolve_weights(explicit) == explicit
    # A named path that does not exist never falls back to another checkpoint.
    with pytest.raises(WeightsError, match="missing.safetensors"):
        shipped.resolve_weights(tmp_path / "missing.safetensors")
    monkeypatch.setenv(shipped.ENVIRONMENT_VARIABLE, str(tmp_path / "gone"))
    with pytest.raises(WeightsError, match="ACTFUSION_WEIGHTS: .*gone"):
        shipped.resolve_weights()


def test_manifest_detects_changed_missing_and_unlisted_files(tmp_path):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "model.json").write_text('{"a": 1}')
    (tmp_path / "demo" / "model.safetensors").write_bytes(b"\x00" * 64)
    shipped.write_manifest(tmp_path)
    listed = json.loads((tmp_path / "manifest.json").read_text())["files"]
    assert sorted(listed) == ["demo/model.json", "demo/model.safetensors"]
    assert listed["demo/model.json"]["sha256"] == hashlib.sha256(b'{"a": 1}').hexdigest()
    assert shipped.verify_manifest(tmp_path) == 2

    (tmp_path / "demo" / "model.json").write_text('{"a": 2}')
    with pytest.raises(WeightsError, match="demo/model.json: sha256"):
        shipped.verify_manifest(tmp_path)
    (tmp_path / "demo" / "model.json").unlink()
    with pytest.raises(WeightsError, match="demo/model.json: missing"):
        shipped.verify_manifest(tmp_path)
    shipped.write_manifest(tmp_path)
    (tmp_path / "demo" / "extra.md").write_text("notes")
    with pytest.raises(WeightsError, match="extra.md: not in the manifest"):
        shipped.verify_manifest(tmp_path)


def test_the_shipped_manifest_matches_when_present():
    if not shipped.MANIFEST.is_file():
        pytest.skip("no weights/manifest.json shipped in this checkout yet")
    assert shipped.verify_manifest() >= 1
