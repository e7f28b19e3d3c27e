"""Training ActFusion on an MS-TCN dataset (spec §3, §4, §7), in one process or under torchrun with DDP.

One video per forward (the official batch-1 semantics); `batch_size` videos per optimizer step through
gradient accumulation, shared across ranks under DDP. Differences from the official trainer, on purpose:
the model is selected on a validation subset carved from the training split (never the test split),
checkpoints are atomic, `resume=True` continues exactly (model, optimizer, pending gradients, step, every
rank's RNG states), runs are seeded, and the log is JSON lines. Two optional recipe settings the official
code lacks: a moving average of the weights (`ema_decay`) and a cosine learning-rate schedule.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .data.mstcn import MSTCNDataset, Stream
from .data.targets import soft_label_targets
from .errors import ConfigError, DatasetError, WeightsError
from .evaluate import evaluate_model
from .features.settings import FeatureSettings
from .fileio import atomic_write
from .model.actfusion import ActFusion
from .model.checkpoint import FORMAT_VERSION, ModelCard, save_model
from .model.config import ActFusionConfig, preset
from .model.diffusion import NoiseSchedule, denormalize, normalize
from .model.losses import actfusion_losses, class_weights
from .model.masking import check_mask_types, draw_mask_type, visible_frames
from .runtime import resolve_device

CHECKPOINT_NAME = "latest.pt"
BEST_MODEL_DIR = "model"
LOG_NAME = "log.jsonl"
CHECKPOINT_VERSION = 1


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


def learning_rate(config: ActFusionConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch`; "cosine" anneals over the recipe's `training.epochs`, so the
    schedule is part of the configuration (a resumed run must match it) and does not move with `epochs=`."""
    training = config.training
    if training.lr_schedule == "cosine":
        return training.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / training.epochs))
    return training.learning_rate


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    model: ActFusion  # the final in-memory model as trained (not necessarily the selected one)
    out_dir: Path
    model_dir: Path  # the selected model in our format (model.safetensors + model.json)
    checkpoint: Path  # latest.pt, for --resume
    log: Path
    epochs: int
    steps: int  # videos processed by this rank
    best_score: float | None
    history: list[dict[str, Any]]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (world size 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device | None) -> tuple[Distributed, torch.device]:
    """Join the torchrun job described by the environment (gloo on CPU, nccl on CUDA) and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(), resolve_device(device)
    info = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = resolve_device(device, local_rank=info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Evaluation runs on rank 0 while the others wait, so allow long collectives.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(hours=4))
    return info, device


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
    """All loss terms of one training stream (spec §3): t ~ U{0..T−1}, x_t = q_sample(x0) clamped to ±s,
    decoder input denormalize(x_t) in fp32, decoder predicting x0 as class logits."""
    device = next(objective.parameters()).device
    snr = config.diffusion.snr_scale
    targets = training_targets(stream, num_classes, config.training.soft_label, device)
    length = stream.labels.shape[0]
    t = torch.randint(0, schedule.timesteps, (1,), generator=generator).to(device)
    noise = torch.randn((1, num_classes, length), generator=generator).to(device)
    x0 = normalize(F.one_hot(targets.labels, num_classes).permute(0, 2, 1).float(), snr)
    noisy = torch.clamp(schedule.q_sample(x0, t, noise), -snr, snr)  # float64, as in the official code
    encoder_logits, decoder_logits = objective(
        torch.as_tensor(stream.features, device=device)[None],
        torch.as_tensor(visible, device=device)[None],
        t,
        denormalize(noisy, snr).float(),
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


def carve_validation(names: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split training videos into (train, validation): round(fraction·N) videos, at least one when
    fraction > 0 and N ≥ 2, chosen by `seed`; both lists keep the split file's order."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    count = (
        min(max(round(fraction * len(names)), 1), len(names) - 1) if fraction > 0 and len(names) > 1 else 0
    )
    chosen = set(random.Random(seed).sample(names, count))
    return [n for n in names if n not in chosen], [n for n in names if n in chosen]


def epoch_shard(num_videos: int, shuffle: random.Random, info: Distributed) -> list[int]:
    """This rank's videos for one epoch: one shared shuffle, padded so every rank gets the same count."""
    order = list(range(num_videos))
    shuffle.shuffle(order)
    per_rank = -(-num_videos // info.world_size)
    padded = [order[i % num_videos] for i in range(per_rank * info.world_size)]
    return padded[info.rank :: info.world_size]


def resolve_config(config: ActFusionConfig | str | dict) -> ActFusionConfig:
    """A preset name, an ActFusionConfig, its to_dict() form, or a model card's dict (its configuration)."""
    if isinstance(config, ActFusionConfig):
        return config
    if isinstance(config, str):
        return preset(config)
    if isinstance(config, dict) and isinstance(config.get("config"), dict):
        config = config["config"]  # a model card: train its configuration and recipe again
    return ActFusionConfig.from_dict(config)


class _Trainer:
    """The state of one run; `train()` is the public entry point."""

    def __init__(
        self,
        config: ActFusionConfig,
        data_dir: Path,
        split: int | str,
        out_dir: Path,
        *,
        epochs: int,
        seed: int,
        val_fraction: float,
        eval_every: int,
        device: torch.device | None,
        attention_impl: str,
        progress: bool,
        description: str,
    ) -> None:
        check_mask_types(config.training.cond_types)
        self.info, self.device = init_distributed(device)
        self.config, self.split, self.out_dir = config, split, out_dir
        self.epochs, self.seed, self.eval_every = epochs, seed, eval_every
        self.progress = progress and self.info.is_main
        self.description = description
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
        self.train_data, self.val_data = full.select(train_names), full.select(val_names)
        self.dataset_root = data_dir
        self.weights = (
            class_weights(self.train_data.label_counts()).to(self.device)
            if config.training.class_weighting and config.training.soft_label is None
            else None
        )
        torch.manual_seed(seed)  # identical initial parameters on every rank
        self.model = ActFusion(config, full.num_classes).to(self.device)
        self.model.attention_impl = attention_impl
        self.schedule = NoiseSchedule.from_module(self.model)
        objective = TrainingObjective(self.model)
        self.objective: nn.Module = (
            DistributedDataParallel(objective, broadcast_buffers=False) if self.info.enabled else objective
        )
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=config.training.learning_rate,
            weight_decay=config.training.weight_decay,
        )
        # Videos per optimizer step on each rank: batch_size in total across ranks (spec §7).
        self.accumulation = max(1, config.training.batch_size // self.info.world_size)
        decay = config.training.ema_decay
        self.average = WeightAverage(self.model, decay) if decay is not None else None
        self.rng = TrainingRNG.seeded(seed, self.info.rank, self.device)
        self.shuffle = random.Random(seed)
        self.epoch = 0
        self.step = 0
        self.best_score: float | None = None
        self.history: list[dict[str, Any]] = []

    # -- checkpoints --------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def gather_rng_states(self) -> list[dict[str, Any]]:
        state = self.rng.state()
        if not self.info.enabled:
            return [state]
        states: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(states, state)
        return states

    def save_checkpoint(self) -> None:
        rng_states = self.gather_rng_states()
        if not self.info.is_main:
            return
        payload = {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "num_classes": self.train_data.num_classes,
            "world_size": self.info.world_size,
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
        with atomic_write(self.checkpoint_path) as stream:
            torch.save(payload, stream)

    def load_checkpoint(self) -> None:
        path = self.checkpoint_path
        try:
            payload = torch.load(path, map_location=self.device, weights_only=True)
        except (OSError, RuntimeError, EOFError) as err:
            raise WeightsError(f"cannot resume from {path}: {err}") from err
        if payload.get("version") != CHECKPOINT_VERSION:
            raise WeightsError(f"{path} is not a training checkpoint of this version; start a new run")
        if payload["config"] != self.config.to_dict():
            raise ConfigError(f"{path} was written with another configuration; resume with the same one")
        if payload["world_size"] != self.info.world_size:
            raise ConfigError(
                f"{path} was written by {payload['world_size']} processes; resume with the same number "
                f"(got {self.info.world_size})"
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        for parameter, gradient in zip(self.model.parameters(), payload["pending_gradients"], strict=True):
            parameter.grad = gradient
        if self.average is not None:
            self.average.load(payload["average"])
        self.rng.load(payload["rng"][self.info.rank])
        self.shuffle.setstate(payload["shuffle"])
        self.epoch, self.step = payload["epoch"], payload["step"]
        self.best_score, self.history = payload["best_score"], payload["history"]

    def save_model(self, path: Path, scores: dict[str, Any] | None) -> None:
        settings = self.train_data.feature_settings
        card = ModelCard(
            format_version=FORMAT_VERSION,
            config=self.config,
            classes=self.train_data.classes,
            features=settings,
            fps=None if settings is None else FeatureSettings.from_dict(settings).features_per_second,
            description=self.description,
            training={
                "data": str(self.dataset_root),
                "split": str(self.split),
                "train_videos": [v.name for v in self.train_data.videos],
                "validation_videos": [v.name for v in self.val_data.videos],
                "epochs": self.epoch,
                "seed": self.seed,
                "world_size": self.info.world_size,
                "validation": scores,
            },
        )
        save_model(self.selected_weights, card, path)

    @property
    def selected_weights(self) -> ActFusion:
        """The weights that are validated and saved: the moving average when the recipe keeps one."""
        return self.model if self.average is None else self.average.model

    # -- the loop -----------------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        self.history.append(record)
        with (self.out_dir / LOG_NAME).open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def no_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        if self.info.enabled and not sync:
            return self.objective.no_sync()
        return contextlib.nullcontext()

    def run_epoch(self) -> dict[str, float]:
        self.objective.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, self.epoch)
        totals: dict[str, float] = {}
        shard = epoch_shard(len(self.train_data), self.shuffle, self.info)
        videos = tqdm(shard, desc=f"epoch {self.epoch + 1}", leave=False, disable=not self.progress)
        for index in videos:
            stream = self.train_data.training_stream(index, self.rng.python)
            kind = draw_mask_type(self.config.training.cond_types, self.rng.python)
            visible = visible_frames(
                kind,
                stream.labels,
                stream.boundaries,
                rng=self.rng.python,
                np_rng=self.rng.numpy,
                n_mask=self.config.training.n_mask,
                patch_size=self.config.training.patch_size,
            )
            self.step += 1
            sync = self.step % self.accumulation == 0
            with self.no_sync(sync):
                terms = stream_losses(
                    self.objective,
                    self.schedule,
                    self.config,
                    self.train_data.num_classes,
                    stream,
                    visible,
                    self.rng.torch,
                    weights=self.weights,
                )
                (terms["total"] / self.accumulation).backward()
            if sync:
                self.optimizer.step()
                self.optimizer.zero_grad()
                if self.average is not None:
                    self.average.update(self.model)
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach())
        return self.average_over_ranks(totals, len(shard))

    def average_over_ranks(self, totals: dict[str, float], count: int) -> dict[str, float]:
        names = sorted(totals)
        sums = torch.tensor([totals[n] for n in names] + [count], dtype=torch.float64)
        if self.info.enabled:
            sums = sums.to(self.device)
            dist.all_reduce(sums)
            sums = sums.cpu()
        return {name: float(sums[i] / sums[-1]) for i, name in enumerate(names)}

    def validate(self) -> tuple[float | None, dict[str, Any] | None]:
        """Evaluate on the validation videos (rank 0); without any, the latest model counts as best."""
        if not self.info.is_main or not len(self.val_data):
            return None, None
        self.objective.eval()
        with torch.random.fork_rng(devices=[]):
            report = evaluate_model(self.selected_weights, self.val_data, progress=self.progress)
        self.objective.train()
        # The official selection score (spec §6): mean of the TAS mean and the MoC mean.
        return report.combined_score(), report.to_dict()

    def checkpoint_epoch(self) -> None:
        """Every eval_every epochs and at the end: validate, keep the best model, write latest.pt."""
        if self.epoch % self.eval_every and self.epoch != self.epochs:
            return
        score, scores = self.validate()
        if self.info.is_main:
            improved = score is None or self.best_score is None or score > self.best_score
            if improved:
                self.best_score = score
                self.save_model(self.out_dir / BEST_MODEL_DIR, scores)
            self.log(
                {
                    "event": "validation",
                    "epoch": self.epoch,
                    "score": score,
                    "best": improved,
                    "scores": scores,
                }
            )
        self.save_checkpoint()
        if self.info.enabled:
            dist.barrier()

    def run(self, resume: bool) -> TrainResult:
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.info.enabled:
            dist.barrier()
        if resume and self.checkpoint_path.is_file():
            self.load_checkpoint()
        elif self.info.is_main:
            (self.out_dir / LOG_NAME).unlink(missing_ok=True)
            self.log(
                {
                    "event": "start",
                    "config": self.config.to_dict(),
                    "data": str(self.dataset_root),
                    "split": str(self.split),
                    "train_videos": len(self.train_data),
                    "validation_videos": len(self.val_data),
                    "world_size": self.info.world_size,
                    "seed": self.seed,
                }
            )
        bar = tqdm(total=self.epochs, initial=self.epoch, desc="training", disable=not self.progress)
        while self.epoch < self.epochs:
            started = time.perf_counter()
            losses = self.run_epoch()
            self.epoch += 1
            self.log(
                {
                    "event": "epoch",
                    "epoch": self.epoch,
                    "step": self.step,
                    "loss": losses,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - started,
                }
            )
            self.checkpoint_epoch()
            bar.update()
            bar.set_postfix(loss=f"{losses['total']:.4f}")
        bar.close()
        return TrainResult(
            model=self.model,
            out_dir=self.out_dir,
            model_dir=self.out_dir / BEST_MODEL_DIR,
            checkpoint=self.checkpoint_path,
            log=self.out_dir / LOG_NAME,
            epochs=self.epoch,
            steps=self.step,
            best_score=self.best_score,
            history=self.history,
        )


def train(
    config: ActFusionConfig | str | dict,
    data_dir: str | Path,
    split: int | str = 1,
    out_dir: str | Path = "runs/actfusion",
    *,
    epochs: int | None = None,
    resume: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    eval_every: int | None = None,
    device: str | torch.device | None = None,
    attention_impl: str = "auto",
    progress: bool = True,
    description: str = "",
    **overrides: Any,
) -> TrainResult:
    """Train ActFusion on the train split of an MS-TCN dataset; returns where the results are.

    `config` is a preset name, an ActFusionConfig or its dict; keyword `overrides` replace TrainingConfig
    fields (e.g. batch_size=2, learning_rate=1e-3). `epochs` and `eval_every` default to the config's.
    The selected model (best validation score, or the last one without validation videos) is written in our
    format to <out_dir>/model; <out_dir>/latest.pt allows `resume=True`; <out_dir>/log.jsonl logs the run.
    Under torchrun, every rank calls this; rank 0 writes the files.
    """
    config = resolve_config(config)
    if overrides:
        try:
            config = dataclasses.replace(config, training=dataclasses.replace(config.training, **overrides))
        except TypeError as err:
            raise ConfigError(f"unknown training setting in {sorted(overrides)}: {err}") from err
    epochs = config.training.epochs if epochs is None else epochs
    eval_every = config.training.eval_every if eval_every is None else eval_every
    if epochs < 1 or eval_every < 1:
        raise ConfigError(f"epochs and eval_every must be >= 1, got {epochs} and {eval_every}")
    if config.training.lr_schedule == "cosine" and epochs > config.training.epochs:
        raise ConfigError(
            f"the cosine schedule anneals over training.epochs = {config.training.epochs}, so a run cannot "
            f"last {epochs} epochs; raise training.epochs in the configuration to {epochs}"
        )
    trainer = _Trainer(
        config,
        Path(data_dir),
        split,
        Path(out_dir),
        epochs=epochs,
        seed=seed,
        val_fraction=val_fraction,
        eval_every=eval_every,
        device=torch.device(device) if device is not None else None,
        attention_impl=attention_impl,
        progress=progress,
        description=description,
    )
    return trainer.run(resume)
