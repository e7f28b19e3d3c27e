"""Training masks of ActFusion (spec §4): which encoder input frames stay visible, which become mask tokens.

A mask is built in two steps: `draw_choices` makes the random choices of a masking type (`random.Random`
for 'ant' and the patches, a numpy Generator or RandomState for the segment picks, in the official order),
and `build_mask` turns explicit choices into the mask. Masks are boolean arrays [L] with True = visible;
the model swaps the hidden frames for its mask token with a plain select.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

MASK_TYPES = (
    "full",
    "ant",
    "boundary03-",
    "boundary05-",
    "segment=1",
    "segment=2",
    "random_patch",
    "random_num_patch",
)
ANTICIPATION_RATIOS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
BOUNDARY_THRESHOLDS = {"boundary03-": 0.3, "boundary05-": 0.5}
SEGMENT_PICKS = {"segment=1": 1, "segment=2": 2}
PATCH_TYPES = ("random_patch", "random_num_patch")
MIN_RANDOM_PATCHES = 5


@dataclass(frozen=True)
class MaskChoices:
    """The random choices behind one mask; each type reads only its own field (spec §4)."""

    observed_ratio: float = 1.0  # 'ant': the visible fraction α
    hidden_classes: tuple[int, ...] = ()  # 'segment=n': the n picks (they may repeat)
    hidden_patches: tuple[int, ...] = ()  # patch types: indices i of the hidden patches [iP, iP+P)


def check_mask_types(cond_types: Sequence[str]) -> None:
    """Raise ConfigError unless every type is one this implementation supports ('zero' is not, spec §4)."""
    if not cond_types:
        raise ConfigError("cond_types is empty; list at least one masking type, e.g. 'full'")
    for kind in cond_types:
        if kind == "zero":
            raise ConfigError(
                "masking type 'zero' crashes the official code and is unsupported; remove it from cond_types"
            )
        if kind not in MASK_TYPES:
            raise ConfigError(f"unknown masking type {kind!r}; choose from {', '.join(MASK_TYPES)}")


def draw_mask_type(cond_types: Sequence[str], rng: random.Random) -> str:
    """One type drawn uniformly from the list (duplicates add weight)."""
    return rng.choice(list(cond_types))


def present_classes(labels: np.ndarray) -> np.ndarray:
    """The classes present in a label sequence (not the padding −100): 'segment=n' picks among them."""
    labels = np.asarray(labels)
    return np.unique(labels[labels >= 0])


def patch_counts(kind: str, n_mask: int) -> range:
    """The numbers of patches a patch type hides before the cap at int(L/P) full patches (spec §4).

    'random_patch' hides n_mask; 'random_num_patch' draws randint(5, n_mask) inclusive (the official code
    would fail for n_mask < 5).
    """
    return range(n_mask if kind == "random_patch" else min(MIN_RANDOM_PATCHES, n_mask), n_mask + 1)


def draw_choices(
    kind: str,
    labels: np.ndarray,
    *,
    rng: random.Random,
    np_rng: np.random.Generator | np.random.RandomState,
    n_mask: int = 10,
    patch_size: int = 10,
) -> MaskChoices:
    """The random choices of masking type `kind` for one training stream, drawn as the official code does."""
    check_mask_types([kind])
    if kind == "ant":
        return MaskChoices(observed_ratio=rng.choice(ANTICIPATION_RATIOS))
    if kind in SEGMENT_PICKS:
        present = present_classes(labels)
        return MaskChoices(
            hidden_classes=tuple(int(np_rng.choice(present)) for _ in range(SEGMENT_PICKS[kind]))
        )
    if kind in PATCH_TYPES:
        counts = patch_counts(kind, n_mask)
        count = counts.start if kind == "random_patch" else rng.randint(counts.start, counts.stop - 1)
        available = len(labels) // patch_size  # the tail L mod P is never hidden
        return MaskChoices(hidden_patches=tuple(rng.sample(range(available), min(count, available))))
    return MaskChoices()


def build_mask(
    kind: str, labels: np.ndarray, boundaries: np.ndarray, choices: MaskChoices, *, patch_size: int = 10
) -> np.ndarray:
    """The visibility mask [L] (True = visible) that masking type `kind` makes from explicit choices."""
    check_mask_types([kind])
    labels = np.asarray(labels)
    length = len(labels)
    if kind == "ant":
        return np.arange(length) < int(length * choices.observed_ratio)
    if kind in BOUNDARY_THRESHOLDS:
        return np.asarray(boundaries) < BOUNDARY_THRESHOLDS[kind]
    if kind in SEGMENT_PICKS:
        return ~np.isin(labels, choices.hidden_classes)
    visible = np.ones(length, dtype=bool)  # 'full', or the patch types
    for index in choices.hidden_patches:
        visible[index * patch_size : (index + 1) * patch_size] = False
    return visible


def visible_frames(
    kind: str,
    labels: np.ndarray,
    boundaries: np.ndarray,
    *,
    rng: random.Random,
    np_rng: np.random.Generator | np.random.RandomState,
    n_mask: int = 10,
    patch_size: int = 10,
) -> np.ndarray:
    """The visibility mask [L] (True = visible) of one training stream for masking type `kind` (spec §4)."""
    choices = draw_choices(kind, labels, rng=rng, np_rng=np_rng, n_mask=n_mask, patch_size=patch_size)
    return build_mask(kind, labels, boundaries, choices, patch_size=patch_size)
