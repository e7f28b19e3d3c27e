"""Checkpoints: our format (safetensors weights + JSON model card, sha256-verified) and official
raw state_dicts. Official files (`.model`, `.pth`, `.pt`) are read only with
`torch.load(..., weights_only=True)`, so a file that needs code to unpickle is refused.
Every failure is a WeightsError that names the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch

from ..errors import ConfigError, WeightsError
from ..fileio import atomic_write, sha256_file
from .actfusion import ActFusion
from .card import FORMAT_VERSION, ModelCard
from .config import PRESETS, ActFusionConfig, preset

__all__ = ["FORMAT_VERSION", "LoadedModel", "ModelCard", "load_card", "load_model", "save_model"]

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model.json"
OFFICIAL_SUFFIXES = (".model", ".pth", ".pt")
CLASS_KEY = "encoder.conv_out.weight"  # its first dimension is the class count
# What to do with an official checkpoint where a model card is needed.
CONVERT_HINT = (
    "convert it first: `actfusion import-checkpoint CKPT --mapping mapping.txt --preset P --i3d-weights RGB "
    "--flow-weights FLOW --out DIR` (or load_model(CKPT, preset=P, classes=[names]) then save_model in "
    "Python), and use DIR as the weights"
)


class LoadedModel(NamedTuple):
    model: ActFusion
    card: ModelCard


def save_model(model: ActFusion, card: ModelCard, path_dir: str | os.PathLike[str]) -> Path:
    """Write <dir>/model.safetensors and <dir>/model.json (with the weights' sha256), each atomically."""
    from safetensors.torch import save

    if card.config != model.config:
        raise ConfigError(
            "the model card's config differs from the model's config; build the card from model.config"
        )
    if len(card.classes) != model.num_classes:
        raise ConfigError(
            f"the model card names {len(card.classes)} classes but the model has {model.num_classes}"
        )
    directory = Path(path_dir)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path, card_path = directory / WEIGHTS_NAME, directory / CARD_NAME
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    payload = _sorted_header(
        save(tensors, metadata={"format": "actfusion", "format_version": str(FORMAT_VERSION)})
    )
    signed = replace(card, sha256=hashlib.sha256(payload).hexdigest())
    with atomic_write(weights_path) as stream:
        stream.write(payload)
    with atomic_write(card_path, "w") as stream:
        stream.write(json.dumps(signed.to_dict(), indent=2) + "\n")
    return directory


def _sorted_header(payload: bytes) -> bytes:
    """`payload` with its JSON header's keys sorted, so that equal weights give equal bytes (and sha256).

    safetensors writes the metadata in hash-map order, which changes from one process to the next. The sorted
    header has the same length (same keys and values), so the tensor offsets stay valid.
    """
    size = int.from_bytes(payload[:8], "little")
    header = json.dumps(json.loads(payload[8 : 8 + size]), separators=(",", ":"), sort_keys=True).encode()
    if len(header) > size:  # not the compact ASCII header safetensors writes: leave it as it is
        return payload
    return payload[:8] + header.ljust(size, b" ") + payload[8 + size :]


def load_model(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    preset: str | ActFusionConfig | None = None,
    classes: Sequence[str] | int | None = None,
) -> LoadedModel:
    """Load a model in eval mode from our format (a directory, its model.json or its model.safetensors)
    or from an official raw state_dict (.model/.pth/.pt; pass preset=, and classes= names or a count).
    """
    path = Path(path)
    if path.suffix in OFFICIAL_SUFFIXES:
        loaded = _load_official(path, preset, classes)
    else:
        if preset is not None or classes is not None:
            raise ConfigError(
                "preset= and classes= are for official state_dicts; a model card already names them"
            )
        loaded = _load_ours(path)
    if device is not None:
        loaded.model.to(device)
    loaded.model.eval()
    return loaded


def load_official_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read an official raw state_dict with torch.load(weights_only=True); unwraps {'model': state_dict}."""
    path = Path(path)
    _check_torch_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as err:  # torch.load raises many types (UnpicklingError, RuntimeError, KeyError, EOFError)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "Weights only load failed" in str(err):
            raise WeightsError(
                f"{path} cannot be loaded safely: it is a pickle that needs code to load ({reason}); "
                f"re-save it as a plain state_dict of tensors"
            ) from err
        raise WeightsError(f"{path} is truncated or corrupt ({type(err).__name__}: {reason})") from err
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state_dict of tensors")
    return obj


def _check_torch_file(path: Path) -> None:
    """Tell 'not a checkpoint' from 'truncated' before torch.load, whose errors do not say which."""
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        raise WeightsError(f"{path} is empty")
    if head == b"PK\x03\x04":
        if not zipfile.is_zipfile(path):
            raise WeightsError(f"{path} is truncated or corrupt (its zip archive has no central directory)")
    elif head[:1] != b"\x80":  # a legacy torch.save file starts with a pickle protocol header
        raise WeightsError(f"{path} is not a PyTorch checkpoint (it starts with {head!r})")


def load_card(path: str | os.PathLike[str]) -> ModelCard:
    """The model card of a model in our format (a directory, its model.json or its model.safetensors),
    read without loading (or verifying) the weights."""
    card_path = _card_path(Path(path))
    if not card_path.is_file():
        raise WeightsError(f"{card_path} does not exist (a saved model needs {CARD_NAME})")
    return _read_card(card_path)


def _card_path(path: Path) -> Path:
    if path.is_dir():
        return path / CARD_NAME
    if path.suffix in (".json", ".safetensors"):
        return path.with_suffix(".json")
    raise WeightsError(
        f"{path} is not a model: give a directory with {CARD_NAME}, a .json model card, "
        "a .safetensors file, "
        f"or an official {'/'.join(OFFICIAL_SUFFIXES)} state_dict"
    )


def _read_card(card_path: Path) -> ModelCard:
    try:
        text = card_path.read_text(encoding="utf-8")
    except OSError as err:
        raise WeightsError(f"cannot read the model card {card_path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise WeightsError(f"{card_path} is not a valid model card: not UTF-8 text ({err.reason})") from err
    try:
        return ModelCard.from_dict(json.loads(text))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # ValueError: JSON and ConfigError
        raise WeightsError(f"{card_path} is not a valid model card: {err}") from err


def _load_ours(path: Path) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    card_path = _card_path(path)
    weights_path = card_path.with_suffix(".safetensors")
    for required in (card_path, weights_path):
        if not required.is_file():
            raise WeightsError(
                f"{required} does not exist (a saved model needs both {CARD_NAME} and {WEIGHTS_NAME})"
            )
    card = _read_card(card_path)
    digest = sha256_file(weights_path)
    if digest != card.sha256:
        raise WeightsError(
            f"{weights_path} does not match its model card (sha256 {digest[:12]}… != {card.sha256[:12]}…): "
            f"the file is truncated or was modified; re-download or re-save it"
        )
    try:
        state_dict = load_file(str(weights_path), device="cpu")
    except SafetensorError as err:
        raise WeightsError(f"{weights_path} is not a readable safetensors file: {err}") from err
    return LoadedModel(_model_holding(card.config, len(card.classes), state_dict, weights_path), card)


def _load_official(
    path: Path, preset_or_config: str | ActFusionConfig | None, classes: Sequence[str] | int | None
) -> LoadedModel:
    state_dict = load_official_state_dict(path)
    if CLASS_KEY not in state_dict or state_dict[CLASS_KEY].dim() != 3:
        raise WeightsError(f"{path} is not an ActFusion state_dict (no {CLASS_KEY} [classes, width, 1])")
    file_classes = state_dict[CLASS_KEY].shape[0]
    if preset_or_config is None:
        raise WeightsError(
            f"{path} is an official ActFusion checkpoint, which names neither its classes nor its preset "
            f"({_fit_hint(state_dict)}); {CONVERT_HINT}"
        )
    config = preset(preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    if classes is None:
        names = tuple(f"class_{i}" for i in range(file_classes))
    else:
        names = tuple(f"class_{i}" for i in range(classes)) if isinstance(classes, int) else tuple(classes)
        if len(names) != file_classes:
            raise WeightsError(
                f"{path} has {file_classes} classes ({CLASS_KEY} {list(state_dict[CLASS_KEY].shape)}), "
                f"but {len(names)} were given; pass the class list it was trained with"
            )
    model = _model_holding(config, file_classes, state_dict, path)
    card = ModelCard(
        format_version=FORMAT_VERSION,
        config=config,
        classes=names,
        sha256=sha256_file(path),
        description=f"official ActFusion state_dict {path.name}",
    )
    return LoadedModel(model, card)


def _mismatches(model: ActFusion, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """How `state_dict` differs from `model`'s: missing or unexpected keys, shapes."""
    expected = model.state_dict()
    problems = []
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    if missing:
        problems.append(
            f"missing keys {missing[:3]}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        )
    if unexpected:
        problems.append(
            f"unexpected keys {unexpected[:3]}"
            + (f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else "")
        )
    problems.extend(
        f"key {key}: file has shape {list(state_dict[key].shape)}, "
        f"preset {model.config.name!r} expects {list(shape.shape)}"
        for key, shape in expected.items()
        if key in state_dict and state_dict[key].shape != shape.shape
    )
    return problems


def _fit_hint(state_dict: Mapping[str, torch.Tensor]) -> str:
    file_classes = state_dict[CLASS_KEY].shape[0]
    fitting = [
        name
        for name, config in PRESETS.items()
        if not _mismatches(_shapes_only(config, file_classes), state_dict)
    ]
    if fitting:
        return f"the file fits preset {' or '.join(repr(name) for name in fitting)}"
    return f"it fits none of the presets ({', '.join(PRESETS)}); pass the ActFusionConfig it was trained with"


def _shapes_only(config: ActFusionConfig, num_classes: int) -> ActFusion:
    """The model of `config` on the meta device: its parameters' shapes without their memory."""
    with torch.device("meta"):
        return ActFusion(config, num_classes)


def _model_holding(
    config: ActFusionConfig, num_classes: int, state_dict: Mapping[str, torch.Tensor], source: Path
) -> ActFusion:
    """The model of `config` with `state_dict` loaded strictly. The shapes are compared on the meta device
    first, so a configuration that does not match the file costs no memory (a tampered card cannot make the
    loader allocate a model far larger than its weights)."""
    if CLASS_KEY not in state_dict:
        raise WeightsError(f"{source} is not an ActFusion state_dict (no {CLASS_KEY})")
    problems = _mismatches(_shapes_only(config, num_classes), state_dict)
    if problems:
        raise WeightsError(
            f"{source} does not match preset {config.name!r}: {'; '.join(problems[:3])}"
            f"{' …' if len(problems) > 3 else ''}; {_fit_hint(state_dict)}"
        )
    model = ActFusion(config, num_classes)
    model.load_state_dict(state_dict, strict=True)
    return model
