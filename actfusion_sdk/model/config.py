"""Typed configuration of an ActFusion model and its training recipe (spec §1.1, §10).

`preset(name)` gives the released configurations; `ActFusionConfig.from_official` / `to_official` read and
write the official configs/*.json dicts through one table, `OFFICIAL_FIELDS`; `to_dict` / `from_dict` are a
JSON-safe round trip used by model cards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import reduce
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
        ours: dict[str, Any] = {}
        for entry in OFFICIAL_FIELDS:
            value = _first_present(data, entry.official)
            if value is not _ABSENT:
                value = entry.read(value)
            elif entry.when_absent is _REQUIRED:
                raise ConfigError(f"official configuration lacks the key {entry.official[0]!r}")
            elif entry.when_absent is _OUR_DEFAULT:
                continue  # the dataclass default applies
            else:
                value = entry.when_absent
            _set_path(ours, entry.ours, value)
        return cls.from_dict(ours)

    def to_official(self) -> dict[str, Any]:
        """The official configs/*.json layout of this configuration (inverse of `from_official`)."""
        official: dict[str, Any] = {}
        for entry in OFFICIAL_FIELDS:
            *sections, leaf = entry.ours.split(".")
            owner = reduce(getattr, sections, self)
            value = getattr(owner, leaf)
            if entry.omit_default and value == _field_default(owner, leaf):
                continue
            for path in entry.official:
                _set_path(official, path, _lists_for_tuples(value))
        for path, value in OFFICIAL_CONSTANTS.items():
            _set_path(official, path, value)
        return official


_REQUIRED = object()  # OfficialField.when_absent: the official dict must hold the key
_OUR_DEFAULT = object()  # OfficialField.when_absent: an absent key reads as the dataclass default
_ABSENT = object()  # _first_present: none of the key paths is there


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, kw_only=True)
class OfficialField:
    """One configuration value as the official configs/*.json and `ActFusionConfig.to_dict` spell it."""

    official: tuple[str, ...]  # dotted key paths; the first present is read, every one is written
    ours: str  # dotted field path in ActFusionConfig
    # Official value -> ours. Writing needs no converter: ours are written as they are (lists for tuples).
    read: Callable[[Any], Any] = _same
    when_absent: Any = _REQUIRED  # _REQUIRED, _OUR_DEFAULT or the value read in its place
    omit_default: bool = False  # our additions to the recipe: written only when set away from the default


def _field(official: str, ours: str, **options: Any) -> OfficialField:
    return OfficialField(official=(official,), ours=ours, **options)


def _extension(key: str, ours: str) -> OfficialField:
    """A key the official recipes lack: absent means the official behaviour, our default."""
    return _field(key, ours, when_absent=_OUR_DEFAULT, omit_default=True)


# The one mapping between the official configs/*.json layout and ours, in the official key order.
OFFICIAL_FIELDS: tuple[OfficialField, ...] = (
    OfficialField(official=("dataset_name", "naming"), ours="name", read=str, when_absent="official"),
    _field("sample_rate", "sample_rate"),
    _field("temporal_aug", "temporal_aug", read=bool),
    _field("pos", "pos", when_absent=_OUR_DEFAULT),
    _field("n_mask", "training.n_mask", when_absent=_OUR_DEFAULT),
    _field("patch_size", "training.patch_size", when_absent=_OUR_DEFAULT),
    _field(
        "encoder_params.use_instance_norm", "encoder.use_instance_norm", read=bool, when_absent=_OUR_DEFAULT
    ),
    _field("encoder_params.num_layers", "encoder.num_layers"),
    _field("encoder_params.num_f_maps", "encoder.width"),
    _field("encoder_params.input_dim", "encoder.input_dim"),
    _field("encoder_params.kernel_size", "encoder.kernel_size"),
    _field("encoder_params.normal_dropout_rate", "encoder.dropout"),
    _field("encoder_params.channel_dropout_rate", "encoder.channel_dropout"),
    _field("encoder_params.temporal_dropout_rate", "encoder.temporal_dropout"),
    _field("encoder_params.feature_layer_indices", "encoder.feature_layer_indices"),
    _field("decoder_params.num_layers", "decoder.num_layers"),
    _field("decoder_params.num_f_maps", "decoder.width"),
    _field("decoder_params.time_emb_dim", "decoder.time_emb_dim"),
    _field("decoder_params.kernel_size", "decoder.kernel_size"),
    _field("decoder_params.dropout_rate", "decoder.dropout"),
    _field("diffusion_params.timesteps", "diffusion.timesteps"),
    _field("diffusion_params.sampling_timesteps", "diffusion.sampling_timesteps"),
    _field("diffusion_params.ddim_sampling_eta", "diffusion.eta"),
    _field("diffusion_params.snr_scale", "diffusion.snr_scale"),
    _field("diffusion_params.cond_types", "training.cond_types"),
    _field("loss_weights.encoder_ce_loss", "training.loss_weights.encoder_ce"),
    _field("loss_weights.encoder_mse_loss", "training.loss_weights.encoder_mse"),
    _field("loss_weights.encoder_boundary_loss", "training.loss_weights.encoder_boundary"),
    _field("loss_weights.decoder_ce_loss", "training.loss_weights.decoder_ce"),
    _field("loss_weights.decoder_mse_loss", "training.loss_weights.decoder_mse"),
    _field("loss_weights.decoder_boundary_loss", "training.loss_weights.decoder_boundary"),
    _field("batch_size", "training.batch_size"),
    _field("learning_rate", "training.learning_rate"),
    _field("weight_decay", "training.weight_decay"),
    _field("num_epochs", "training.epochs"),
    _field("log_freq", "training.eval_every"),
    _field("class_weighting", "training.class_weighting", read=bool),
    _field("boundary_smooth", "training.boundary_smooth"),
    _field("soft_label", "training.soft_label"),
    # The official code writes no smoothing as a null type.
    _field("postprocess.type", "postprocess.kind", read=lambda kind: kind or "none"),
    _field("postprocess.value", "postprocess.value", read=int),
    _extension("speed_range", "training.speed_range"),
    _extension("ema_decay", "training.ema_decay"),
    _extension("lr_schedule", "training.lr_schedule"),
)
# Official keys with no counterpart here: written with the value our model implies, ignored when read.
OFFICIAL_CONSTANTS: dict[str, Any] = {"diffusion_params.detach_decoder": False}


def _first_present(data: Mapping[str, Any], paths: tuple[str, ...]) -> Any:
    """The value at the first dotted key path that `data` holds, or _ABSENT."""
    for path in paths:
        value: Any = data
        for key in path.split("."):
            if not isinstance(value, Mapping) or key not in value:
                break
            value = value[key]
        else:
            return value
    return _ABSENT


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *sections, leaf = path.split(".")
    for section in sections:
        data = data.setdefault(section, {})
    data[leaf] = value


def _field_default(owner: Any, name: str) -> Any:
    return next(f.default for f in fields(owner) if f.name == name)


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
    encoder=EncoderConfig(
        num_layers=12,
        width=256,
        kernel_size=5,
        dropout=0.5,
        channel_dropout=0.1,
        temporal_dropout=0.1,
        feature_layer_indices=(7, 8, 9),
    ),
    decoder=DecoderConfig(num_layers=8, width=128, kernel_size=5, dropout=0.1),
    diffusion=DiffusionConfig(snr_scale=0.5),
    training=TrainingConfig(
        cond_types=("ant", "full", "boundary03-", "segment=1", "segment=1", "random_patch"),
        loss_weights=LossWeights(
            encoder_ce=0.5,
            encoder_mse=0.025,
            encoder_boundary=0.0,
            decoder_ce=0.5,
            decoder_mse=0.025,
            decoder_boundary=0.1,
        ),
        learning_rate=1e-4,
        weight_decay=0.0,
        batch_size=16,
        epochs=1001,
        eval_every=10,
        boundary_smooth=3,
        soft_label=4,
        class_weighting=True,
    ),
    postprocess=PostprocessConfig(kind="median", value=15),
    sample_rate=1,
    temporal_aug=True,
)

_50SALADS = ActFusionConfig(
    name="50salads",
    encoder=EncoderConfig(
        num_layers=10,
        width=64,
        kernel_size=5,
        dropout=0.5,
        channel_dropout=0.5,
        temporal_dropout=0.5,
        feature_layer_indices=(5, 7, 9),
    ),
    decoder=DecoderConfig(num_layers=8, width=24, kernel_size=7, dropout=0.1),
    diffusion=DiffusionConfig(snr_scale=1.0),
    training=TrainingConfig(
        cond_types=("full", "ant", "random_num_patch", "boundary05-", "segment=2", "segment=2"),
        loss_weights=LossWeights(
            encoder_ce=0.5,
            encoder_mse=0.1,
            encoder_boundary=0.0,
            decoder_ce=0.5,
            decoder_mse=0.1,
            decoder_boundary=0.1,
        ),
        learning_rate=5e-4,
        weight_decay=0.0,
        batch_size=4,
        epochs=7001,
        eval_every=100,
        boundary_smooth=20,
        soft_label=None,
        class_weighting=True,
    ),
    postprocess=PostprocessConfig(kind="median", value=30),
    sample_rate=8,
    temporal_aug=True,
)

# Spec §10: the paper's sizes plus DiffAct's GTEA settings. The cond types replace DiffAct's crashing 'zero'
# (our choice, as documented there); eval_every is not given anywhere, 100 is our choice.
_GTEA = ActFusionConfig(
    name="gtea",
    encoder=EncoderConfig(
        num_layers=10,
        width=64,
        kernel_size=5,
        dropout=0.5,
        channel_dropout=0.5,
        temporal_dropout=0.5,
        feature_layer_indices=(5, 7, 9),
    ),
    decoder=DecoderConfig(num_layers=8, width=24, kernel_size=5, dropout=0.1),
    diffusion=DiffusionConfig(snr_scale=0.5),
    training=TrainingConfig(
        cond_types=("full", "ant", "boundary03-", "segment=1", "segment=1", "random_patch"),
        loss_weights=LossWeights(
            encoder_ce=0.5,
            encoder_mse=0.1,
            encoder_boundary=0.0,
            decoder_ce=0.5,
            decoder_mse=0.1,
            decoder_boundary=0.1,
        ),
        learning_rate=5e-4,
        weight_decay=1e-6,
        batch_size=4,
        epochs=10000,
        eval_every=100,
        boundary_smooth=1,
        soft_label=1.4,
        class_weighting=True,
    ),
    postprocess=PostprocessConfig(kind="purge", value=3),
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
