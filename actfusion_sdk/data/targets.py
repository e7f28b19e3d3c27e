"""Training targets derived from frame labels: smoothed action boundaries and soft labels (spec §3, §5)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d


def boundary_targets(labels: np.ndarray, sigma: float | None) -> np.ndarray:
    """Smoothed boundary sequence [T] in [0, 1] of full-rate labels (spec §5).

    Both frames around every segment start are set to 1, then smoothed with a Gaussian (scipy's reflect
    mode), clipped at the peak an isolated pair of ones reaches in a sequence of the same length, and divided
    by the maximum. A single-segment video has no boundary and gets zeros (the official code crashes).
    """
    labels = np.asarray(labels)
    boundary = np.zeros(labels.shape[0], np.float64)
    starts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    boundary[starts] = 1.0
    boundary[starts - 1] = 1.0
    if sigma is None:
        return boundary.astype(np.float32)
    boundary = gaussian_filter1d(boundary, sigma)
    pair = np.zeros_like(boundary)
    middle = boundary.shape[0] // 2
    pair[max(middle - 1, 0) : middle + 1] = 1.0
    boundary = np.minimum(boundary, gaussian_filter1d(pair, sigma).max())
    peak = boundary.max()
    if peak > 0:
        boundary /= peak
    return boundary.astype(np.float32)


def soft_label_targets(labels: np.ndarray, num_classes: int, sigma: float) -> np.ndarray:
    """Soft labels [nc, L]: each class's one-hot row smoothed along time (reflect); frames sum to 1."""
    labels = np.asarray(labels, np.int64)
    one_hot = np.zeros((num_classes, labels.shape[0]), np.float64)
    one_hot[labels, np.arange(labels.shape[0])] = 1.0
    return gaussian_filter1d(one_hot, sigma, axis=1).astype(np.float32)


def class_frame_counts(label_sequences: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Frames per class [nc] over full-rate label sequences (the input of the class weights, spec §3)."""
    counts = np.zeros(num_classes, np.int64)
    for labels in label_sequences:
        counts += np.bincount(labels, minlength=num_classes)
    return counts
