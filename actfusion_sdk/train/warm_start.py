"""Starting a run from trained weights (`train(init=...)`, `actfusion train --init`) for another class list.

Every tensor whose shape does not depend on the number of classes is copied from the source model; the ones
that do (the encoder's class projection, the decoder's class input and output, found by building the model
with two class counts) keep their fresh initialisation unless the source has the very same class names in the
same order. The source is one of our models (its card names its classes and feature settings) or an official
raw state_dict (no class names: its class-dependent tensors are always re-initialised).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError
from ..fileio import sha256_file
from ..model.actfusion import ActFusion
from ..model.checkpoint import OFFICIAL_SUFFIXES, load_model, load_official_state_dict
from ..model.config import ActFusionConfig

BUNDLED_NAME = "demo"  # `--init demo`: the bundled demo model (a path of that name takes precedence)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmStart:
    """Where a run's initial weights came from and which tensors were copied or re-initialised."""

    source: str
    sha256: str
    source_classes: tuple[str, ...] | None  # None for an official state_dict (its card has no names)
    copied: tuple[str, ...]
    reinitialised: tuple[str, ...]

    def summary(self) -> str:
        """One line for the log: counts, and the names of the re-initialised tensors."""
        names = f": {', '.join(self.reinitialised)}" if self.reinitialised else ""
        return (
            f"initialised from {self.source}: copied {len(self.copied)} tensors, "
            f"re-initialised {len(self.reinitialised)}{names}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "source_classes": None if self.source_classes is None else list(self.source_classes),
            "copied": len(self.copied),
            "reinitialised": list(self.reinitialised),
        }


@dataclass(frozen=True)
class _Source:
    state_dict: Mapping[str, torch.Tensor]
    classes: tuple[str, ...] | None
    features: dict[str, Any] | None
    sha256: str


def resolve_init(path: str | os.PathLike[str]) -> Path:
    """The weights `path` names; the word 'demo' (when no such path exists) is the bundled demo model."""
    from ..weights import BUNDLED_DEFAULT

    path = Path(path)
    if str(path) == BUNDLED_NAME and not path.exists():
        return BUNDLED_DEFAULT
    return path


def class_dependent_keys(config: ActFusionConfig) -> frozenset[str]:
    """The state_dict keys whose shapes change with the number of classes (compared at two class counts)."""
    first, second = ActFusion(config, 2).state_dict(), ActFusion(config, 3).state_dict()
    return frozenset(key for key, tensor in first.items() if tensor.shape != second[key].shape)


def warm_start(
    model: ActFusion,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    feature_settings: Mapping[str, Any] | None = None,
) -> WarmStart:
    """Copy every class-independent tensor of the model at `path` into `model` (whose classes are
    `classes`); class-dependent ones are copied only when the source has the same class names.

    A class-independent tensor missing from the source, or of another shape, is a WeightsError: the source has
    another architecture (pass its configuration, e.g. `--config SOURCE/model.json`). Features made with other
    settings than the source's are allowed (warned): the copied weights then start from unfamiliar inputs.
    """
    path = resolve_init(path)
    source = _read_source(path)
    same_classes = source.classes is not None and tuple(source.classes) == tuple(classes)
    dependent = class_dependent_keys(model.config)
    target = model.state_dict()
    problems = [
        f"{key} {list(source.state_dict[key].shape)} where this configuration has {list(tensor.shape)}"
        if key in source.state_dict
        else f"{key} missing"
        for key, tensor in target.items()
        if key not in dependent
        and (key not in source.state_dict or source.state_dict[key].shape != tensor.shape)
    ]
    if problems:
        raise WeightsError(
            f"--init {path} does not fit the configuration {model.config.name!r}: "
            f"{'; '.join(problems[:3])}{' …' if len(problems) > 3 else ''}; train with the configuration it "
            "was trained with (--config MODEL/model.json, or the preset of an official checkpoint)"
        )
    if (
        feature_settings is not None
        and source.features is not None
        and dict(feature_settings) != source.features
    ):
        log.warning(
            "the features of this dataset were made with other settings than those of --init %s; its "
            "weights start from inputs they were not trained on",
            path,
        )
    copied = [key for key in target if key not in dependent or same_classes]
    model.load_state_dict({**target, **{key: source.state_dict[key] for key in copied}})
    return WarmStart(
        source=str(path),
        sha256=source.sha256,
        source_classes=source.classes,
        copied=tuple(copied),
        reinitialised=tuple(key for key in target if key not in copied),
    )


def _read_source(path: Path) -> _Source:
    """The state_dict, class names and feature settings of our model or of an official state_dict."""
    if path.suffix in OFFICIAL_SUFFIXES:
        return _Source(load_official_state_dict(path), None, None, sha256_file(path))
    loaded = load_model(path)
    card = loaded.card
    return _Source(loaded.model.state_dict(), card.classes, card.features, card.sha256)
