"""The videos a run trains on and the validation subset carved from them (never the test split)."""

from __future__ import annotations

import random
from pathlib import Path

from ..data.mstcn import MSTCNDataset
from ..errors import ConfigError, DatasetError
from ..model.config import ActFusionConfig


def check_val_fraction(fraction: float) -> None:
    """Refuse a share of validation videos outside [0, 1) (NaN included)."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")


def carve_validation(names: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split training videos into (train, validation): round(fraction·N) videos, at least one when
    fraction > 0 and N ≥ 2, chosen by `seed`; both lists keep the split file's order."""
    check_val_fraction(fraction)
    count = (
        min(max(round(fraction * len(names)), 1), len(names) - 1) if fraction > 0 and len(names) > 1 else 0
    )
    chosen = set(random.Random(seed).sample(names, count))
    return [n for n in names if n not in chosen], [n for n in names if n in chosen]


def training_splits(
    config: ActFusionConfig, data_dir: Path, split: int | str, val_fraction: float, seed: int
) -> tuple[MSTCNDataset, MSTCNDataset]:
    """(train, validation) from the train split of an MS-TCN dataset, read as the recipe trains on it."""
    full = MSTCNDataset(
        data_dir,
        split,
        "train",
        boundary_smooth=config.training.boundary_smooth,
        sample_rate=config.sample_rate,
        temporal_aug=config.temporal_aug,
        speed_range=config.training.speed_range,
    )
    if full.feature_dim != config.encoder.input_dim:
        raise DatasetError(
            f"features in {data_dir} have {full.feature_dim} dimensions but the model expects "
            f"{config.encoder.input_dim}; set encoder.input_dim or use matching features"
        )
    train_names, val_names = carve_validation([v.name for v in full.videos], val_fraction, seed)
    return full.select(train_names), full.select(val_names)
