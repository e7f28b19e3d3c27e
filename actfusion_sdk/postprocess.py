"""Post-processing of frame predictions (spec §3, §10), in numpy: median filter of the class probabilities,
purge of short segments, and nearest upsampling from the sampled grid back to the full frame rate.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .metrics import segments

_MEDIAN_CHUNK_ELEMENTS = 1 << 22  # bound on window elements materialised at once by median_filter_probs


def median_filter_probs(probs: np.ndarray, size: int) -> np.ndarray:
    """Per-class running median over time of probs [nc, L], with scipy.ndimage.median_filter semantics.

    Mode 'reflect' (edge sample repeated: d c b a | a b c d | d c b a), window
    [i − size//2, i − size//2 + size − 1]; for even sizes that is [i − s/2, i + s/2 − 1]
    and the upper median (sorted index size//2) is taken.
    """
    if probs.ndim != 2:
        raise InputError(f"median_filter_probs expects [classes, frames], got shape {probs.shape}")
    if size < 1:
        raise InputError(f"median filter size must be >= 1, got {size}")
    left = size // 2
    # numpy's 'symmetric' padding is scipy's 'reflect' (reflecting again when the pad exceeds the length).
    padded = np.pad(probs, ((0, 0), (left, size - 1 - left)), mode="symmetric")
    windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=1)  # [nc, L, size], a view
    out = np.empty_like(probs)
    rows = max(1, _MEDIAN_CHUNK_ELEMENTS // max(1, probs.shape[1] * size))
    for start in range(0, probs.shape[0], rows):
        block = np.partition(windows[start : start + rows], left, axis=-1)
        out[start : start + rows] = block[..., left]
    return out


def purge(labels: np.ndarray, max_duration: int) -> np.ndarray:
    """Relabel segments with end − start <= max_duration (spec §10): the first takes the next label, the
    last the previous label, others split at start + duration//2 between the neighbours. Segments are found
    once, before any relabelling, with the metrics' end convention (spec §10 refers to §6): the last segment
    ends at len − 1, so that frame keeps its label.
    """
    out = np.array(labels, copy=True)
    names, starts, ends = segments(out)
    count = len(names)
    if count < 2:  # nothing to merge into (the official code crashes here)
        return out
    for index in range(count):
        start, end = starts[index], ends[index]
        duration = end - start
        if duration > max_duration:
            continue
        if index == 0:
            out[start:end] = names[1]
        elif index == count - 1:
            out[start:end] = names[index - 1]
        else:
            middle = start + duration // 2
            out[start:middle] = names[index - 1]
            out[middle:end] = names[index + 1]
    return out


def upsample_indices(sampled_length: int, full_length: int, sample_rate: int) -> np.ndarray:
    """For each full-rate frame, the index of the sampled frame it copies (restore_full_sequence, spec §3).

    Sample i sits on tick sr//2 + i·sr; frames between ticks take the nearest tick, ties going to the
    lower one; frames before the first / after the last tick copy the end samples.
    """
    ticks = np.arange(sample_rate // 2, full_length - (sample_rate - 1) // 2, sample_rate)
    if len(ticks) != sampled_length or sampled_length == 0:
        raise InputError(
            f"{sampled_length} sampled frames do not fit {full_length} frames at sample rate {sample_rate} "
            f"(expected {len(ticks)}, at least 1)"
        )
    offset = np.arange(full_length) - ticks[0]
    whole, remainder = np.divmod(offset, sample_rate)
    nearest = whole + (2 * remainder > sample_rate)  # exactly half-way goes to the lower tick
    return np.clip(nearest, 0, sampled_length - 1)


def restore_full_sequence(values: np.ndarray, full_length: int, sample_rate: int) -> np.ndarray:
    """Nearest upsampling along the last axis from the sampled grid to `full_length` frames (spec §3)."""
    return values[..., upsample_indices(values.shape[-1], full_length, sample_rate)]
