"""The scene canvas of a procedural video and the antialiased shapes drawn on it.

Numpy, vectorised over frames: every shape returns its coverage in [0, 1] as an [n, W, W] array over the
world canvas, one slice per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SIZE = 64  # the smallest frame size (pixels a side) a video may have


@dataclass(frozen=True)
class Scene:
    """The world canvas: the visible frame plus a margin on every side for camera jitter.

    Positions are given as fractions of the visible frame (0..1) and turned into world pixels by `at`.
    """

    size: int
    margin: int
    rows: np.ndarray  # [1, W, 1] world row coordinates (pixel centres)
    cols: np.ndarray  # [1, 1, W]

    @classmethod
    def create(cls, size: int) -> Scene:
        margin = max(2, round(0.03 * size))
        coords = np.arange(size + 2 * margin, dtype=np.float32)
        return cls(size, margin, coords.reshape(1, -1, 1), coords.reshape(1, 1, -1))

    @property
    def world(self) -> int:
        return self.size + 2 * self.margin

    def at(self, fraction: np.ndarray | float) -> np.ndarray:
        """World pixel coordinate of a position given as a fraction of the visible frame, as [n, 1, 1]."""
        return np.reshape(self.margin + np.asarray(fraction, dtype=np.float32) * self.size, (-1, 1, 1))

    def length(self, fraction: float) -> float:
        return fraction * self.size


def column(values: np.ndarray | float) -> np.ndarray:
    """Per-frame values as [n, 1, 1], to broadcast over a frame's pixels."""
    return np.reshape(np.asarray(values, dtype=np.float32), (-1, 1, 1))


def _coverage(inside_distance: np.ndarray) -> np.ndarray:
    """Antialiased coverage from a (signed, approximate) distance inside the shape's edge, in pixels."""
    return np.clip(inside_distance + 0.5, 0.0, 1.0)


def triangle_wave(x: np.ndarray) -> np.ndarray:
    """Period 1, range [0, 1]: 0 at integers, 1 at half-integers (a back-and-forth sweep)."""
    return 2.0 * np.abs(x - np.floor(x + 0.5))


def _radius(scene: Scene, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    return np.hypot(scene.cols - cx, scene.rows - cy)


def _angle(scene: Scene, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    return np.arctan2(scene.rows - cy, scene.cols - cx)


def disc(scene: Scene, cx: np.ndarray, cy: np.ndarray, radius: float) -> np.ndarray:
    return _coverage(radius - _radius(scene, cx, cy))


def ring(scene: Scene, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, half_width: float) -> np.ndarray:
    return _coverage(half_width - np.abs(_radius(scene, cx, cy) - column(radius)))


def regular_polygon(
    scene: Scene, cx: np.ndarray, cy: np.ndarray, apothem: float, sides: int, rotation: np.ndarray | float
) -> np.ndarray:
    """A regular polygon with a vertex at angle `rotation` (radians, image coordinates)."""
    theta = _angle(scene, cx, cy)
    sector = 2 * np.pi / sides
    offset = np.mod(theta - column(rotation) + sector / 2, sector) - sector / 2
    edge = apothem / np.cos(np.abs(offset) - sector / 2)
    return _coverage(edge - _radius(scene, cx, cy))


def star(
    scene: Scene, cx: np.ndarray, cy: np.ndarray, outer: float, inner: float, rotation: np.ndarray
) -> np.ndarray:
    """A five-pointed star: the edge radius runs linearly in angle from `outer` at a tip to `inner`
    between tips."""
    theta = _angle(scene, cx, cy)
    sector = 2 * np.pi / 5
    offset = np.mod(theta - column(rotation) + sector / 2, sector) - sector / 2
    edge = outer - (outer - inner) * np.abs(offset) / (sector / 2)
    return _coverage(edge - _radius(scene, cx, cy))


def rectangle(
    scene: Scene,
    cx: np.ndarray,
    cy: np.ndarray,
    half_length: np.ndarray | float,
    half_width: float,
    rotation: np.ndarray | float,
) -> np.ndarray:
    """A rectangle whose long axis points at angle `rotation` (radians, image coordinates)."""
    rotation = column(rotation)
    cos, sin = np.cos(rotation), np.sin(rotation)
    dx = scene.cols - cx
    dy = scene.rows - cy
    along = dx * cos + dy * sin
    across = dy * cos - dx * sin
    outside = np.maximum(np.abs(along) - column(half_length), np.abs(across) - half_width)
    return _coverage(-outside)
