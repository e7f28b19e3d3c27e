"""Temporal action segmentation and anticipation metrics with the field's official conventions (spec §6).

Segmentation: frame accuracy and Edit pooled/averaged as MS-TCN's evaluation does, F1@τ from tp/fp/fn
summed over videos. Anticipation: mean over classes (MoC) of per-class accuracy, counts pooled over videos.
Labels may be class names or integer ids; any hashable values compare by equality.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .runs import runs

OVERLAPS = (0.1, 0.25, 0.5)
# The official evaluation always excludes a class named 'background'; only GTEA has one (spec §6, §10).
DEFAULT_BG_CLASSES = ("background",)
OBSERVATION_RATIOS = (0.2, 0.3)
PREDICTION_RATIOS = (0.1, 0.2, 0.3, 0.5)


class Segments(NamedTuple):
    """Maximal runs of equal labels: `ends` follow the official quirk (the last segment ends at T−1)."""

    labels: list[Hashable]
    starts: np.ndarray
    ends: np.ndarray


def segments(labels: Sequence[Hashable], bg_classes: Collection[Hashable] = ()) -> Segments:
    """Split a frame-wise label sequence into segments, dropping those whose label is in `bg_classes`.

    A segment ends where the next one starts, except the last, which ends at T−1 (the official quirk).
    """
    found = runs(labels)
    ends = found.ends.copy()
    # The official evaluation ends the last segment at T−1 instead of T, so its length comes out one short
    # (spec §6, §9.14); F1's IoU and the purge post-processing (spec §10) depend on it.
    ends[-1:] -= 1
    kept = np.array([label not in bg_classes for label in found.values.tolist()], dtype=bool)
    return Segments(found.values[kept].tolist(), found.starts[kept], ends[kept])


def _levenshtein(first: Sequence[Hashable], second: Sequence[Hashable]) -> int:
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, start=1):
        current = [i]
        for j, b in enumerate(second, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def edit_score(
    pred: Sequence[Hashable], gt: Sequence[Hashable], bg_classes: Collection[Hashable] = ()
) -> float:
    """Segmental edit score 100·(1 − Lev(P, Y)/max(|P|, |Y|)) over the segment label sequences.

    Two sequences without any (non-background) segment score 100; the official code divides by zero there.
    """
    p = segments(pred, bg_classes).labels
    y = segments(gt, bg_classes).labels
    longest = max(len(p), len(y))
    if longest == 0:
        return 100.0
    return (1.0 - _levenshtein(p, y) / longest) * 100.0


def f1_counts(
    pred: Sequence[Hashable], gt: Sequence[Hashable], overlap: float, bg_classes: Collection[Hashable] = ()
) -> tuple[int, int, int]:
    """Greedy segment matching at IoU ≥ `overlap`: returns (tp, fp, fn) for one video (spec §6).

    Each predicted segment, in order, takes its best-IoU ground-truth segment of the same label (first on
    ties); an IoU of 0/0 (two one-frame last segments, a consequence of the T−1 end quirk) is NaN and, as
    in the official numpy code, wins the argmax and counts as a false positive.
    """
    p = segments(pred, bg_classes)
    y = segments(gt, bg_classes)
    y_labels = np.array(y.labels, dtype=object)
    hits = np.zeros(len(y.labels), dtype=bool)
    tp = fp = 0
    for label, start, end in zip(p.labels, p.starts, p.ends, strict=True):
        if not len(y.labels):
            fp += 1
            continue
        intersection = np.minimum(end, y.ends) - np.maximum(start, y.starts)
        union = np.maximum(end, y.ends) - np.minimum(start, y.starts)
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = intersection / union * (y_labels == label)
        best = int(np.argmax(iou))
        if iou[best] >= overlap and not hits[best]:
            tp += 1
            hits[best] = True
        else:
            fp += 1
    return tp, fp, len(y.labels) - int(hits.sum())


def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    """F1 in percent from pooled counts; 0 where precision + recall is 0 or undefined."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall) * 100.0


def correct_frames(pred: Sequence[Hashable], gt: Sequence[Hashable]) -> int:
    """Number of frames whose predicted label equals the ground truth (sequences must have equal length)."""
    if len(pred) != len(gt):
        raise ValueError(f"prediction has {len(pred)} frames but the ground truth has {len(gt)}")
    return sum(a == b for a, b in zip(pred, gt, strict=True))


def accuracy(pred: Sequence[Hashable], gt: Sequence[Hashable]) -> float:
    """Frame accuracy in percent for one video."""
    return 100.0 * correct_frames(pred, gt) / len(gt) if len(gt) else 0.0


@dataclass
class SegmentationMetrics:
    """Accumulates Acc (pooled frames), Edit (mean over videos) and F1@τ (pooled tp/fp/fn) over videos."""

    bg_classes: Collection[Hashable] = ()
    overlaps: tuple[float, ...] = OVERLAPS
    correct: int = 0
    frames: int = 0
    edits: list[float] = field(default_factory=list)
    counts: dict[float, list[int]] = field(default_factory=dict)

    def update(self, pred: Sequence[Hashable], gt: Sequence[Hashable]) -> None:
        """Add one video's frame-wise prediction and ground truth."""
        self.correct += correct_frames(pred, gt)
        self.frames += len(gt)
        self.edits.append(edit_score(pred, gt, self.bg_classes))
        for overlap in self.overlaps:
            totals = self.counts.setdefault(overlap, [0, 0, 0])
            for i, value in enumerate(f1_counts(pred, gt, overlap, self.bg_classes)):
                totals[i] += value

    def result(self) -> dict[str, float]:
        """{'acc', 'edit', 'f1@10', 'f1@25', 'f1@50'} in percent (0 before any update)."""
        scores = {
            "acc": 100.0 * self.correct / self.frames if self.frames else 0.0,
            "edit": float(np.mean(self.edits)) if self.edits else 0.0,
        }
        for overlap in self.overlaps:
            scores[f"f1@{round(overlap * 100)}"] = f1_from_counts(*self.counts.get(overlap, (0, 0, 0)))
        return scores


def anticipation_window(
    total_frames: int, observation_ratio: float, prediction_ratio: float
) -> tuple[int, int]:
    """Frames [int(α·T), int((α+β)·T)) that LTA evaluates (spec §6)."""
    return int(observation_ratio * total_frames), int((observation_ratio + prediction_ratio) * total_frames)


def moc_counts(
    pred: Sequence[int] | np.ndarray,
    gt: Sequence[int] | np.ndarray,
    observation_ratio: float,
    prediction_ratio: float,
    num_classes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (correct, wrong) frame counts over the anticipation window of one video."""
    pred_ids = np.asarray(pred, dtype=np.int64)
    gt_ids = np.asarray(gt, dtype=np.int64)
    if pred_ids.shape != gt_ids.shape:
        raise ValueError(f"prediction has {pred_ids.size} frames but the ground truth has {gt_ids.size}")
    start, stop = anticipation_window(len(gt_ids), observation_ratio, prediction_ratio)
    window_gt = gt_ids[start:stop]
    hit = pred_ids[start:stop] == window_gt
    n_true = np.bincount(window_gt[hit], minlength=num_classes)
    n_false = np.bincount(window_gt[~hit], minlength=num_classes)
    return n_true, n_false


def moc(n_true: np.ndarray, n_false: np.ndarray) -> float:
    """Mean over classes that occur (n_T + n_F > 0) of n_T/(n_T + n_F), in percent."""
    total = n_true + n_false
    present = total > 0
    if not present.any():
        return 0.0
    return float(np.mean(n_true[present] / total[present]) * 100.0)


@dataclass
class AnticipationMetrics:
    """Accumulates MoC counts over videos for one observation ratio α and several prediction ratios β."""

    num_classes: int
    observation_ratio: float
    prediction_ratios: tuple[float, ...] = PREDICTION_RATIOS
    counts: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def update(self, pred: Sequence[int] | np.ndarray, gt: Sequence[int] | np.ndarray) -> None:
        """Add one video's full-length predicted and ground-truth class ids."""
        for beta in self.prediction_ratios:
            n_true, n_false = moc_counts(pred, gt, self.observation_ratio, beta, self.num_classes)
            if beta in self.counts:
                n_true = n_true + self.counts[beta][0]
                n_false = n_false + self.counts[beta][1]
            self.counts[beta] = (n_true, n_false)

    def result(self) -> dict[float, float]:
        """MoC in percent per prediction ratio β."""
        empty = np.zeros(self.num_classes, np.int64)
        return {beta: moc(*self.counts.get(beta, (empty, empty))) for beta in self.prediction_ratios}
