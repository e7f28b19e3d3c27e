"""ActFusion's training losses (spec §3): classification, temporal smoothing and boundary terms.

All tensors are [B, nc, L] logits with [B, L] targets; "mean" is a plain mean over every listed element,
as the official code computes it (class weights scale the loss without normalising it, quirk §9.12).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import LossWeights

IGNORE_INDEX = -100
SMOOTHING_CLAMP = 16.0
CLASS_WEIGHT_OFFSET = 10.0


def class_weights(counts: np.ndarray | torch.Tensor) -> torch.Tensor:
    """w_c = N / ((n_c + 10)·nc) from per-class frame counts of the full-rate training labels."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    return (counts.sum() / ((counts + CLASS_WEIGHT_OFFSET) * counts.numel())).float()


def cross_entropy_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over all frames of w_y·(−log softmax(logits)[y]); frames labelled −100 add 0 but still count."""
    per_frame = F.cross_entropy(logits, labels, weight=weights, ignore_index=IGNORE_INDEX, reduction="none")
    return per_frame.mean()


def soft_cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over frames of Σ_c −q_c·log softmax(logits)_c for soft targets q [B, nc, L] (no class weights)."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def smoothing_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean over (c, t ≥ 1) of clamp((logsm_t − sg(logsm_{t−1}))², 0, 16), logsm = log_softmax(classes)."""
    log_probs = F.log_softmax(logits, dim=1)
    jumps = (log_probs[:, :, 1:] - log_probs.detach()[:, :, :-1]) ** 2
    return torch.clamp(jumps, 0.0, SMOOTHING_CLAMP).mean()


def boundary_loss(logits: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """Mean BCE between b̂_t = 1 − Σ_c p_{t+1}[c]·sg(p_t[c]) and the smoothed boundary target B[t+1].

    b̂ is clamped to [0, 1] so that rounding can never push it outside BCE's domain (quirk §9.13).
    """
    probs = F.softmax(logits, dim=1)
    predicted = 1.0 - (probs[:, :, 1:] * probs.detach()[:, :, :-1]).sum(dim=1)
    return F.binary_cross_entropy(predicted.clamp(0.0, 1.0), boundaries[:, 1:].to(predicted.dtype))


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
    soft_targets: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft-label CE when soft targets are given (no weights, spec §3), else hard CE with class weights."""
    if soft_targets is not None:
        return soft_cross_entropy_loss(logits, soft_targets)
    return cross_entropy_loss(logits, labels, weights)


def actfusion_losses(
    encoder_logits: torch.Tensor,
    decoder_logits: torch.Tensor,
    labels: torch.Tensor,
    boundaries: torch.Tensor,
    loss_weights: LossWeights,
    *,
    weights: torch.Tensor | None = None,
    soft_targets: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Every loss term of one training stream and their weighted sum under 'total'.

    The encoder's boundary term is the constant 0 in the official code (LossWeights requires its weight 0).
    """
    terms = {
        "encoder_ce": classification_loss(encoder_logits, labels, weights=weights, soft_targets=soft_targets),
        "encoder_mse": smoothing_loss(encoder_logits),
        "decoder_ce": classification_loss(decoder_logits, labels, weights=weights, soft_targets=soft_targets),
        "decoder_mse": smoothing_loss(decoder_logits),
        "decoder_boundary": boundary_loss(decoder_logits, boundaries),
    }
    terms["total"] = sum(getattr(loss_weights, name) * value for name, value in terms.items())
    return terms
