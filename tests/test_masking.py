"""Each masking type of spec §4 checked against its definition on constructed label sequences."""

from __future__ import annotations

import random

import numpy as np
import pytest

from actfusion_sdk.errors import ConfigError
from actfusion_sdk.model.masking import (
    ANTICIPATION_RATIOS,
    MASK_TYPES,
    MaskChoices,
    build_mask,
    check_mask_types,
    draw_choices,
    draw_mask_type,
    visible_frames,
)

# Three segments: class 4 on [0, 30), class 1 on [30, 47), class 4 again on [47, 64), class 2 on [64, 73).
LABELS = np.array([4] * 30 + [1] * 17 + [4] * 17 + [2] * 9)
BOUNDARIES = np.linspace(0.0, 1.0, len(LABELS)).astype(np.float32)


def mask(kind: str, seed: int = 0, labels=LABELS, boundaries=BOUNDARIES, **kwargs) -> np.ndarray:
    return visible_frames(
        kind, labels, boundaries, rng=random.Random(seed), np_rng=np.random.default_rng(seed), **kwargs
    )


def test_full_keeps_everything():
    assert mask("full").all()


@pytest.mark.parametrize("seed", range(20))
def test_ant_hides_a_future_suffix(seed):
    visible = mask("ant", seed)
    observed = int(visible.sum())
    assert observed in {int(len(LABELS) * ratio) for ratio in ANTICIPATION_RATIOS}
    assert visible[:observed].all() and not visible[observed:].any()


@pytest.mark.parametrize(("kind", "threshold"), [("boundary03-", 0.3), ("boundary05-", 0.5)])
def test_boundary_hides_frames_at_or_above_threshold(kind, threshold):
    visible = mask(kind)
    assert np.array_equal(visible, threshold > BOUNDARIES)


@pytest.mark.parametrize("seed", range(20))
def test_segment_1_hides_exactly_one_present_class(seed):
    visible = mask("segment=1", seed)
    hidden_classes = set(LABELS[~visible].tolist())
    assert len(hidden_classes) == 1 and hidden_classes <= {1, 2, 4}
    # All frames of that class (every segment of it) are hidden, nothing else.
    assert np.array_equal(~visible, np.isin(LABELS, list(hidden_classes)))


def test_segment_2_hides_one_or_two_classes_and_picks_uniformly_per_class():
    picks = []
    for seed in range(300):
        visible = mask("segment=2", seed)
        hidden = set(LABELS[~visible].tolist())
        assert 1 <= len(hidden) <= 2
        assert np.array_equal(~visible, np.isin(LABELS, list(hidden)))
        picks.append(len(hidden))
    # Two independent picks among 3 classes coincide with probability 1/3.
    assert 0.2 < picks.count(1) / len(picks) < 0.47


def test_segment_ignores_padding_label():
    labels = np.array([3] * 5 + [-100] * 5)
    for seed in range(10):
        visible = mask("segment=1", seed, labels=labels, boundaries=np.zeros(10))
        assert np.array_equal(visible, labels != 3)


def hidden_patches(visible: np.ndarray, patch_size: int) -> list[int]:
    hidden = np.flatnonzero(~visible)
    patches = sorted(set((hidden // patch_size).tolist()))
    # Every hidden frame belongs to a completely hidden patch.
    assert len(hidden) == len(patches) * patch_size
    return patches


@pytest.mark.parametrize("seed", range(10))
def test_random_patch_hides_n_mask_whole_patches_and_never_the_tail(seed):
    visible = mask("random_patch", seed)  # L = 73: 7 full patches, tail [70, 73)
    patches = hidden_patches(visible, 10)
    assert len(patches) == 7 and visible[70:].all()
    visible = mask("random_patch", seed, n_mask=3)
    assert len(hidden_patches(visible, 10)) == 3


def test_random_patch_on_a_short_sequence_hides_nothing():
    assert mask("random_patch", labels=LABELS[:9], boundaries=BOUNDARIES[:9]).all()


def test_random_num_patch_hides_between_five_and_n_mask_patches():
    long_labels = np.zeros(400, np.int64)
    counts = set()
    for seed in range(60):
        visible = mask("random_num_patch", seed, labels=long_labels, boundaries=np.zeros(400), patch_size=8)
        counts.add(len(hidden_patches(visible, 8)))
    assert counts == set(range(5, 11))


def test_masks_are_reproducible_from_explicit_generators():
    for kind in MASK_TYPES:
        assert np.array_equal(mask(kind, seed=7), mask(kind, seed=7))


def test_zero_and_unknown_types_are_rejected():
    with pytest.raises(ConfigError, match="'zero'"):
        check_mask_types(["full", "zero"])
    with pytest.raises(ConfigError, match="unknown"):
        mask("boundary")
    with pytest.raises(ConfigError):
        check_mask_types([])


def test_draw_mask_type_respects_duplicates():
    rng = random.Random(0)
    draws = [draw_mask_type(["full", "ant", "ant"], rng) for _ in range(3000)]
    assert 0.6 < draws.count("ant") / len(draws) < 0.73


def test_build_mask_from_explicit_choices():
    def build(kind: str, choices: MaskChoices | None = None, **kwargs) -> np.ndarray:
        return build_mask(kind, LABELS, BOUNDARIES, choices or MaskChoices(), **kwargs)

    frames = np.arange(len(LABELS))
    assert build("full").all()
    assert np.array_equal(build("ant", MaskChoices(observed_ratio=0.3)), frames < 21)  # int(73·0.3)
    assert np.array_equal(build("boundary03-"), BOUNDARIES < 0.3)
    assert np.array_equal(build("segment=2", MaskChoices(hidden_classes=(1, 1))), LABELS != 1)
    assert np.array_equal(build("segment=2", MaskChoices(hidden_classes=(2, 4))), LABELS == 1)
    hidden = ((frames >= 8) & (frames < 16)) | ((frames >= 40) & (frames < 48))
    assert np.array_equal(build("random_patch", MaskChoices(hidden_patches=(5, 1)), patch_size=8), ~hidden)


def test_choices_are_drawn_in_the_official_order():
    """The same calls on the same generators as the official mask() (spec §4), nothing more."""
    rng, official = random.Random(3), random.Random(3)
    assert draw_choices("ant", LABELS, rng=rng, np_rng=np.random.default_rng(0)).observed_ratio == (
        official.choice(ANTICIPATION_RATIOS)
    )
    patches = draw_choices("random_num_patch", LABELS, rng=rng, np_rng=np.random.default_rng(0), n_mask=10)
    count = official.randint(5, 10)
    assert patches.hidden_patches == tuple(official.sample(range(7), min(count, 7)))
    patches = draw_choices("random_patch", LABELS, rng=rng, np_rng=np.random.default_rng(0), n_mask=3)
    assert patches.hidden_patches == tuple(official.sample(range(7), 3))
    assert rng.random() == official.random()
    np_rng, np_official = np.random.RandomState(5), np.random.RandomState(5)
    picks = draw_choices("segment=2", LABELS, rng=rng, np_rng=np_rng).hidden_classes
    assert picks == tuple(int(np_official.choice([1, 2, 4])) for _ in range(2))
    assert np_rng.random_sample() == np_official.random_sample()
