"""The learning rate per epoch: constant (official) or cosine-annealed over the recipe's epochs."""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..model.config import ActFusionConfig


def learning_rate(config: ActFusionConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch`; "cosine" anneals over the recipe's `training.epochs`, so the
    schedule is part of the configuration (a resumed run must match it) and does not move with `epochs=`."""
    training = config.training
    if training.lr_schedule == "cosine":
        return training.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / training.epochs))
    return training.learning_rate


def apply_learning_rate(optimizer: torch.optim.Optimizer, config: ActFusionConfig, epoch: int) -> None:
    """Set every parameter group's learning rate for 0-based `epoch`."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(config, epoch)


def check_run_length(config: ActFusionConfig, epochs: int) -> None:
    """A cosine schedule cannot run past the epochs it anneals over."""
    if config.training.lr_schedule == "cosine" and epochs > config.training.epochs:
        raise ConfigError(
            f"the cosine schedule anneals over training.epochs = {config.training.epochs}, so a run cannot "
            f"last {epochs} epochs; raise training.epochs in the configuration to {epochs}"
        )
