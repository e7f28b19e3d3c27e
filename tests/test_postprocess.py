"""Post-processing (spec §3, §10): median filter and nearest upsampling against scipy, purge by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.ndimage import median_filter

from actfusion_sdk.errors import InputError
from actfusion_sdk.postprocess import (
    median_filter_probs,
    purge,
    restore_full_sequence,
    upsample_indices,
)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 15, 30])
@pytest.mark.parametrize("length", [1, 2, 5, 14, 29, 64])
def test_median_filter_matches_scipy_reflect(size, length):
    rng = np.random.default_rng(size * 100 + length)
    probs = rng.random((3, length)).astype(np.float32)
    probs[1] = np.round(probs[1] * 4) / 4  # ties
    # A 2-D call takes scipy's general n-d path; its 1-D fast path (scipy >= 1.15) extends differently in
    # the corner length == (size - 1) // 2 < size // 2 (scipy gh-23293), where the documented mode is kept.
    expected = median_filter(probs, size=(1, size), mode="reflect")
    np.testing.assert_array_equal(median_filter_probs(probs, size), expected)


def test_even_median_window_takes_the_upper_median():
    # size 4 at i: window [i-2, i+1]; at i = 2 the window is 0,1,2,3 -> sorted index 2 -> 2.
    assert median_filter_probs(np.arange(6, dtype=np.float64)[None], 4)[0, 2] == 2.0


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # a short middle segment is split at start + duration//2 between its neighbours
        ([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2, 2], [0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2]),
        # a short first segment takes the next label
        ([1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]),
        # a short last segment takes the previous label, except frame T-1 (its end is T-1)
        ([0, 0, 0, 0, 0, 0, 3, 3, 3], [0, 0, 0, 0, 0, 0, 0, 0, 3]),
        # segments are found once: the neighbours' original labels are used
        ([0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3], [0, 0, 0, 0, 2, 3, 3, 3, 3, 3, 3]),
        # a single segment has nothing to merge into
        ([5, 5], [5, 5]),
    ],
)
def test_purge_follows_spec_section_10(labels, expected):
    assert purge(np.array(labels), 3).tolist() == expected


def official_restore(values: np.ndarray, full_length: int, sample_rate: int) -> np.ndarray:
    """restore_full_sequence as spec §3 describes it, with scipy's nearest interpolation."""
    ticks = np.arange(sample_rate // 2, full_length - (sample_rate - 1) // 2, sample_rate)
    full = np.zeros(full_length)
    full[: ticks[0]] = values[0]
    full[ticks[-1] :] = values[-1]
    if len(ticks) > 1:
        full[ticks[0] : ticks[-1]] = interp1d(ticks, values, kind="nearest")(np.arange(ticks[0], ticks[-1]))
    return full


@pytest.mark.parametrize("sample_rate", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("full_length", [8, 9, 23, 64, 257])
def test_restore_full_sequence_matches_scipy_nearest(sample_rate, full_length):
    grid = full_length // sample_rate
    values = np.random.default_rng(full_length).permutation(grid).astype(np.float64)
    np.testing.assert_array_equal(
        restore_full_sequence(values, full_length, sample_rate),
        official_restore(values, full_length, sample_rate),
    )


def test_upsampling_ties_go_to_the_lower_tick():
    # sr = 4: ticks 2, 6, 10; frame 4 is half-way between ticks 2 and 6 -> the lower one (sample 0).
    assert upsample_indices(3, 12, 4).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]


def test_restore_rejects_a_grid_that_does_not_fit():
    with pytest.raises(InputError, match="do not fit"):
        upsample_indices(5, 12, 4)
