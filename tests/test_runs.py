"""The run-length encoder shared by metrics, post-processing and results."""

from __future__ import annotations

import numpy as np

from actfusion_sdk.runs import runs


def test_runs_are_maximal_with_exclusive_ends():
    found = runs(np.array([3, 3, 0, 0, 0, 3]))
    assert found.starts.tolist() == [0, 2, 5]
    assert found.ends.tolist() == [2, 5, 6]
    assert found.values.tolist() == [3, 0, 3]


def test_runs_of_names_and_of_nothing():
    found = runs(["a", "b", "b", 1, 1.0])  # compared as Python objects: 1 == 1.0
    assert found.starts.tolist() == [0, 1, 3] and found.ends.tolist() == [1, 3, 5]
    assert found.values.tolist() == ["a", "b", 1]
    empty = runs([])
    assert len(empty.starts) == len(empty.ends) == len(empty.values) == 0
    assert empty.starts.dtype == empty.ends.dtype == np.int64
