"""The model card and the one schema its JSON (model.json) is checked against.

The schema is the card's own type hints, down through `ActFusionConfig`'s nested dataclasses: every field
is checked for its JSON type (an int is not a bool, a float is finite, a tuple is a list of its item type,
a Literal is one of its values), then against `BOUNDS` (sizes that would allocate absurd amounts of memory
are refused before any model is built) and `RULES` (what a type cannot say: unique class names, a sha256 of
64 hex digits). A field added to the dataclasses is checked by its type hint with no change here; give it a
bound or a rule below when its type alone is not enough. Unknown top-level keys are ignored (a newer SDK may
add fields); unknown keys inside `config` are refused (they would be silently lost). `features` is checked
here as an object only: its content belongs to `actfusion_sdk.features`, which checks it where the settings
are used (`VideoFeaturizer.feature_settings`, before any video is read). `sha256` is required: a saved card
that cannot be verified against its weights is refused.
Every violation is one `ConfigError` naming the field, the value found and what is expected;
`checkpoint.load_card` turns it into a `WeightsError` naming the file.
"""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ..errors import ConfigError
from ..limits import MAX_FEATURE_RATE
from .config import ActFusionConfig

FORMAT_VERSION = 1
MAX_CLASSES = 10_000
_INT_RANGE = (-(2**31), 2**31 - 1)  # any other integer field: what a C int holds
_ITEM = re.compile(r"(\[\d+\])+$")  # a sequence item's path suffix: items share their sequence's bounds

_LOSS_TERMS = (
    "encoder_ce",
    "encoder_mse",
    "encoder_boundary",
    "decoder_ce",
    "decoder_mse",
    "decoder_boundary",
)
# Inclusive bounds (low, high) of numeric fields, by dotted path; a sequence's items share its bounds.
BOUNDS: dict[str, tuple[float, float]] = {
    "fps": (1e-3, MAX_FEATURE_RATE),
    "config.sample_rate": (1, 1000),
    "config.encoder.num_layers": (1, 32),
    "config.encoder.width": (1, 4096),
    "config.encoder.kernel_size": (1, 63),
    "config.encoder.input_dim": (1, 16384),
    "config.encoder.dropout": (0.0, 1.0),
    "config.encoder.channel_dropout": (0.0, 1.0),
    "config.encoder.temporal_dropout": (0.0, 1.0),
    "config.encoder.feature_layer_indices": (-2, 31),
    "config.decoder.num_layers": (1, 32),
    "config.decoder.width": (1, 4096),
    "config.decoder.kernel_size": (1, 63),
    "config.decoder.dropout": (0.0, 1.0),
    "config.decoder.time_emb_dim": (4, 8192),
    "config.diffusion.timesteps": (1, 100_000),
    "config.diffusion.sampling_timesteps": (1, 100_000),
    "config.diffusion.eta": (0.0, 100.0),
    "config.diffusion.snr_scale": (1e-6, 1e6),
    "config.training.n_mask": (0, 100_000),
    "config.training.patch_size": (1, 100_000),
    "config.training.batch_size": (1, 100_000),
    "config.training.epochs": (0, 10_000_000),
    "config.training.eval_every": (1, 10_000_000),
    "config.training.learning_rate": (1e-12, 10.0),
    "config.training.weight_decay": (0.0, 10.0),
    "config.training.boundary_smooth": (0.0, 1e6),
    "config.training.soft_label": (1e-6, 1e6),
    "config.training.ema_decay": (0.0, 1.0),
    "config.training.speed_range": (1e-3, 1e3),
    **{f"config.training.loss_weights.{term}": (0.0, 1e6) for term in _LOSS_TERMS},
    "config.postprocess.value": (0, 100_000),
}


@dataclass(frozen=True)
class Rule:
    """A check a type cannot express: `holds(value)` must be true; `expected` says what it asks for."""

    holds: Callable[[Any], bool]
    expected: str


def _class_names_ok(names: Any) -> bool:
    return (
        0 < len(names) <= MAX_CLASSES
        and all(name.strip() for name in names)
        and len(set(names)) == len(names)
    )


RULES: dict[str, Rule] = {
    "classes": Rule(
        _class_names_ok, f"a non-empty list (at most {MAX_CLASSES}) of unique, non-empty class names"
    ),
    "sha256": Rule(
        lambda digest: re.fullmatch("[0-9a-f]{64}", digest) is not None,
        "64 lowercase hexadecimal digits (the sha256 of model.safetensors)",
    ),
}


@dataclass(frozen=True)
class ModelCard:
    """What a saved model is: configuration, class names, feature-extractor settings, weights checksum."""

    format_version: int
    config: ActFusionConfig
    classes: tuple[str, ...]
    features: dict[str, Any] | None = None  # feature-extractor settings, owned by actfusion_sdk.features
    fps: float | None = None
    sha256: str = ""  # of the safetensors file; filled in by save_model
    description: str = ""
    training: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.classes, str):  # tuple("abcd") would be four classes
            raise ConfigError(_problem("classes", self.classes, RULES["classes"].expected))
        object.__setattr__(self, "classes", tuple(self.classes))
        check_value(self.classes, tuple[str, ...], "classes")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "config": self.config.to_dict(),
            "classes": list(self.classes),
            "features": self.features,
            "fps": self.fps,
            "sha256": self.sha256,
            "description": self.description,
            "training": self.training,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        """A card from its JSON document, checked field by field (ConfigError names the first bad one)."""
        if isinstance(data, Mapping) and "format_version" in data:
            version = data["format_version"]
            if type(version) is not int:
                raise ConfigError(_problem("format_version", version, f"the integer {FORMAT_VERSION}"))
            if version != FORMAT_VERSION:
                raise ConfigError(
                    f"format_version {version} is not supported (this SDK reads {FORMAT_VERSION}); "
                    "upgrade actfusion-sdk or re-save the model"
                )
        check_value(data, ModelCard, "")
        if "sha256" not in data:
            raise ConfigError(f"sha256 is missing; expected {RULES['sha256'].expected} (re-save the model)")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["config"] = ActFusionConfig.from_dict(data["config"])
        return cls(**values)


def check_value(value: Any, annotation: Any, path: str) -> None:
    """Raise ConfigError unless `value` (parsed JSON) fits `annotation` and the bounds and rules of `path`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        (kind,) = [arg for arg in args if arg is not type(None)]  # the schema's unions are `X | None`
        check_value(value, kind, path)
        return
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise ConfigError(_problem(path, value, f"one of {', '.join(map(repr, args))}"))
    elif is_dataclass(annotation):
        _check_object(value, annotation, path)
    elif origin is tuple:
        _check_sequence(value, args, path)
    elif origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(_problem(path, value, "an object"))
    elif annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(_problem(path, value, "true or false"))
    elif annotation in (int, float):
        _check_number(value, annotation, path)
    elif annotation is str and not isinstance(value, str):
        raise ConfigError(_problem(path, value, _wanted(path, "a string")))
    rule = RULES.get(path)
    if rule is not None and not rule.holds(value):
        raise ConfigError(_problem(path, value, rule.expected))


def _check_object(value: Any, schema: type, path: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(_problem(path or "a model card", value, "an object"))
    known = {f.name for f in fields(schema)}
    unknown = sorted(str(key) for key in value if key not in known)
    if unknown and path:  # the top level tolerates keys of newer SDKs; a nested unknown key would be lost
        names = ", ".join(spec.name for spec in fields(schema))
        raise ConfigError(f"{path} has the unknown key {unknown[0]!r}; expected keys: {names}")
    hints = get_type_hints(schema)
    for spec in fields(schema):
        where = f"{path}.{spec.name}" if path else spec.name
        if spec.name in value:
            check_value(value[spec.name], hints[spec.name], where)
        elif spec.default is MISSING and spec.default_factory is MISSING:
            raise ConfigError(f"{where} is missing; expected {_expectation(hints[spec.name])}")


def _check_sequence(value: Any, args: tuple[Any, ...], path: str) -> None:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(_problem(path, value, _wanted(path, f"a list of {_kind_name(args[0])}s")))
    if len(args) == 2 and args[1] is Ellipsis:
        items = [args[0]] * len(value)
    elif len(value) != len(args):
        raise ConfigError(_problem(path, value, f"a list of {len(args)} items"))
    else:
        items = list(args)
    for index, (item, kind) in enumerate(zip(value, items, strict=True)):
        check_value(item, kind, f"{path}[{index}]")


def _check_number(value: Any, kind: type, path: str) -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind is int and not is_int:
        raise ConfigError(_problem(path, value, "an integer"))
    if kind is float and not (is_int or isinstance(value, float)):
        raise ConfigError(_problem(path, value, "a number"))
    low, high = BOUNDS.get(_ITEM.sub("", path), _INT_RANGE if kind is int else (-math.inf, math.inf))
    if not ((is_int or math.isfinite(value)) and low <= value <= high):
        wanted = "a finite number" if (low, high) == (-math.inf, math.inf) else f"a number in [{low}, {high}]"
        if kind is int:
            wanted = f"an integer in [{low}, {high}]"
        raise ConfigError(_problem(path, value, wanted))


def _kind_name(annotation: Any) -> str:
    names = {int: "integer", float: "number", str: "string", bool: "boolean"}
    if is_dataclass(annotation) or get_origin(annotation) is dict:
        return "object"
    if get_origin(annotation) is tuple:
        return "list"
    return names.get(annotation, "value")


def _expectation(annotation: Any) -> str:
    name = _kind_name(annotation)
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _wanted(path: str, by_type: str) -> str:
    """What `path` expects: its rule's words where it has a rule, else what its type says."""
    rule = RULES.get(path)
    return by_type if rule is None else rule.expected


def _problem(path: str, value: Any, expected: str) -> str:
    """`path` is `value` (its JSON kind); expected `expected`."""
    # null, true and false as the file spells them
    shown = json.dumps(value) if value is None or isinstance(value, bool) else repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{path} is {shown} ({_json_kind(value)}); expected {expected}"


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string")):
        if isinstance(value, kind):
            return name
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    return type(value).__name__
