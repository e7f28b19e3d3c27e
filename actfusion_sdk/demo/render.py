"""Rendering of procedural activity videos: a timeline of step spans -> uint8 frames -> an mp4 file.

Each video gets its own look (background, colour cast, flicker, noise level, camera jitter), all drawn from
one seed, so the same timeline and seed always give the same frames.

    render_video(spec, "video.mp4")   # one scripted video (grammar.sample_activity), rendered and encoded
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .encode import write_mp4
from .events import BACKGROUND, STEP_EVENTS
from .grammar import ActivitySpec
from .shapes import MIN_SIZE, Scene

CHUNK_FRAMES = 64  # frames rendered at once: bounds memory at a few tens of MB


def _smooth_texture(rng: np.random.Generator, world: int, cells: int) -> np.ndarray:
    """A [world, world] field of smooth blotches in [-1, 1]: a coarse random grid, bilinearly upsampled."""
    grid = rng.uniform(-1.0, 1.0, size=(cells, cells))
    positions = np.linspace(0.0, cells - 1.0, world)
    weights = np.maximum(0.0, 1.0 - np.abs(positions[:, None] - np.arange(cells)[None, :]))
    return weights @ grid @ weights.T


@dataclass(frozen=True)
class VideoLook:
    """Everything about one video's appearance that is not a step: drawn once per video from its seed."""

    background: np.ndarray  # [W, W, 3] float32
    colour_gain: np.ndarray  # [3] per-channel colour cast applied to the step colours
    colour_shift: dict[str, np.ndarray]  # per step class, [colours, 3] small offsets
    flicker: tuple[float, float, float]  # amplitude, period (s), phase
    jitter: np.ndarray  # [2 axes, 2 components, 3: amplitude, frequency (Hz), phase]
    noise_std: float

    @classmethod
    def sample(cls, rng: np.random.Generator, scene: Scene) -> VideoLook:
        base = rng.uniform(85.0, 150.0) + rng.uniform(-12.0, 12.0, size=3)
        blotches = rng.uniform(8.0, 14.0) * _smooth_texture(rng, scene.world, cells=6)
        grain = rng.normal(0.0, 3.0, size=(scene.world, scene.world, 1))
        background = (base + blotches[:, :, None] + grain).astype(np.float32)
        shifts = {
            name: rng.uniform(-10.0, 10.0, size=(len(event.colours), 3))
            for name, event in STEP_EVENTS.items()
        }
        jitter = np.stack(
            [
                rng.uniform(0.3, 0.7, size=(2, 2)) * scene.margin,
                rng.uniform(0.2, 1.5, size=(2, 2)),
                rng.uniform(0.0, 2 * np.pi, size=(2, 2)),
            ],
            axis=-1,
        )
        return cls(
            background=background,
            colour_gain=rng.uniform(0.9, 1.1, size=3),
            colour_shift=shifts,
            flicker=(rng.uniform(0.0, 0.04), rng.uniform(2.0, 6.0), rng.uniform(0, 2 * np.pi)),
            jitter=jitter,
            noise_std=rng.uniform(3.0, 6.0),
        )

    def colours(self, label: str) -> np.ndarray:
        """The step class's colours in this video, [colours, 3] float32."""
        base = np.asarray(STEP_EVENTS[label].colours, dtype=np.float64)
        return np.clip(base * self.colour_gain + self.colour_shift[label], 0, 255).astype(np.float32)

    def camera_offsets(self, times: np.ndarray, margin: int) -> np.ndarray:
        """Per-frame integer (row, column) shifts of the camera window, each within [-margin, margin]."""
        amplitude, frequency, phase = np.moveaxis(self.jitter, -1, 0)  # each [2, 2]
        waves = amplitude * np.sin(2 * np.pi * frequency * times[:, None, None] + phase)
        return np.clip(np.rint(waves.sum(axis=-1)), -margin, margin).astype(np.int64)

    def brightness(self, times: np.ndarray) -> np.ndarray:
        amplitude, period, phase = self.flicker
        return (1.0 + amplitude * np.sin(2 * np.pi * times / period + phase)).astype(np.float32)


def render_frames(
    timeline: Sequence[tuple[str, int, int]], *, size: int, fps: int, seed: int
) -> Iterator[np.ndarray]:
    """Render a timeline of (class name, start frame, end frame exclusive) spans as uint8 [n, size, size, 3]
    chunks in frame order. The same timeline, size, fps and seed always give the same frames."""
    if size < MIN_SIZE or size % 2:
        raise ConfigError(f"video size must be an even number of pixels >= {MIN_SIZE}, got {size}")
    for label, _, _ in timeline:
        if label != BACKGROUND and label not in STEP_EVENTS:
            raise ConfigError(f"step class {label!r} has no renderer; known: {', '.join(STEP_EVENTS)}")
    look_rng, motion_rng, noise_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    scene = Scene.create(size)
    look = VideoLook.sample(look_rng, scene)
    for label, start, end in timeline:
        event_layers = None if label == BACKGROUND else STEP_EVENTS[label].make(motion_rng, scene)
        colours = None if label == BACKGROUND else look.colours(label)
        for chunk_start in range(start, end, CHUNK_FRAMES):
            frame_numbers = np.arange(chunk_start, min(end, chunk_start + CHUNK_FRAMES))
            world = look.background[None]
            if event_layers is not None:
                layers = event_layers((frame_numbers - start) / fps)
                for coverage, colour in zip(layers, colours, strict=True):
                    world = world + coverage[..., None] * (colour - world)
            world = np.broadcast_to(world, (len(frame_numbers), *look.background.shape))
            yield _through_camera(world, frame_numbers / fps, scene, look, noise_rng)


def _through_camera(
    world: np.ndarray, times: np.ndarray, scene: Scene, look: VideoLook, noise_rng: np.random.Generator
) -> np.ndarray:
    """Crop the jittered camera window from each world frame, apply flicker and sensor noise (grey: one
    value per pixel for all channels), quantise."""
    offsets = look.camera_offsets(times, scene.margin) + scene.margin
    frames = np.stack(
        [world[i, row : row + scene.size, col : col + scene.size] for i, (row, col) in enumerate(offsets)]
    )
    frames *= look.brightness(times)[:, None, None, None]
    frames += look.noise_std * noise_rng.standard_normal((*frames.shape[:3], 1), dtype=np.float32)
    frames += 0.5  # round half up: add 0.5, clip, truncate
    return np.clip(frames, 0, 255, out=frames).astype(np.uint8)


def render_video(spec: ActivitySpec, path: str | Path, *, codec: str | None = None) -> str:
    """Render and encode one video to `path` (mp4, yuv420p, spec.fps); returns the encoder used."""
    timeline = [(span.label, span.start_frame, span.end_frame) for span in spec.spans]
    frames = render_frames(timeline, size=spec.size, fps=spec.fps, seed=spec.seed)
    return write_mp4(frames, Path(path), fps=spec.fps, codec=codec)
