"""Evaluation on an MS-TCN split: action segmentation (TAS) and long-term anticipation (LTA), spec §6.

TAS: Acc, Edit, F1@{10,25,50} with the official conventions. LTA: for each observation ratio α one sampling
run per video, MoC over the β windows, counts pooled over all videos; plus Acc/Edit/F1 of the observed prefix.
Sampling seeds follow the official protocol: the seed of a video is its index in the split.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .data.mstcn import MSTCNDataset
from .errors import DatasetError
from .metrics import (
    DEFAULT_BG_CLASSES,
    OBSERVATION_RATIOS,
    PREDICTION_RATIOS,
    AnticipationMetrics,
    SegmentationMetrics,
    anticipation_window,
)
from .model.actfusion import ActFusion
from .model.checkpoint import load_model
from .model.inference import anticipate, segment
from .runtime import inference

TAS_COLUMNS = (("f1@10", "F1@10"), ("f1@25", "F1@25"), ("f1@50", "F1@50"), ("edit", "Edit"), ("acc", "Acc"))


@dataclass(frozen=True)
class EvaluationReport:
    """TAS scores and, per observation ratio α, MoC per prediction ratio β and the observed-prefix scores."""

    videos: int
    tas: dict[str, float]
    moc: dict[float, dict[float, float]]
    observed: dict[float, dict[str, float]]

    def tas_score(self) -> float:
        """Mean of Acc, Edit and the three F1 scores."""
        return float(np.mean(list(self.tas.values())))

    def lta_score(self) -> float:
        """Mean of all MoC values (8 with the default ratios)."""
        return float(np.mean([value for row in self.moc.values() for value in row.values()]))

    def combined_score(self) -> float:
        """(TAS mean + LTA mean) / 2, the official model-selection score."""
        return (self.tas_score() + self.lta_score()) / 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ratios become strings like '0.2'."""
        return {
            "videos": self.videos,
            "tas": self.tas,
            "lta": {
                str(alpha): {
                    "moc": {str(beta): value for beta, value in row.items()},
                    "observed": self.observed[alpha],
                }
                for alpha, row in self.moc.items()
            },
            "scores": {"tas": self.tas_score(), "lta": self.lta_score(), "combined": self.combined_score()},
        }

    def table(self) -> str:
        """The paper's layout: a TAS row (F1@{10,25,50}, Edit, Acc), then a MoC row per α, a column per β."""
        lines = ["TAS        " + "".join(f"{title:>8}" for _, title in TAS_COLUMNS)]
        lines.append("           " + "".join(f"{self.tas[key]:8.1f}" for key, _ in TAS_COLUMNS))
        if self.moc:
            betas = list(next(iter(self.moc.values())))
            lines.append("")
            lines.append("LTA (MoC)  " + "".join(f"{f'β={beta}':>8}" for beta in betas))
            for alpha, row in self.moc.items():
                lines.append(f"{f'α={alpha}':<11}" + "".join(f"{row[beta]:8.1f}" for beta in betas))
        return "\n".join(lines)


def evaluate_model(
    model: ActFusion,
    dataset: MSTCNDataset,
    *,
    observation_ratios: tuple[float, ...] = OBSERVATION_RATIOS,
    prediction_ratios: tuple[float, ...] = PREDICTION_RATIOS,
    bg_classes: Collection[str] = DEFAULT_BG_CLASSES,
    progress: bool = False,
) -> EvaluationReport:
    """Run TAS and LTA inference on every video of `dataset` and score it (spec §6)."""
    if not len(dataset):
        raise DatasetError(f"no videos to evaluate in {dataset.root}")
    background = {i for i, name in enumerate(dataset.classes) if name in set(bg_classes)}
    tas = SegmentationMetrics(bg_classes=background)
    observed = {alpha: SegmentationMetrics(bg_classes=background) for alpha in observation_ratios}
    anticipation = {
        alpha: AnticipationMetrics(dataset.num_classes, alpha, tuple(prediction_ratios))
        for alpha in observation_ratios
    }
    device = next(model.parameters()).device
    with inference(model):
        for index in tqdm(range(len(dataset)), desc="evaluating", leave=False, disable=not progress):
            gt = dataset.videos[index].labels
            features = torch.as_tensor(dataset.features(index), device=device)
            tas.update(segment(model, features, seed=index).labels.tolist(), gt.tolist())
            for alpha in observation_ratios:
                pred = anticipate(model, features, total_frames=len(gt), observation_ratio=alpha, seed=index)
                anticipation[alpha].update(pred.labels, gt)
                cut, _ = anticipation_window(len(gt), alpha, 0.0)
                if cut:
                    observed[alpha].update(pred.labels[:cut].tolist(), gt[:cut].tolist())
    return EvaluationReport(
        videos=len(dataset),
        tas=tas.result(),
        moc={alpha: metrics.result() for alpha, metrics in anticipation.items()},
        observed={alpha: metrics.result() for alpha, metrics in observed.items()},
    )


def evaluate(
    data_dir: str | Path,
    split: int | str,
    weights: str | Path,
    *,
    subset: str = "test",
    preset: str | None = None,
    device: str | None = None,
    attention_impl: str = "auto",
    bg_classes: Collection[str] = DEFAULT_BG_CLASSES,
    progress: bool = True,
) -> EvaluationReport:
    """Load a model (ours, or an official raw checkpoint with `preset`) and evaluate it on a split."""
    dataset = MSTCNDataset(data_dir, split, subset)  # inference makes the streams itself (spec §3)
    loaded = load_model(weights, device=device, preset=preset, classes=dataset.classes if preset else None)
    if tuple(loaded.card.classes) != dataset.classes:
        raise DatasetError(
            f"the model's classes {list(loaded.card.classes)} differ from {dataset.root / 'mapping.txt'}; "
            f"evaluate with the mapping the model was trained on"
        )
    loaded.model.attention_impl = attention_impl
    return evaluate_model(loaded.model, dataset, bg_classes=bg_classes, progress=progress)
