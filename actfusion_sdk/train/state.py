"""What a run carries from step to step and through latest.pt: weights, optimizer, pending gradients,
the weight average, every rank's random sources and the counters, so `resume=True` continues exactly."""

from __future__ import annotations

import copy
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, WeightsError
from ..fileio import atomic_write
from ..model.actfusion import ActFusion
from ..model.config import ActFusionConfig
from .distributed import Distributed

CHECKPOINT_VERSION = 1


@dataclass
class TrainingRNG:
    """The random sources of one rank: Python (mask types, 'ant', patches, crops, streams), numpy (segment
    picks), a torch generator (diffusion timesteps and noise) and torch's global RNG (dropout)."""

    python: random.Random
    numpy: np.random.Generator
    torch: torch.Generator
    device: torch.device  # dropout on CUDA draws from that device's global generator

    @classmethod
    def seeded(cls, seed: int, rank: int, device: torch.device) -> TrainingRNG:
        seeds = np.random.SeedSequence([seed, rank]).generate_state(4)
        torch.manual_seed(int(seeds[3]))
        return cls(
            random.Random(int(seeds[0])),
            np.random.default_rng(int(seeds[1])),
            torch.Generator().manual_seed(int(seeds[2])),
            device,
        )

    def state(self) -> dict[str, Any]:
        state = {
            "python": self.python.getstate(),
            "numpy": self.numpy.bit_generator.state,
            "torch": self.torch.get_state(),
            "torch_global": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load(self, state: dict[str, Any]) -> None:
        self.python.setstate(state["python"])
        self.numpy.bit_generator.state = state["numpy"]
        self.torch.set_state(state["torch"])
        torch.set_rng_state(state["torch_global"].cpu())
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state["torch_cuda"].cpu(), self.device)


class WeightAverage:
    """An exponential moving average of a model's parameters, held in a copy of the model.

    The decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so early weights do not linger.
    Buffers are copied once: ActFusion's only buffers are its constant noise-schedule tables."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model`'s current weights (call after each optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.model.parameters(), model.parameters(), strict=True):
            average.lerp_(current, 1 - decay)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]


@dataclass
class TrainingState:
    """Everything of one rank's run that changes while it trains and that a checkpoint carries."""

    model: ActFusion
    optimizer: torch.optim.Optimizer
    average: WeightAverage | None
    rng: TrainingRNG
    shuffle: random.Random  # the epoch order, the same on every rank
    epoch: int = 0
    step: int = 0  # videos processed by this rank
    best_score: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def selected_weights(self) -> nn.Module:
        """The weights that are validated and saved: the moving average when the recipe keeps one."""
        return self.model if self.average is None else self.average.model

    def optimizer_step(self) -> None:
        """Apply the accumulated gradients, clear them and move the weight average."""
        self.optimizer.step()
        self.optimizer.zero_grad()
        if self.average is not None:
            self.average.update(self.model)

    def payload(self, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        """This state as checkpoint entries, with the RNG states of every rank."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # Gradients accumulated towards the next optimizer step carry over (spec §7).
            "pending_gradients": [p.grad for p in self.model.parameters()],
            "average": None if self.average is None else self.average.state(),
            "rng": rng_states,
            "shuffle": self.shuffle.getstate(),
            "best_score": self.best_score,
            "history": self.history,
        }

    def restore(self, payload: dict[str, Any], rank: int) -> None:
        """Continue from a checkpoint's entries (rank picks this rank's RNG states)."""
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        for parameter, gradient in zip(self.model.parameters(), payload["pending_gradients"], strict=True):
            parameter.grad = gradient
        if self.average is not None:
            self.average.load(payload["average"])
        self.rng.load(payload["rng"][rank])
        self.shuffle.setstate(payload["shuffle"])
        self.epoch, self.step = payload["epoch"], payload["step"]
        self.best_score, self.history = payload["best_score"], payload["history"]


def checkpoint_payload(
    state: TrainingState, config: ActFusionConfig, num_classes: int, info: Distributed
) -> dict[str, Any] | None:
    """What latest.pt holds: every rank hands in its RNG states; rank 0 gets the payload, others None."""
    rng_states = info.gather(state.rng.state())
    if not info.is_main:
        return None
    return {
        "version": CHECKPOINT_VERSION,
        "config": config.to_dict(),
        "num_classes": num_classes,
        "world_size": info.world_size,
        **state.payload(rng_states),
    }


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a `checkpoint_payload` atomically."""
    with atomic_write(path) as stream:
        torch.save(payload, stream)


def resume_checkpoint(
    path: Path, state: TrainingState, config: ActFusionConfig, info: Distributed, device: torch.device
) -> None:
    """Restore `state` from a checkpoint written by the same configuration and number of processes."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        # UnpicklingError: the file holds objects that weights_only refuses to load (an unsafe pickle).
        raise WeightsError(f"cannot resume from {path}: {str(err).splitlines()[0]}") from err
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise WeightsError(f"{path} is not a training checkpoint of this version; start a new run")
    if payload["config"] != config.to_dict():
        raise ConfigError(f"{path} was written with another configuration; resume with the same one")
    if payload["world_size"] != info.world_size:
        raise ConfigError(
            f"{path} was written by {payload['world_size']} processes; resume with the same number "
            f"(got {info.world_size})"
        )
    state.restore(payload, info.rank)
