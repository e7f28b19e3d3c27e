"""MS-TCN datasets (spec §5): layout, crops, streams, boundary targets, and the DatasetError cases."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from actfusion_sdk.data.mstcn import MSTCNDataset, Stream, change_speed
from actfusion_sdk.data.synthetic import write_synthetic_mstcn
from actfusion_sdk.data.targets import boundary_targets, soft_label_targets
from actfusion_sdk.errors import DatasetError

FEATURE_DIM = 16


@pytest.fixture
def dataset_dir(tmp_path):
    return write_synthetic_mstcn(
        tmp_path / "toy", num_videos=4, num_classes=3, feature_dim=FEATURE_DIM, test_videos=1
    )


def gaussian_reflect(values: np.ndarray, sigma: float) -> np.ndarray:
    """Direct float64 Gaussian smoothing with scipy's 'reflect' boundary (d c b a | a b c d | d c b a)."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.array([math.exp(-0.5 * (k / sigma) ** 2) for k in range(-radius, radius + 1)])
    taps /= taps.sum()
    n = len(values)

    def at(i: int) -> float:
        period = 2 * n
        i %= period
        return values[i] if i < n else values[period - 1 - i]

    return np.array(
        [sum(w * at(t + k) for w, k in zip(taps, range(-radius, radius + 1), strict=True)) for t in range(n)]
    )


def test_reads_the_layout(dataset_dir):
    train = MSTCNDataset(dataset_dir, 1, "train")
    test = MSTCNDataset(dataset_dir, 1, "test")
    assert train.classes == ("action_0", "action_1", "action_2")
    assert [v.name for v in train.videos] == ["video_000", "video_001", "video_002"]
    assert [v.name for v in test.videos] == ["video_003"]
    assert train.feature_dim == FEATURE_DIM and train.feature_settings is None
    stored = np.load(dataset_dir / "features" / "video_001.npy")
    assert np.array_equal(train.features(1), stored)
    lines = (dataset_dir / "groundTruth" / "video_001.txt").read_text().split()
    assert [train.classes[i] for i in train.videos[1].labels] == lines
    assert train.label_counts().sum() == sum(v.num_frames for v in train.videos)


def test_streams_slice_features_labels_and_boundaries(dataset_dir):
    data = MSTCNDataset(dataset_dir, 1, boundary_smooth=2.0, sample_rate=4)
    full = data.features(0)
    video = data.videos[0]
    for offset in data.stream_offsets():
        stream = data.stream(0, offset)
        assert np.array_equal(stream.features, full[:, offset::4])
        assert np.array_equal(stream.labels, video.labels[offset::4])
        assert np.array_equal(stream.boundaries, video.boundaries[offset::4])
    assert list(MSTCNDataset(dataset_dir, 1, sample_rate=4, temporal_aug=False).stream_offsets()) == [0]
    offsets = {data.training_stream(0, random.Random(s)).labels.shape[0] for s in range(30)}
    assert offsets <= {len(video.labels[o::4]) for o in range(4)}


def test_change_speed_picks_the_nearest_source_frames():
    features = np.arange(30, dtype=np.float32).reshape(3, 10)
    stream = Stream(features, np.arange(10), np.linspace(0, 1, 10, dtype=np.float32))
    faster = change_speed(stream, 2.0)  # frame i of 5 covers source [2i, 2i + 2): centre 2i + 1
    assert faster.labels.tolist() == [1, 3, 5, 7, 9]
    assert np.array_equal(faster.features, features[:, 1::2])
    assert np.array_equal(faster.boundaries, stream.boundaries[1::2])
    slower = change_speed(stream, 0.5)  # each source frame twice
    assert slower.labels.tolist() == [i // 2 for i in range(20)]
    assert slower.features.flags.c_contiguous
    assert change_speed(stream, 1.0).labels.tolist() == list(range(10))
    assert change_speed(stream, 100.0).labels.shape == (1,)


def test_speed_range_resamples_training_streams_only(dataset_dir):
    data = MSTCNDataset(dataset_dir, 1, speed_range=(0.5, 2.0))
    length = len(data.videos[0].labels)
    lengths = {data.training_stream(0, random.Random(s)).labels.shape[0] for s in range(40)}
    assert min(lengths) >= round(length / 2.0) and max(lengths) <= round(length / 0.5)
    assert len(lengths) > 5  # the speed varies between visits
    assert data.stream(0, 0).labels.shape[0] == length  # evaluation streams keep their speed
    assert data.select([data.videos[0].name]).speed_range == (0.5, 2.0)


def test_three_dimensional_features_pick_a_crop(dataset_dir):
    crops = np.random.default_rng(0).standard_normal((50, 3, FEATURE_DIM)).astype(np.float32)
    np.save(dataset_dir / "features" / "video_000.npy", crops)
    (dataset_dir / "groundTruth" / "video_000.txt").write_text("action_0\n" * 20 + "action_2\n" * 30)
    data = MSTCNDataset(dataset_dir, 1)
    assert data.crops(0).shape == (3, 50, FEATURE_DIM)
    assert np.array_equal(data.stream(0, 0, crop=2).features, crops[:, 2].T)
    with pytest.raises(DatasetError, match="3 spatial crops"):
        data.features(0)


def test_boundary_targets_match_direct_smoothing():
    labels = np.array([0] * 7 + [1] * 5 + [2] * 20)
    raw = np.zeros(len(labels))
    raw[[6, 7, 11, 12]] = 1.0
    assert np.array_equal(boundary_targets(labels, None), raw)
    smoothed = gaussian_reflect(raw, 3.0)
    pair = np.zeros(len(labels))
    pair[[15, 16]] = 1.0
    expected = np.minimum(smoothed, gaussian_reflect(pair, 3.0).max())
    expected /= expected.max()
    np.testing.assert_allclose(boundary_targets(labels, 3.0), expected, rtol=1e-6, atol=1e-7)
    assert not boundary_targets(np.zeros(9, np.int64), 3.0).any()


def test_soft_labels_sum_to_one_and_match_direct_smoothing():
    labels = np.array([1] * 6 + [0] * 9)
    soft = soft_label_targets(labels, 3, sigma=1.5)
    np.testing.assert_allclose(soft.sum(axis=0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(soft[1], gaussian_reflect((labels == 1).astype(float), 1.5), atol=1e-7)
    assert not soft[2].any()


def test_feature_sidecar_settings_are_exposed(dataset_dir):
    settings = {"fps": 15.0, "features_per_second": 2.0}
    for name in ("video_000", "video_002"):
        (dataset_dir / "features" / f"{name}.json").write_text(
            json.dumps({"settings": settings, "duration": 3})
        )
    assert MSTCNDataset(dataset_dir, 1).feature_settings == settings
    (dataset_dir / "features" / "video_001.json").write_text(json.dumps({"settings": {"fps": 30.0}}))
    with pytest.raises(DatasetError, match="different settings"):
        MSTCNDataset(dataset_dir, 1)


def test_select_makes_a_view(dataset_dir):
    data = MSTCNDataset(dataset_dir, 1)
    view = data.select(["video_002", "video_000"])
    assert [v.name for v in view.videos] == ["video_002", "video_000"] and len(data) == 3
    with pytest.raises(DatasetError, match="video_009"):
        data.select(["video_009"])


def test_length_mismatch(dataset_dir):
    with (dataset_dir / "groundTruth" / "video_001.txt").open("a") as handle:
        handle.write("action_0\n")
    with pytest.raises(DatasetError, match="video_001.*frames but its ground truth has"):
        MSTCNDataset(dataset_dir, 1)


def test_label_not_in_mapping(dataset_dir):
    path = dataset_dir / "groundTruth" / "video_002.txt"
    lines = path.read_text().splitlines()
    lines[3] = "juggling"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="video_002.txt:4: label 'juggling' is not in mapping.txt"):
        MSTCNDataset(dataset_dir, 1)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("features/video_000.npy", "features .* not found"),
        ("groundTruth/video_000.txt", "ground truth .* not found"),
        ("mapping.txt", "mapping .* not found"),
        ("splits/train.split1.bundle", "split file .* not found"),
    ],
)
def test_missing_files(dataset_dir, missing, message):
    (dataset_dir / missing).unlink()
    with pytest.raises(DatasetError, match=message):
        MSTCNDataset(dataset_dir, 1)


def test_empty_split(dataset_dir):
    (dataset_dir / "splits" / "train.split1.bundle").write_text("\n")
    with pytest.raises(DatasetError, match="lists no videos"):
        MSTCNDataset(dataset_dir, 1)
    with pytest.raises(DatasetError, match="split file"):
        MSTCNDataset(dataset_dir, 7)
