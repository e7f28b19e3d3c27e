"""Metrics against the official outputs (testvectors metrics.json, lta.json) and hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actfusion_sdk.metrics import (
    AnticipationMetrics,
    SegmentationMetrics,
    edit_score,
    f1_counts,
    f1_from_counts,
    moc,
    moc_counts,
    segments,
)
from actfusion_sdk.testing import check_anticipation_vectors, check_segmentation_vectors

TOLERANCE = 1e-9


def test_segmentation_matches_official_vectors(testvectors):
    data = json.loads((testvectors / "metrics.json").read_text())
    deviations = check_segmentation_vectors(data)
    assert set(deviations) >= {"correct", "edit", "tp_fp_fn@0.5", "pooled.acc", "pooled.f1@0.25"}
    assert max(deviations.values()) <= TOLERANCE, deviations


def test_anticipation_matches_official_vectors(testvectors):
    data = json.loads((testvectors / "lta.json").read_text())
    deviations = check_anticipation_vectors(data)
    assert len(deviations) == 8
    assert max(deviations.values()) <= TOLERANCE, deviations


def test_check_reports_a_deviation(testvectors):
    data = json.loads((testvectors / "metrics.json").read_text())
    data["videos"][0]["edit"] += 2.5
    assert check_segmentation_vectors(data)["edit"] == pytest.approx(2.5)


def test_last_segment_ends_at_t_minus_one():
    found = segments(["a", "a", "b", "b", "b"])
    assert found.labels == ["a", "b"]
    assert found.starts.tolist() == [0, 2]
    assert found.ends.tolist() == [2, 4]
    # the same on an array of ids, as purge (spec §10) finds its segments
    found = segments(np.array([4, 4, 1, 1, 1, 2]))
    assert (
        found.labels == [4, 1, 2] and found.starts.tolist() == [0, 2, 5] and found.ends.tolist() == [2, 5, 5]
    )


def test_background_classes_are_dropped():
    labels = ["bg", "a", "a", "bg", "b"]
    found = segments(labels, bg_classes={"bg"})
    assert found.labels == ["a", "b"]
    assert found.starts.tolist() == [1, 4]
    assert found.ends.tolist() == [3, 4]
    # Without background the prediction "a b" matches exactly; with it counted, one segment is missing.
    assert edit_score(["a", "a", "a", "b", "b"], labels, bg_classes={"bg"}) == 100.0
    assert edit_score(["bg", "a", "a", "a", "b"], labels) == pytest.approx(100.0 * (1 - 1 / 4))


def test_f1_counts_by_hand():
    gt = ["a"] * 10 + ["b"] * 10
    pred = ["a"] * 5 + ["b"] * 15
    # pred a [0,5) vs gt a [0,10): IoU 0.5; pred b [5,19] vs gt b [10,19]: IoU 9/14.
    assert f1_counts(pred, gt, 0.5) == (2, 0, 0)
    assert f1_counts(pred, gt, 0.6) == (1, 1, 1)
    assert f1_counts(pred, gt, 0.7) == (0, 2, 2)
    assert f1_from_counts(1, 1, 1) == pytest.approx(50.0)
    assert f1_from_counts(0, 3, 2) == 0.0


def test_one_frame_last_segments_count_as_false_positive():
    # Both last segments are [19, 19]: IoU 0/0 is NaN, which the official argmax picks and rejects.
    gt = ["a"] * 19 + ["b"]
    assert f1_counts(gt, gt, 0.1) == (1, 1, 1)


def test_segmentation_accumulator_pools_frames_and_averages_edit():
    metrics = SegmentationMetrics()
    metrics.update(["a", "a", "b", "b"], ["a", "a", "b", "b"])
    metrics.update(["a", "b"], ["b", "b"])
    scores = metrics.result()
    assert scores["acc"] == pytest.approx(100.0 * 5 / 6)
    assert scores["edit"] == pytest.approx((100.0 + 50.0) / 2)  # "a b" vs "b": one edit in two
    assert set(scores) == {"acc", "edit", "f1@10", "f1@25", "f1@50"}


def test_moc_pools_counts_over_videos():
    gt = np.array([0] * 10 + [1] * 10)
    pred = np.array([0] * 10 + [1] * 5 + [0] * 5)
    # α = 0.5, β = 0.5: frames [10, 20), class 1 correct 5 of 10.
    n_true, n_false = moc_counts(pred, gt, 0.5, 0.5, num_classes=3)
    assert n_true.tolist() == [0, 5, 0] and n_false.tolist() == [0, 5, 0]
    assert moc(n_true, n_false) == pytest.approx(50.0)
    metrics = AnticipationMetrics(num_classes=3, observation_ratio=0.5, prediction_ratios=(0.5,))
    metrics.update(pred, gt)
    metrics.update(np.full(4, 2), np.array([0, 0, 2, 2]))  # window [2, 4): class 2, both correct
    assert metrics.result()[0.5] == pytest.approx((5 / 10 + 2 / 2) / 2 * 100)
