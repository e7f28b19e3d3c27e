"""Scoring of a model on procedural videos, next to simple baselines: TAS metrics against the model's encoder
alone, MoC against repeating the last observed step.

Used by `actfusion demo` (one held-out video, tables and a timeline PNG), by
`benchmarks/bench_procedural.py` (a held-out set) and by the end-to-end test in CI (a few videos).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..metrics import DEFAULT_BG_CLASSES, AnticipationMetrics, SegmentationMetrics
from ..model.inference import encoder_labels
from ..pipeline import Pipeline
from ..results import AnticipationResult, SegmentationResult
from .heldout import LabelledVideo

OBSERVATION_RATIO = 0.3
PREDICTION_RATIO = 0.5


@dataclass(frozen=True)
class ProceduralScores:
    """Pooled scores of the model and the baselines over a set of videos (percentages)."""

    model: dict[str, float]
    encoder_only: dict[str, float]
    moc: float
    moc_repeat_last: float
    videos: int

    def table(self) -> str:
        """The TAS rows (model vs encoder-only) and the anticipation row (model vs repeat-last-step)."""
        keys = ("acc", "edit", "f1@10", "f1@25", "f1@50")
        head = f"{'':24}" + "".join(f"{key:>9}" for key in keys)
        rows = [
            head,
            f"{'ActFusion (diffusion)':24}" + "".join(f"{self.model[key]:9.1f}" for key in keys),
            f"{'encoder only':24}" + "".join(f"{self.encoder_only[key]:9.1f}" for key in keys),
            "",
            f"MoC (alpha={OBSERVATION_RATIO}, beta={PREDICTION_RATIO}): ActFusion {self.moc:.1f}, "
            f"repeat last observed step {self.moc_repeat_last:.1f}   ({self.videos} videos)",
        ]
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "videos": self.videos,
            "model": self.model,
            "encoder_only": self.encoder_only,
            "moc": self.moc,
            "moc_repeat_last": self.moc_repeat_last,
            "observation_ratio": OBSERVATION_RATIO,
            "prediction_ratio": PREDICTION_RATIO,
        }


def repeat_last_step(ground_truth: Sequence[int], observed: int) -> np.ndarray:
    """The anticipation baseline: every future frame repeats the last observed frame's (true) label."""
    labels = np.asarray(ground_truth, dtype=np.int64).copy()
    labels[observed:] = labels[max(observed - 1, 0)]
    return labels


def score_videos(
    videos: Sequence[LabelledVideo],
    *,
    weights: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    on_video: Callable[[LabelledVideo, SegmentationResult, AnticipationResult], None] | None = None,
) -> ProceduralScores:
    """Segment and anticipate every video with the model (and the baselines); pool the metrics."""
    pipeline = Pipeline([video.path for video in videos], weights=weights, progress=progress)
    classes = pipeline.classes
    index = {name: i for i, name in enumerate(classes)}
    # As in the official protocol (spec §6) and `evaluate`, a class named 'background' is not scored.
    tas, encoder_tas = (SegmentationMetrics(bg_classes=DEFAULT_BG_CLASSES) for _ in range(2))
    moc, moc_repeat = (
        AnticipationMetrics(len(classes), OBSERVATION_RATIO, (PREDICTION_RATIO,)) for _ in range(2)
    )
    segmentations = pipeline.segment(seed=seed)
    anticipations = pipeline.anticipate(ratio=OBSERVATION_RATIO, seed=seed)
    for video, prepared, segmented, anticipated in zip(
        videos, pipeline.features(), segmentations, anticipations, strict=True
    ):
        truth = np.array([index[label] for label in video.labels])
        predicted = _aligned(segmented.frame_labels, len(truth), video.path)
        tas.update([classes[i] for i in predicted], list(video.labels))
        encoder = _aligned(encoder_labels(pipeline.model, prepared.features), len(truth), video.path)
        encoder_tas.update([classes[i] for i in encoder], list(video.labels))
        moc.update(_aligned(anticipated.frame_labels, len(truth), video.path), truth)
        moc_repeat.update(repeat_last_step(truth, int(OBSERVATION_RATIO * len(truth))), truth)
        if on_video is not None:
            on_video(video, segmented, anticipated)
    return ProceduralScores(
        model=tas.result(),
        encoder_only=encoder_tas.result(),
        moc=moc.result()[PREDICTION_RATIO],
        moc_repeat_last=moc_repeat.result()[PREDICTION_RATIO],
        videos=len(videos),
    )


def _aligned(labels: np.ndarray, length: int, source: Path) -> np.ndarray:
    """Predictions at the feature rate match the label rate up to a frame at the very end."""
    labels = np.asarray(labels, dtype=np.int64)
    if abs(len(labels) - length) > 1:
        raise InputError(f"{source}: {len(labels)} predicted frames for {length} ground-truth labels")
    return np.pad(labels, (0, max(0, length - len(labels))), mode="edge")[:length]
