"""What one training video contributes: its targets, the forward noising and every loss term (spec §3)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.mstcn import Stream
from ..data.targets import soft_label_targets
from ..model.actfusion import ActFusion
from ..model.config import ActFusionConfig
from ..model.diffusion import NoiseSchedule
from ..model.losses import actfusion_losses


class TrainingObjective(nn.Module):
    """Encoder on the masked input, then the decoder on the noisy labels: what DDP wraps (spec §3).

    Gradients flow from the decoder into the encoder (no detach).
    """

    def __init__(self, model: ActFusion) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, features: torch.Tensor, visible: torch.Tensor, t: torch.Tensor, noisy_labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self.model.encode(features, visible)
        return encoded.logits, self.model.decode(encoded.cross, t, noisy_labels)


class Targets(NamedTuple):
    """Hard labels [1, L], boundary targets [1, L] and, for soft-label presets, soft targets [1, nc, L]."""

    labels: torch.Tensor
    boundaries: torch.Tensor
    soft: torch.Tensor | None


def training_targets(
    stream: Stream, num_classes: int, soft_label: float | None, device: torch.device
) -> Targets:
    """The loss targets of one training stream (soft labels only when the recipe has a σ)."""
    soft = None
    if soft_label is not None:
        soft = torch.as_tensor(soft_label_targets(stream.labels, num_classes, soft_label), device=device)[
            None
        ]
    return Targets(
        torch.as_tensor(stream.labels, device=device)[None],
        torch.as_tensor(stream.boundaries, device=device)[None],
        soft,
    )


def stream_losses(
    objective: nn.Module,
    schedule: NoiseSchedule,
    config: ActFusionConfig,
    num_classes: int,
    stream: Stream,
    visible: np.ndarray,
    generator: torch.Generator,
    *,
    weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All loss terms of one training stream (spec §3): t ~ U{0..T−1}, the one-hot labels noised to x_t,
    the decoder fed x_t in fp32 and predicting x0 as class logits."""
    device = next(objective.parameters()).device
    targets = training_targets(stream, num_classes, config.training.soft_label, device)
    length = stream.labels.shape[0]
    t = torch.randint(0, schedule.timesteps, (1,), generator=generator).to(device)
    noise = torch.randn((1, num_classes, length), generator=generator).to(device)
    one_hot = F.one_hot(targets.labels, num_classes).permute(0, 2, 1).float()
    noisy_labels = schedule.noisy_labels(one_hot, t, noise, config.diffusion.snr_scale)
    encoder_logits, decoder_logits = objective(
        torch.as_tensor(stream.features, device=device)[None],
        torch.as_tensor(visible, device=device)[None],
        t,
        noisy_labels.float(),
    )
    return actfusion_losses(
        encoder_logits,
        decoder_logits,
        targets.labels,
        targets.boundaries,
        config.training.loss_weights,
        weights=weights,
        soft_targets=targets.soft,
    )
