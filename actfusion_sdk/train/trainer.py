"""The training run: build the model and its state, loop over epochs, validate, keep the best model, log."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..evaluate import evaluate_model
from ..features.settings import FeatureSettings
from ..fileio import atomic_write
from ..limits import check_seed
from ..model.actfusion import ActFusion
from ..model.checkpoint import FORMAT_VERSION, OFFICIAL_SUFFIXES, ModelCard, load_card, save_model
from ..model.config import ActFusionConfig
from ..model.diffusion import NoiseSchedule
from ..model.losses import class_weights
from ..model.masking import check_mask_types, draw_mask_type, visible_frames
from .distributed import epoch_shard, init_distributed
from .lr_schedule import apply_learning_rate, check_run_length
from .objective import TrainingObjective, stream_losses
from .recipes import DEFAULT_RECIPE, recipe
from .splits import check_val_fraction, training_splits
from .state import (
    TrainingRNG,
    TrainingState,
    WeightAverage,
    checkpoint_payload,
    resume_checkpoint,
    save_checkpoint,
)
from .warm_start import WarmStart, resolve_init, warm_start

CHECKPOINT_NAME = "latest.pt"
BEST_MODEL_DIR = "model"
LOG_NAME = "log.jsonl"


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
    init: WarmStart | None = None  # where the initial weights came from (`init=`), None for a fresh start


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: the last finished epoch was saved to `checkpoint`; `resume=True` continues."""

    def __init__(self, checkpoint: Path, epoch: int, epochs: int) -> None:
        super().__init__(
            f"interrupted; saved a resumable checkpoint {checkpoint} after epoch {epoch} of {epochs}: run "
            "the same command again with --resume (resume=True) to continue from there"
        )
        self.checkpoint, self.epoch, self.epochs = checkpoint, epoch, epochs


def resolve_config(
    config: ActFusionConfig | str | dict | None, init: str | Path | None = None
) -> ActFusionConfig:
    """A recipe name ('small' or a preset), an ActFusionConfig, its to_dict() form, or a model card's dict
    (its configuration). None: the configuration of the `init` model when it is one of ours, else 'small'."""
    if config is None:
        init_path = None if init is None else resolve_init(init)
        if init_path is None or init_path.suffix in OFFICIAL_SUFFIXES:
            if init_path is not None:
                raise ConfigError(
                    f"--init {init} is an official state_dict without a model card: give the configuration "
                    "it was trained with (--preset or --config)"
                )
            config = DEFAULT_RECIPE
        else:
            return load_card(init_path).config
    if isinstance(config, ActFusionConfig):
        return config
    if isinstance(config, str):
        return recipe(config)
    if isinstance(config, dict) and isinstance(config.get("config"), dict):
        config = config["config"]  # a model card: train its configuration and recipe again
    return ActFusionConfig.from_dict(config)


class _Trainer:
    """The settings and state of one run; `train()` is the public entry point."""

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
        init: str | Path | None = None,
    ) -> None:
        check_mask_types(config.training.cond_types)
        self.info, self.device = init_distributed(device)
        self.config, self.dataset_root, self.split, self.out_dir = config, data_dir, split, out_dir
        self.epochs, self.seed, self.eval_every = epochs, seed, eval_every
        self.progress = progress and self.info.is_main
        self.description = description
        self.snapshot: dict[str, Any] | None = None  # the state at the last epoch boundary (`interrupted`)
        self.train_data, self.val_data = training_splits(config, data_dir, split, val_fraction, seed)
        self.weights = (
            class_weights(self.train_data.label_counts()).to(self.device)
            if config.training.class_weighting and config.training.soft_label is None
            else None
        )
        torch.manual_seed(seed)  # identical initial parameters on every rank
        model = ActFusion(config, self.train_data.num_classes).to(self.device)
        model.attention_impl = attention_impl
        self.init = (
            None
            if init is None
            else warm_start(model, self.train_data.classes, init, self.train_data.feature_settings)
        )
        self.schedule = NoiseSchedule.from_module(model)
        self.objective = self.info.data_parallel(TrainingObjective(model))
        self.accumulation = self.info.videos_per_step(config.training.batch_size)
        training = config.training
        self.state = TrainingState(
            model,
            torch.optim.Adam(
                model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay
            ),
            average=None if training.ema_decay is None else WeightAverage(model, training.ema_decay),
            rng=TrainingRNG.seeded(seed, self.info.rank, self.device),
            shuffle=random.Random(seed),
        )

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def save_model(self, path: Path, scores: dict[str, Any] | None) -> None:
        """The selected weights in our format, with a card that says how they were trained."""
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
                "epochs": self.state.epoch,
                "seed": self.seed,
                "world_size": self.info.world_size,
                "validation": scores,
                "init": None if self.init is None else self.init.to_dict(),
            },
        )
        save_model(self.state.selected_weights, card, path)

    def log(self, record: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        self.state.history.append(record)
        with (self.out_dir / LOG_NAME).open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def run_epoch(self) -> dict[str, float]:
        """One pass over this rank's shard; returns the per-video mean of each loss term over all ranks."""
        state, training = self.state, self.config.training
        self.objective.train()
        apply_learning_rate(state.optimizer, self.config, state.epoch)
        totals: dict[str, float] = {}
        shard = epoch_shard(len(self.train_data), state.shuffle, self.info)
        videos = tqdm(shard, desc=f"epoch {state.epoch + 1}", leave=False, disable=not self.progress)
        for index in videos:
            stream = self.train_data.training_stream(index, state.rng.python)
            kind = draw_mask_type(training.cond_types, state.rng.python)
            visible = visible_frames(
                kind,
                stream.labels,
                stream.boundaries,
                rng=state.rng.python,
                np_rng=state.rng.numpy,
                n_mask=training.n_mask,
                patch_size=training.patch_size,
            )
            state.step += 1
            sync = state.step % self.accumulation == 0
            with self.info.gradient_sync(self.objective, sync):
                terms = stream_losses(
                    self.objective,
                    self.schedule,
                    self.config,
                    self.train_data.num_classes,
                    stream,
                    visible,
                    state.rng.torch,
                    weights=self.weights,
                )
                (terms["total"] / self.accumulation).backward()
            if sync:
                state.optimizer_step()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach())
        return self.info.mean(totals, len(shard), self.device)

    def validate(self) -> tuple[float | None, dict[str, Any] | None]:
        """Evaluate on the validation videos (rank 0); without any, the latest model counts as best."""
        if not self.info.is_main or not len(self.val_data):
            return None, None
        with torch.random.fork_rng(devices=[]):
            report = evaluate_model(self.state.selected_weights, self.val_data, progress=self.progress)
        # The official selection score (spec §6): mean of the TAS mean and the MoC mean.
        return report.combined_score(), report.to_dict()

    def checkpoint_epoch(self) -> None:
        """Every eval_every epochs and at the end: validate, keep the best model, write latest.pt."""
        state = self.state
        if state.epoch % self.eval_every and state.epoch != self.epochs:
            return
        score, scores = self.validate()
        if self.info.is_main:
            improved = score is None or state.best_score is None or score > state.best_score
            if improved:
                state.best_score = score
                self.save_model(self.out_dir / BEST_MODEL_DIR, scores)
            self.log(
                {
                    "event": "validation",
                    "epoch": state.epoch,
                    "score": score,
                    "best": improved,
                    "scores": scores,
                }
            )
        self.write_checkpoint(self.payload())
        self.info.barrier()

    def payload(self) -> dict[str, Any] | None:
        """The run's state as latest.pt holds it (on rank 0; None elsewhere)."""
        return checkpoint_payload(self.state, self.config, self.train_data.num_classes, self.info)

    def write_checkpoint(self, payload: dict[str, Any] | None) -> None:
        if payload is not None:
            save_checkpoint(self.checkpoint_path, payload)

    def start(self, resume: bool) -> None:
        """Resume from latest.pt when asked and present; otherwise start a new log."""
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.info.barrier()
        if resume and self.checkpoint_path.is_file():
            resume_checkpoint(self.checkpoint_path, self.state, self.config, self.info, self.device)
            if self.info.is_main:
                # The log restarts from the checkpoint's history: epochs after it run (and are logged) again.
                with atomic_write(self.out_dir / LOG_NAME, "w") as handle:
                    handle.writelines(json.dumps(record) + "\n" for record in self.state.history)
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
            if self.init is not None:
                self.log({"event": "init", **self.init.to_dict()})

    def run(self, resume: bool) -> TrainResult:
        self.start(resume)
        state = self.state
        bar = tqdm(total=self.epochs, initial=state.epoch, desc="training", disable=not self.progress)
        try:
            self.run_epochs(bar)
        except KeyboardInterrupt:
            bar.close()
            raise self.interrupted() from None
        bar.close()
        return TrainResult(
            model=state.model,
            out_dir=self.out_dir,
            model_dir=self.out_dir / BEST_MODEL_DIR,
            checkpoint=self.checkpoint_path,
            log=self.out_dir / LOG_NAME,
            epochs=state.epoch,
            steps=state.step,
            best_score=state.best_score,
            history=state.history,
            init=self.init,
        )

    def run_epochs(self, bar: tqdm) -> None:
        """The epochs still to run; a copy of the state at each epoch boundary is kept for `interrupted`."""
        state = self.state
        # Ctrl-C anywhere in an epoch saves the state at its start, which resumes exactly (a mid-epoch state
        # would skip the rest of the epoch's videos).
        self.snapshot = copy.deepcopy(self.payload())
        while state.epoch < self.epochs:
            started = time.perf_counter()
            losses = self.run_epoch()
            state.epoch += 1
            self.log(
                {
                    "event": "epoch",
                    "epoch": state.epoch,
                    "step": state.step,
                    "loss": losses,
                    "lr": state.optimizer.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - started,
                }
            )
            self.checkpoint_epoch()
            self.snapshot = copy.deepcopy(self.payload())
            bar.update()
            bar.set_postfix(loss=f"{losses['total']:.4f}")

    def interrupted(self) -> KeyboardInterrupt:
        """Save the state of the last epoch boundary as latest.pt (rank 0) and say how to continue."""
        if self.snapshot is None:  # another rank, or before the first epoch began: nothing to save here
            return KeyboardInterrupt()
        epoch = self.snapshot["epoch"]
        self.write_checkpoint(self.snapshot)
        with (self.out_dir / LOG_NAME).open("a") as handle:
            handle.write(json.dumps({"event": "interrupted", "saved_epoch": epoch}) + "\n")
        return TrainingInterrupted(self.checkpoint_path, epoch, self.epochs)


def train(
    config: ActFusionConfig | str | dict | None,
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
    name: str | None = None,
    init: str | Path | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train ActFusion on the train split of an MS-TCN dataset; returns where the results are.

    `config` is a recipe name ('small': the demo model's recipe for few videos; or a released preset), an
    ActFusionConfig or its dict, or None (the `init` model's configuration, else 'small'); keyword
    `overrides` replace TrainingConfig fields (e.g. batch_size=2, learning_rate=1e-3). `name` names the model
    in its card and in every result, table and plot (default: the configuration's name). `init` starts from
    trained weights (a model directory or card, 'demo', or an official state_dict) whose class list may
    differ: see `warm_start`. `epochs` and `eval_every` default to the config's.
    `val_fraction` of the training videos (at least one when > 0) are held out for model selection;
    `val_fraction=0` trains on all of them, as the official trainer does, and the last model is kept.
    The selected model (best validation score, or the last one without validation videos) is written in our
    format to <out_dir>/model; <out_dir>/latest.pt allows `resume=True`; <out_dir>/log.jsonl logs the run.
    Under torchrun, every rank calls this; rank 0 writes the files. Ctrl-C saves the last finished epoch to
    latest.pt and raises TrainingInterrupted (a KeyboardInterrupt).
    """
    config = resolve_config(config, init)
    if name is not None:
        config = dataclasses.replace(config, name=name)
    if overrides:
        try:
            config = dataclasses.replace(config, training=dataclasses.replace(config.training, **overrides))
        except TypeError as err:
            raise ConfigError(f"unknown training setting in {sorted(overrides)}: {err}") from err
    epochs = config.training.epochs if epochs is None else epochs
    eval_every = config.training.eval_every if eval_every is None else eval_every
    if epochs < 1 or eval_every < 1:
        raise ConfigError(f"epochs and eval_every must be >= 1, got {epochs} and {eval_every}")
    check_run_length(config, epochs)
    check_seed(seed)  # these two before any file is read
    check_val_fraction(val_fraction)
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
        init=init,
    )
    return trainer.run(resume)
