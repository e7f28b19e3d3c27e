"""Every loss term against a direct float64 computation of its spec §3 formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actfusion_sdk.model.config import LossWeights
from actfusion_sdk.model.losses import (
    actfusion_losses,
    boundary_loss,
    class_weights,
    cross_entropy_loss,
    smoothing_loss,
    soft_cross_entropy_loss,
)

NUM_CLASSES, LENGTH = 5, 40


@pytest.fixture
def logits() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (3 * torch.randn(1, NUM_CLASSES, LENGTH, generator=generator)).requires_grad_()


@pytest.fixture
def labels() -> torch.Tensor:
    return torch.tensor([[0] * 10 + [3] * 12 + [1] * 18])


def log_softmax64(z: np.ndarray) -> np.ndarray:
    """log softmax over the class axis 0 of [nc, L], in float64, element by element."""
    out = np.empty_like(z)
    for t in range(z.shape[1]):
        column = z[:, t]
        top = column.max()
        out[:, t] = column - top - math.log(sum(math.exp(v - top) for v in column))
    return out


def as64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().double().numpy()[0]


def test_class_weights_formula():
    counts = np.array([90, 0, 10])
    expected = [100 / ((n + 10) * 3) for n in counts]
    assert class_weights(counts).tolist() == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_is_a_plain_mean(logits, labels):
    weights = class_weights(np.array([5, 9, 1, 30, 2]))
    z, y, w = as64(logits), labels[0].numpy(), weights.double().numpy()
    logp = log_softmax64(z)
    expected = np.mean([-w[y[t]] * logp[y[t], t] for t in range(LENGTH)])
    assert cross_entropy_loss(logits, labels, weights).item() == pytest.approx(expected, rel=1e-6)


def test_ignored_frames_add_zero_but_count(logits, labels):
    ignored = labels.clone()
    ignored[0, :4] = -100
    z, y = as64(logits), ignored[0].numpy()
    logp = log_softmax64(z)
    expected = sum(-logp[y[t], t] for t in range(4, LENGTH)) / LENGTH
    assert cross_entropy_loss(logits, ignored).item() == pytest.approx(expected, rel=1e-6)


def test_soft_cross_entropy(logits):
    generator = torch.Generator().manual_seed(1)
    targets = torch.softmax(torch.randn(1, NUM_CLASSES, LENGTH, generator=generator), dim=1)
    z, q = as64(logits), as64(targets)
    logp = log_softmax64(z)
    expected = np.mean([-(q[:, t] * logp[:, t]).sum() for t in range(LENGTH)])
    assert soft_cross_entropy_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_smoothing_loss_clamps_and_stops_gradient(logits):
    logp = log_softmax64(as64(logits))
    jumps = np.minimum((logp[:, 1:] - logp[:, :-1]) ** 2, 16.0)
    assert (jumps == 16.0).any(), "the case should exercise the clamp"
    loss = smoothing_loss(logits)
    assert loss.item() == pytest.approx(jumps.mean(), rel=1e-6)
    # Stop-gradient on the previous frame: the last frame's logits feed only the live side.
    loss.backward()
    probe = logits.detach().clone().requires_grad_()
    log_probs = torch.log_softmax(probe, dim=1)
    live = torch.clamp((log_probs[:, :, 1:] - log_probs[:, :, :-1].detach()) ** 2, 0, 16).mean()
    live.backward()
    assert torch.allclose(logits.grad, probe.grad)


def test_boundary_loss(logits):
    target = np.clip(np.sin(np.arange(LENGTH) / 3.0) ** 2, 0, 1)
    z = as64(logits)
    p = np.exp(log_softmax64(z))
    predicted = 1 - (p[:, 1:] * p[:, :-1]).sum(axis=0)
    expected = np.mean(-(target[1:] * np.log(predicted) + (1 - target[1:]) * np.log(1 - predicted)))
    loss = boundary_loss(logits, torch.tensor(target[None], dtype=torch.float32))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_weighted_total_and_soft_path(logits, labels):
    loss_weights = LossWeights(
        encoder_ce=0.5,
        encoder_mse=0.1,
        encoder_boundary=0.0,
        decoder_ce=0.5,
        decoder_mse=0.1,
        decoder_boundary=0.1,
    )
    decoder_logits = logits.flip(-1)
    boundaries = torch.rand(1, LENGTH, generator=torch.Generator().manual_seed(2))
    weights = class_weights(np.arange(1, NUM_CLASSES + 1))
    terms = actfusion_losses(logits, decoder_logits, labels, boundaries, loss_weights, weights=weights)
    expected = (
        0.5 * cross_entropy_loss(logits, labels, weights)
        + 0.1 * smoothing_loss(logits)
        + 0.5 * cross_entropy_loss(decoder_logits, labels, weights)
        + 0.1 * smoothing_loss(decoder_logits)
        + 0.1 * boundary_loss(decoder_logits, boundaries)
    )
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    soft = torch.nn.functional.one_hot(labels, NUM_CLASSES).permute(0, 2, 1).float()
    soft_terms = actfusion_losses(logits, decoder_logits, labels, boundaries, loss_weights, soft_targets=soft)
    # The soft path ignores class weights: with one-hot targets it equals unweighted CE.
    assert soft_terms["encoder_ce"].item() == pytest.approx(
        cross_entropy_loss(logits, labels).item(), rel=1e-6
    )
