"""Typed configuration of an ActFusion model and its training recipe (spec §1.1, §10).

`preset(name)` gives the released configurations; `ActFusionConfig.from_official(d)` reads the official
configs/*.json dicts; `to_dict` / `from_dict` are a JSON-safe round trip used by model cards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from ..errors import ConfigError

PosKind = Literal["rel", "none"]
PostprocessKind = Literal["median", "purge", "none"]

RAW_FEATURES = -1  # feature_layer_indices entry: the (masked) encoder input itself (spec §1.3 step 7)
ENCODER_PROBS = -2  # feature_layer_indices entry: softmax of the encoder logits
LRSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[LRSchedule, ...] = get_args(LRSchedule)


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder sizes; layer i has dilation 2**i (spec §1.2)."""

    num_layers: int
    width: int
    kernel_size: int
    dropout: float
    channel_dropout: float
    temporal_dropout: float
    feature_layer_indices: tuple[int, ...]
    input_dim: int = 2048
    # Per-video, per-channel normalisation of the input features over time (no parameters).
    use_instance_norm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "feature_layer_indices", tuple(int(i) for i in self.feature_layer_indices))
        _check_sizes("encoder", self.num_layers, self.width, self.kernel_size)
        if not self.feature_layer_indices:
            raise ConfigError(
                "encoder.feature_layer_indices is empty; the decoder needs at least one feature"
            )
        for index in self.feature_layer_indices:
            if not ENCODER_PROBS <= index < self.num_layers:
                raise ConfigError(
                    f"encoder.feature_layer_indices entry {index} is out of range; use layer indices "
                    f"0..{self.num_layers - 1}, -1 (raw input) or -2 (encoder probabilities)"
                )

    @property
    def kept_layers(self) -> tuple[int, ...]:
        """Encoder layers whose outputs join the cross features, in increasing order (spec §1.3 step 7)."""
        return tuple(sorted({i for i in self.feature_layer_indices if i >= 0}))

    def cross_dim(self, num_classes: int) -> int:
        """Channel count X of the decoder's cross features."""
        return (
            len(self.kept_layers) * self.width
            + self.input_dim * (RAW_FEATURES in self.feature_layer_indices)
            + num_classes * (ENCODER_PROBS in self.feature_layer_indices)
        )


@dataclass(frozen=True)
class DecoderConfig:
    """Denoising decoder sizes; layer i has dilation 2**i."""

    num_layers: int
    width: int
    kernel_size: int
    dropout: float
    time_emb_dim: int = 512

    def __post_init__(self) -> None:
        _check_sizes("decoder", self.num_layers, self.width, self.kernel_size)
        if self.time_emb_dim < 4 or self.time_emb_dim % 2:
            raise ConfigError(f"decoder.time_emb_dim must be even and >= 4, got {self.time_emb_dim}")


@dataclass(frozen=True)
class DiffusionConfig:
    """Cosine-schedule diffusion in label space and its DDIM sampler (spec §3)."""

    timesteps: int = 1000
    sampling_timesteps: int = 25
    eta: float = 1.0
    snr_scale: float = field(kw_only=True)

    def __post_init__(self) -> None:
        if not 1 <= self.sampling_timesteps <= self.timesteps:
            raise ConfigError(
                f"diffusion.sampling_timesteps must be in 1..{self.timesteps}, got {self.sampling_timesteps}"
            )
        if self.snr_scale <= 0:
            raise ConfigError(f"diffusion.snr_scale must be positive, got {self.snr_scale}")


@dataclass(frozen=True)
class LossWeights:
    """Weights of the six loss terms (spec §3); the encoder boundary weight must be 0."""

    encoder_ce: float
    encoder_mse: float
    encoder_boundary: float
    decoder_ce: float
    decoder_mse: float
    decoder_boundary: float

    def __post_init__(self) -> None:
        if self.encoder_boundary != 0:
            raise ConfigError(
                f"loss_weights.encoder_boundary must be 0 (the encoder has no boundary loss), "
                f"got {self.encoder_boundary}"
            )


@dataclass(frozen=True)
class TrainingConfig:
    """Training recipe (spec §1.1, §3, §4, §7)."""

    cond_types: tuple[str, ...]
    loss_weights: LossWeights
    learning_rate: float
    weight_decay: float
    batch_size: int  # videos per optimizer step (gradient accumulation in the official code)
    epochs: int
    eval_every: int
    boundary_smooth: float
    soft_label: float | None
    class_weighting: bool
    n_mask: int = 10
    patch_size: int = 10
    # Not in the official recipes: play each training stream at a speed drawn log-uniformly from this range
    # (nearest-frame resampling of features and labels); None keeps the official behaviour.
    speed_range: tuple[float, float] | None = None
    # Not in the official recipes: validate and save an exponential moving average of the weights with this
    # decay per optimizer step; None validates and saves the weights as trained.
    ema_decay: float | None = None
    # Not in the official recipes: "cosine" anneals the learning rate to 0 over `epochs` above.
    lr_schedule: LRSchedule = "constant"

    def __post_init__(self) -> None:
        object.__setattr__(self, "cond_types", tuple(self.cond_types))
        if not self.cond_types:
            raise ConfigError("training.cond_types is empty; list at least one masking type, e.g. 'full'")
        if self.speed_range is not None:
            object.__setattr__(self, "speed_range", tuple(float(x) for x in self.speed_range))
            if len(self.speed_range) != 2 or not 0 < self.speed_range[0] <= self.speed_range[1]:
                raise ConfigError(
                    "training.speed_range must be [low, high] with 0 < low <= high, "
                    f"got {list(self.speed_range)}"
                )
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"training.ema_decay must lie strictly between 0 and 1, got {self.ema_decay}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(
                f"training.lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )


@dataclass(frozen=True)
class PostprocessConfig:
    """Smoothing of the frame predictions: 'median' (per-class window), 'purge' (short segments) or 'none'."""

    kind: PostprocessKind
    value: int

    def __post_init__(self) -> None:
        if self.kind not in ("median", "purge", "none"):
            raise ConfigError(f"postprocess kind must be 'median', 'purge' or 'none', got {self.kind!r}")
        if self.kind == "median" and self.value < 1:
            raise ConfigError(f"median postprocess needs a window size >= 1, got {self.value}")


@dataclass(frozen=True)
class ActFusionConfig:
    """Everything that defines an ActFusion model except its class count."""

    name: str
    encoder: EncoderConfig
    decoder: DecoderConfig
    diffusion: DiffusionConfig
    training: TrainingConfig
    postprocess: PostprocessConfig
    pos: PosKind = "rel"
    sample_rate: int = field(kw_only=True)
    temporal_aug: bool = field(kw_only=True)

    def __post_init__(self) -> None:
        if self.pos not in ("rel", "none"):
            raise ConfigError(
                f"position bias {self.pos!r} is not supported; use 'rel' (the released models) or 'none'"
            )
        if self.sample_rate < 1:
            raise ConfigError(f"sample_rate must be >= 1, got {self.sample_rate}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe nested dict (tuples become lists)."""
        return _lists_for_tuples(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActFusionConfig:
        """Inverse of `to_dict`; raises ConfigError on missing or unknown keys."""
        try:
            training = dict(data["training"])
            training["loss_weights"] = LossWeights(**training["loss_weights"])
            return cls(
                name=data["name"],
                encoder=EncoderConfig(**data["encoder"]),
                decoder=DecoderConfig(**data["decoder"]),
                diffusion=DiffusionConfig(**data["diffusion"]),
                training=TrainingConfig(**training),
                postprocess=PostprocessConfig(**data["postprocess"]),
                pos=data.get("pos", "rel"),
                sample_rate=data["sample_rate"],
                temporal_aug=data["temporal_aug"],
            )
        except KeyError as err:
            raise ConfigError(f"model configuration lacks the key {err.args[0]!r}") from err
        except TypeError as err:
            raise ConfigError(f"model configuration is malformed: {err}") from err

    @classmethod
    def from_official(cls, data: Mapping[str, Any]) -> ActFusionConfig:
        """Read an official ActFusion configs/*.json dict (as stored in the test vectors)."""
        try:
            enc, dec, diff = data["encoder_params"], data["decoder_params"], data["diffusion_params"]
            weights, post = data["loss_weights"], data["postprocess"]
            return cls(
                name=str(data.get("dataset_name", data.get("naming", "official"))),
                encoder=EncoderConfig(
                    num_layers=enc["num_layers"],
                    width=enc["num_f_maps"],
                    kernel_size=enc["kernel_size"],
                    dropout=enc["normal_dropout_rate"],
                    channel_dropout=enc["channel_dropout_rate"],
                    temporal_dropout=enc["temporal_dropout_rate"],
                    feature_layer_indices=tuple(enc["feature_layer_indices"]),
                    input_dim=enc["input_dim"],
                    use_instance_norm=bool(enc.get("use_instance_norm", False)),
                ),
                decoder=DecoderConfig(
                    num_layers=dec["num_layers"],
                    width=dec["num_f_maps"],
                    kernel_size=dec["kernel_size"],
                    dropout=dec["dropout_rate"],
                    time_emb_dim=dec["time_emb_dim"],
                ),
                diffusion=DiffusionConfig(
                    timesteps=diff["timesteps"],
                    sampling_timesteps=diff["sampling_timesteps"],
                    eta=diff["ddim_sampling_eta"],
                    snr_scale=diff["snr_scale"],
                ),
                training=TrainingConfig(
                    cond_types=tuple(diff["cond_types"]),
                    loss_weights=LossWeights(
                        encoder_ce=weights["encoder_ce_loss"],
                        encoder_mse=weights["encoder_mse_loss"],
                        encoder_boundary=weights["encoder_boundary_loss"],
                        decoder_ce=weights["decoder_ce_loss"],
                        decoder_mse=weights["decoder_mse_loss"],
                        decoder_boundary=weights["decoder_boundary_loss"],
                    ),
                    learning_rate=data["learning_rate"],
                    weight_decay=data["weight_decay"],
                    batch_size=data["batch_size"],
                    epochs=data["num_epochs"],
                    eval_every=data["log_freq"],
                    boundary_smooth=data["boundary_smooth"],
                    soft_label=data["soft_label"],
                    class_weighting=bool(data["class_weighting"]),
                    n_mask=data.get("n_mask", 10),
                    patch_size=data.get("patch_size", 10),
                    speed_range=data.get("speed_range"),
                    ema_decay=data.get("ema_decay"),
                    lr_schedule=data.get("lr_schedule", "constant"),
                ),
                postprocess=PostprocessConfig(
                    kind=post["type"] or "none",
                    value=int(post["value"]),
                ),
                pos=data.get("pos", "rel"),
                sample_rate=data["sample_rate"],
                temporal_aug=bool(data["temporal_aug"]),
            )
        except KeyError as err:
            raise ConfigError(f"official configuration lacks the key {err.args[0]!r}") from err

    def to_official(self) -> dict[str, Any]:
        """The official configs/*.json layout of this configuration (inverse of `from_official`)."""
        enc, dec, diff, train = self.encoder, self.decoder, self.diffusion, self.training
        weights = train.loss_weights
        return {
            "naming": self.name,
            "dataset_name": self.name,
            "sample_rate": self.sample_rate,
            "temporal_aug": self.temporal_aug,
            "pos": self.pos,
            "n_mask": train.n_mask,
            "patch_size": train.patch_size,
            "encoder_params": {
                "use_instance_norm": enc.use_instance_norm,
                "num_layers": enc.num_layers,
                "num_f_maps": enc.width,
                "input_dim": enc.input_dim,
                "kernel_size": enc.kernel_size,
                "normal_dropout_rate": enc.dropout,
                "channel_dropout_rate": enc.channel_dropout,
                "temporal_dropout_rate": enc.temporal_dropout,
                "feature_layer_indices": list(enc.feature_layer_indices),
            },
            "decoder_params": {
                "num_layers": dec.num_layers,
                "num_f_maps": dec.width,
                "time_emb_dim": dec.time_emb_dim,
                "kernel_size": dec.kernel_size,
                "dropout_rate": dec.dropout,
            },
            "diffusion_params": {
                "timesteps": diff.timesteps,
                "sampling_timesteps": diff.sampling_timesteps,
                "ddim_sampling_eta": diff.eta,
                "snr_scale": diff.snr_scale,
                "cond_types": list(train.cond_types),
                "detach_decoder": False,
            },
            "loss_weights": {
                "encoder_ce_loss": weights.encoder_ce,
                "encoder_mse_loss": weights.encoder_mse,
                "encoder_boundary_loss": weights.encoder_boundary,
                "decoder_ce_loss": weights.decoder_ce,
                "decoder_mse_loss": weights.decoder_mse,
                "decoder_boundary_loss": weights.decoder_boundary,
            },
            "batch_size": train.batch_size,
            "learning_rate": train.learning_rate,
            "weight_decay": train.weight_decay,
            "num_epochs": train.epochs,
            "log_freq": train.eval_every,
            "class_weighting": train.class_weighting,
            "boundary_smooth": train.boundary_smooth,
            "soft_label": train.soft_label,
            "postprocess": {"type": self.postprocess.kind, "value": self.postprocess.value},
            **({"speed_range": list(train.speed_range)} if train.speed_range else {}),
            **({"ema_decay": train.ema_decay} if train.ema_decay is not None else {}),
            **({"lr_schedule": train.lr_schedule} if train.lr_schedule != "constant" else {}),
        }


def _lists_for_tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists_for_tuples(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists_for_tuples(item) for item in value]
    return value


def _check_sizes(part: str, num_layers: int, width: int, kernel_size: int) -> None:
    if num_layers < 1 or width < 1:
        raise ConfigError(f"{part} needs at least one layer of width >= 1, got {num_layers} x {width}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"{part}.kernel_size must be odd and positive, got {kernel_size}")


_BREAKFAST = ActFusionConfig(
    name="breakfast",
    encoder=EncoderConfig(12, 256, 5, 0.5, 0.1, 0.1, (7, 8, 9)),
    decoder=DecoderConfig(8, 128, 5, 0.1),
    diffusion=DiffusionConfig(snr_scale=0.5),
    training=TrainingConfig(
        cond_types=("ant", "full", "boundary03-", "segment=1", "segment=1", "random_patch"),
        loss_weights=LossWeights(0.5, 0.025, 0.0, 0.5, 0.025, 0.1),
        learning_rate=1e-4,
        weight_decay=0.0,
        batch_size=16,
        epochs=1001,
        eval_every=10,
        boundary_smooth=3,
        soft_label=4,
        class_weighting=True,
    ),
    postprocess=PostprocessConfig("median", 15),
    sample_rate=1,
    temporal_aug=True,
)

_50SALADS = ActFusionConfig(
    name="50salads",
    encoder=EncoderConfig(10, 64, 5, 0.5, 0.5, 0.5, (5, 7, 9)),
    decoder=DecoderConfig(8, 24, 7, 0.1),
    diffusion=DiffusionConfig(snr_scale=1.0),
    training=TrainingConfig(
        cond_types=("full", "ant", "random_num_patch", "boundary05-", "segment=2", "segment=2"),
        loss_weights=LossWeights(0.5, 0.1, 0.0, 0.5, 0.1, 0.1),
        learning_rate=5e-4,
        weight_decay=0.0,
        batch_size=4,
        epochs=7001,
        eval_every=100,
        boundary_smooth=20,
        soft_label=None,
        class_weighting=True,
    ),
    postprocess=PostprocessConfig("median", 30),
    sample_rate=8,
    temporal_aug=True,
)

# Spec §10: the paper's sizes plus DiffAct's GTEA settings. The cond types replace DiffAct's crashing 'zero'
# (our choice, as documented there); eval_every is not given anywhere, 100 is our choice.
_GTEA = ActFusionConfig(
    name="gtea",
    encoder=EncoderConfig(10, 64, 5, 0.5, 0.5, 0.5, (5, 7, 9)),
    decoder=DecoderConfig(8, 24, 5, 0.1),
    diffusion=DiffusionConfig(snr_scale=0.5),
    training=TrainingConfig(
        cond_types=("full", "ant", "boundary03-", "segment=1", "segment=1", "random_patch"),
        loss_weights=LossWeights(0.5, 0.1, 0.0, 0.5, 0.1, 0.1),
        learning_rate=5e-4,
        weight_decay=1e-6,
        batch_size=4,
        epochs=10000,
        eval_every=100,
        boundary_smooth=1,
        soft_label=1.4,
        class_weighting=True,
    ),
    postprocess=PostprocessConfig("purge", 3),
    sample_rate=1,
    temporal_aug=True,
)

PRESETS: dict[str, ActFusionConfig] = {cfg.name: cfg for cfg in (_BREAKFAST, _50SALADS, _GTEA)}
# Class counts of the datasets the presets were released for (spec §1.1, §10): a preset's model with random
# weights needs one.
PRESET_CLASSES: dict[str, int] = {"breakfast": 48, "50salads": 19, "gtea": 11}


def preset(name: str) -> ActFusionConfig:
    """The released configuration called `name` ('breakfast', '50salads' or 'gtea')."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
