"""How closely two [D, T] feature files agree, per stream: for users who hold released features (e.g. the
MS-TCN features of Breakfast, 50 Salads, GTEA) and the raw videos, to check features made here against them.

Per stream (RGB = rows 0–1023, flow = rows 1024–2047 of MS-TCN features) the per-frame cosine similarity is
taken at every alignment ``ours[:, t]`` ↔ ``theirs[:, t + shift]`` for |shift| ≤ ``max_shift``; the shift with
the highest mean wins, and the distribution of its per-frame cosines is reported. A best shift other than 0
means the two extractors number frames differently (the original MS-TCN extractor's buffer shifts its outputs
by one frame after frame 12: docs/mstcn-features.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .settings import STREAM_DIM

STREAM_NAMES = ("rgb", "flow")


@dataclass(frozen=True)
class StreamAgreement:
    """One stream's agreement at its best alignment: ``cosines`` [n] per aligned frame, ``shift`` (ours[t]
    against theirs[t + shift]) and the mean cosine of every shift tried."""

    stream: str
    shift: int
    cosines: np.ndarray
    mean_by_shift: dict[int, float]

    @property
    def minimum(self) -> float:
        return float(self.cosines.min())

    @property
    def p5(self) -> float:
        return float(np.percentile(self.cosines, 5))

    @property
    def median(self) -> float:
        return float(np.median(self.cosines))

    @property
    def mean(self) -> float:
        return float(self.cosines.mean())

    def to_dict(self) -> dict[str, object]:
        return {
            "stream": self.stream,
            "shift": self.shift,
            "frames": int(self.cosines.size),
            "min": self.minimum,
            "p5": self.p5,
            "median": self.median,
            "mean": self.mean,
            "mean_by_shift": {str(shift): value for shift, value in self.mean_by_shift.items()},
        }


@dataclass(frozen=True)
class FeatureComparison:
    """Two feature arrays compared stream by stream."""

    ours_frames: int
    theirs_frames: int
    streams: tuple[StreamAgreement, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "ours_frames": self.ours_frames,
            "theirs_frames": self.theirs_frames,
            "streams": [stream.to_dict() for stream in self.streams],
        }

    def table(self) -> str:
        """A plain-text table: one line per stream."""
        lines = [
            f"frames: ours {self.ours_frames}, theirs {self.theirs_frames}",
            f"{'stream':<7}{'shift':>6}{'frames':>8}{'min':>9}{'p5':>9}{'median':>9}{'mean':>9}",
        ]
        lines += [
            f"{s.stream:<7}{s.shift:>+6d}{s.cosines.size:>8d}{s.minimum:>9.4f}{s.p5:>9.4f}{s.median:>9.4f}"
            f"{s.mean:>9.4f}"
            for s in self.streams
        ]
        return "\n".join(lines)


def load_feature_file(path: str | Path) -> np.ndarray:
    """A [D, T] float feature array from a .npy file (no pickles), as float64."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read features from '{path}': {err}") from err
    if array.ndim != 2 or array.dtype.kind != "f":
        raise InputError(f"'{path}' holds a {array.dtype} array of shape {array.shape}, not [D, T] features")
    return array.astype(np.float64)


def stream_rows(dim: int) -> list[tuple[str, slice]]:
    """The streams of a [dim, T] array: RGB and flow halves of 2048-d MS-TCN features, else one stream."""
    if dim == 2 * STREAM_DIM:
        return [(name, slice(i * STREAM_DIM, (i + 1) * STREAM_DIM)) for i, name in enumerate(STREAM_NAMES)]
    return [("rgb" if dim == STREAM_DIM else "all", slice(0, dim))]


def frame_cosines(ours: np.ndarray, theirs: np.ndarray, shift: int) -> np.ndarray:
    """Cosine of ours[:, t] and theirs[:, t + shift] for every t where both exist (a zero vector gives 0)."""
    start, stop = max(0, -shift), min(ours.shape[1], theirs.shape[1] - shift)
    if stop <= start:
        return np.zeros(0)
    a, b = ours[:, start:stop], theirs[:, start + shift : stop + shift]
    norms = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return np.divide((a * b).sum(axis=0), norms, out=np.zeros(a.shape[1]), where=norms > 0)


def compare_features(ours: np.ndarray, theirs: np.ndarray, max_shift: int = 2) -> FeatureComparison:
    """Compare [D, T] arrays stream by stream at their best alignment within ±``max_shift`` frames."""
    if ours.ndim != 2 or theirs.ndim != 2 or ours.shape[0] != theirs.shape[0]:
        raise InputError(
            f"features must both be [D, T] with the same D, got {tuple(ours.shape)} and "
            f"{tuple(theirs.shape)}; "
            "transpose a [T, D] array with .T"
        )
    if max_shift < 0:
        raise InputError(f"max_shift must be >= 0, got {max_shift}")
    streams = []
    for name, rows in stream_rows(ours.shape[0]):
        by_shift = {
            shift: frame_cosines(ours[rows], theirs[rows], shift)
            for shift in range(-max_shift, max_shift + 1)
        }
        by_shift = {shift: cosines for shift, cosines in by_shift.items() if cosines.size}
        if not by_shift:
            raise InputError(
                f"the features overlap in no frame at shifts up to ±{max_shift} "
                f"({ours.shape[1]} and {theirs.shape[1]} frames)"
            )
        means = {shift: float(cosines.mean()) for shift, cosines in by_shift.items()}
        best = max(means, key=lambda shift: (means[shift], -abs(shift)))
        streams.append(StreamAgreement(name, best, by_shift[best], means))
    return FeatureComparison(ours.shape[1], theirs.shape[1], tuple(streams))
