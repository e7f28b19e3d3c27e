"""Run-length encoding of frame labels: the one place where maximal runs of equal labels are found."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import NamedTuple

import numpy as np


class Runs(NamedTuple):
    """Maximal runs of equal values: run i covers frames [starts[i], ends[i]) and holds values[i]."""

    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray


def runs(labels: Sequence[Hashable] | np.ndarray) -> Runs:
    """Run-length encode a 1-D label sequence; `ends` are exclusive, so the last run ends at len(labels).

    An array keeps its dtype; any other sequence is compared element by element as Python objects, so
    labels of any hashable type (names, ids) compare by equality.
    """
    if isinstance(labels, np.ndarray):
        values = labels
    else:
        values = np.fromiter(labels, dtype=object, count=len(labels))
    if len(values) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Runs(empty, empty, values)
    starts = np.concatenate([[0], np.flatnonzero(values[1:] != values[:-1]) + 1])
    ends = np.append(starts[1:], len(values))
    return Runs(starts, ends, values[starts])
