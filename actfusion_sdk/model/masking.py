"""Training masks of ActFusion (spec §4): which encoder input frames stay visible, which become mask tokens.

Every function takes its random sources explicitly (`random.Random` for the type, 'ant' and the patches,
a numpy Generator or RandomState for the segment picks, as the official code draws them), so runs are
reproducible. Masks are boolean arrays [L] with True = visible; the model swaps the hidden frames for its
mask token with a plain select.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

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
MIN_RANDOM_PATCHES = 5


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


def anticipation_mask(length: int, rng: random.Random) -> np.ndarray:
    """'ant': the first int(L·α) frames are visible, α ~ U{0.2, ..., 0.8}; the future is hidden."""
    observed = int(length * rng.choice(ANTICIPATION_RATIOS))
    return np.arange(length) < observed


def boundary_mask(boundaries: np.ndarray, threshold: float) -> np.ndarray:
    """'boundaryXX-': frames whose smoothed boundary value is below the threshold stay visible."""
    return np.asarray(boundaries) < threshold


def segment_mask(
    labels: np.ndarray, picks: int, np_rng: np.random.Generator | np.random.RandomState
) -> np.ndarray:
    """'segment=n': n independent uniform picks among the classes present; all frames of them are hidden."""
    labels = np.asarray(labels)
    present = np.unique(labels[labels >= 0])
    hidden = [np_rng.choice(present) for _ in range(picks)]
    return ~np.isin(labels, hidden)


def patch_mask(length: int, patches: int, patch_size: int, rng: random.Random) -> np.ndarray:
    """Hide `patches` distinct patches [iP, iP+P) among the int(L/P) full ones (the tail is never hidden)."""
    available = length // patch_size
    visible = np.ones(length, dtype=bool)
    for index in rng.sample(range(available), min(patches, available)):
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
    check_mask_types([kind])
    length = len(labels)
    if kind == "full":
        return np.ones(length, dtype=bool)
    if kind == "ant":
        return anticipation_mask(length, rng)
    if kind in BOUNDARY_THRESHOLDS:
        return boundary_mask(boundaries, BOUNDARY_THRESHOLDS[kind])
    if kind in SEGMENT_PICKS:
        return segment_mask(labels, SEGMENT_PICKS[kind], np_rng)
    if kind == "random_patch":
        return patch_mask(length, n_mask, patch_size, rng)
    # 'random_num_patch': randint(5, n_mask) inclusive patches (the official code would fail for n_mask < 5).
    return patch_mask(length, rng.randint(min(MIN_RANDOM_PATCHES, n_mask), n_mask), patch_size, rng)
