"""Rendering and encoding of procedural activity videos (numpy, vectorised over frames; PyAV encoding).

The visual vocabulary: every step class is an event with its own shapes, colours and motion, drawn over a
low-contrast textured background (notes/procedural-demo.md: objects >= ~45 px on 160x160). Each video gets
its own look (background, colour cast, flicker, noise level, camera jitter), all drawn from one seed, so the
same timeline and seed always give the same frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import ConfigError

BACKGROUND = "background"
PREFERRED_CODECS = ("libx264", "mpeg4")
MIN_SIZE = 64
CHUNK_FRAMES = 64  # frames rendered at once: bounds memory at a few tens of MB

Layers = list[np.ndarray]  # coverage in [0, 1], one [n, W, W] array per colour of the event


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


def _column(values: np.ndarray | float) -> np.ndarray:
    return np.reshape(np.asarray(values, dtype=np.float32), (-1, 1, 1))


def _coverage(inside_distance: np.ndarray) -> np.ndarray:
    """Antialiased coverage from a (signed, approximate) distance inside the shape's edge, in pixels."""
    return np.clip(inside_distance + 0.5, 0.0, 1.0)


def _triangle_wave(x: np.ndarray) -> np.ndarray:
    """Period 1, range [0, 1]: 0 at integers, 1 at half-integers (a back-and-forth sweep)."""
    return 2.0 * np.abs(x - np.floor(x + 0.5))


def _radius(scene: Scene, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    return np.hypot(scene.cols - cx, scene.rows - cy)


def _angle(scene: Scene, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    return np.arctan2(scene.rows - cy, scene.cols - cx)


def disc(scene: Scene, cx: np.ndarray, cy: np.ndarray, radius: float) -> np.ndarray:
    return _coverage(radius - _radius(scene, cx, cy))


def ring(scene: Scene, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray, half_width: float) -> np.ndarray:
    return _coverage(half_width - np.abs(_radius(scene, cx, cy) - _column(radius)))


def regular_polygon(
    scene: Scene, cx: np.ndarray, cy: np.ndarray, apothem: float, sides: int, rotation: np.ndarray | float
) -> np.ndarray:
    """A regular polygon with a vertex at angle `rotation` (radians, image coordinates)."""
    theta = _angle(scene, cx, cy)
    sector = 2 * np.pi / sides
    offset = np.mod(theta - _column(rotation) + sector / 2, sector) - sector / 2
    edge = apothem / np.cos(np.abs(offset) - sector / 2)
    return _coverage(edge - _radius(scene, cx, cy))


def star(
    scene: Scene, cx: np.ndarray, cy: np.ndarray, outer: float, inner: float, rotation: np.ndarray
) -> np.ndarray:
    """A five-pointed star: the edge radius runs linearly in angle from `outer` at a tip to `inner`
    between tips."""
    theta = _angle(scene, cx, cy)
    sector = 2 * np.pi / 5
    offset = np.mod(theta - _column(rotation) + sector / 2, sector) - sector / 2
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
    rotation = _column(rotation)
    cos, sin = np.cos(rotation), np.sin(rotation)
    dx = scene.cols - cx
    dy = scene.rows - cy
    along = dx * cos + dy * sin
    across = dy * cos - dx * sin
    outside = np.maximum(np.abs(along) - _column(half_length), np.abs(across) - half_width)
    return _coverage(-outside)


# Each event maker draws the parameters of one step instance from `rng` and returns a function from the
# step's local time (seconds, [n]) to its coverage layers, one per colour in StepEvent.colours.
EventMaker = Callable[[np.random.Generator, Scene], Callable[[np.ndarray], Layers]]


def _red_disc_bounce(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    radius = scene.length(0.16 * rng.uniform(0.9, 1.1))
    drift_period, drift_phase = rng.uniform(3.0, 5.0), rng.uniform()
    hop_period, height, floor = rng.uniform(0.8, 1.2), rng.uniform(0.35, 0.5), rng.uniform(0.72, 0.8)

    def layers(t: np.ndarray) -> Layers:
        cx = scene.at(0.2 + 0.6 * _triangle_wave(drift_phase + t / drift_period))
        cy = scene.at(floor - height * np.abs(np.sin(np.pi * t / hop_period)))
        return [disc(scene, cx, cy, radius)]

    return layers


def _blue_square_slide(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    half = scene.length(0.16 * rng.uniform(0.9, 1.1))
    row, period, phase = rng.uniform(0.3, 0.7), rng.uniform(2.5, 3.5), rng.uniform()

    def layers(t: np.ndarray) -> Layers:
        cx = scene.at(0.2 + 0.6 * _triangle_wave(phase + t / period))
        return [rectangle(scene, cx, scene.at(np.full_like(t, row)), half, half, 0.0)]

    return layers


def _green_triangle_spin(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    apothem = scene.length(0.11 * rng.uniform(0.9, 1.1))
    cx, cy = scene.at(rng.uniform(0.35, 0.65)), scene.at(rng.uniform(0.35, 0.65))
    spin, start = rng.choice((-1.0, 1.0)) * rng.uniform(1.5, 3.0), rng.uniform(0, 2 * np.pi)

    def layers(t: np.ndarray) -> Layers:
        return [regular_polygon(scene, cx, cy, apothem, 3, start + spin * t)]

    return layers


def _yellow_bar_grow(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    half_width = scene.length(0.06 * rng.uniform(0.9, 1.1))
    cx, cy = scene.at(rng.uniform(0.4, 0.6)), scene.at(rng.uniform(0.4, 0.6))
    angle, period, phase = rng.uniform(-0.35, 0.35), rng.uniform(2.0, 3.0), rng.uniform()

    def layers(t: np.ndarray) -> Layers:
        half_length = scene.length(0.06) + scene.length(0.26) * np.mod(phase + t / period, 1.0)
        return [rectangle(scene, cx, cy, half_length, half_width, angle)]

    return layers


def _purple_ring_pulse(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    half_width = scene.length(0.035)
    cx, cy = scene.at(rng.uniform(0.35, 0.65)), scene.at(rng.uniform(0.35, 0.65))
    period, phase = rng.uniform(1.0, 1.6), rng.uniform()

    def layers(t: np.ndarray) -> Layers:
        radius = scene.length(0.17) + scene.length(0.05) * np.sin(2 * np.pi * (phase + t / period))
        return [ring(scene, cx, cy, radius, half_width)]

    return layers


def _orange_cross_orbit(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    arm, half_width = scene.length(0.15 * rng.uniform(0.9, 1.1)), scene.length(0.045)
    centre_x, centre_y = rng.uniform(0.45, 0.55), rng.uniform(0.45, 0.55)
    speed, start = rng.choice((-1.0, 1.0)) * rng.uniform(1.2, 2.0), rng.uniform(0, 2 * np.pi)

    def layers(t: np.ndarray) -> Layers:
        angle = start + speed * t
        cx = scene.at(centre_x + 0.2 * np.cos(angle))
        cy = scene.at(centre_y + 0.2 * np.sin(angle))
        cross = np.maximum(
            rectangle(scene, cx, cy, arm, half_width, angle),
            rectangle(scene, cx, cy, arm, half_width, angle + np.pi / 2),
        )
        return [cross]

    return layers


def _cyan_diamond_zigzag(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    apothem = scene.length(0.12 * rng.uniform(0.9, 1.1))
    fast_period, slow_period = rng.uniform(0.9, 1.3), rng.uniform(4.0, 6.0)
    fast_phase, slow_phase = rng.uniform(), rng.uniform()

    def layers(t: np.ndarray) -> Layers:
        cx = scene.at(0.22 + 0.56 * _triangle_wave(fast_phase + t / fast_period))
        cy = scene.at(0.25 + 0.5 * _triangle_wave(slow_phase + t / slow_period))
        return [regular_polygon(scene, cx, cy, apothem, 4, 0.0)]

    return layers


def _magenta_star_drift(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    outer = scene.length(0.19 * rng.uniform(0.9, 1.1))
    periods, phases = rng.uniform(4.0, 7.0, size=2), rng.uniform(0, 2 * np.pi, size=2)
    spin, start = rng.choice((-1.0, 1.0)) * rng.uniform(0.3, 0.8), rng.uniform(0, 2 * np.pi)

    def layers(t: np.ndarray) -> Layers:
        cx = scene.at(0.5 + 0.22 * np.sin(2 * np.pi * t / periods[0] + phases[0]))
        cy = scene.at(0.5 + 0.22 * np.sin(2 * np.pi * t / periods[1] + phases[1]))
        return [star(scene, cx, cy, outer, 0.42 * outer, start + spin * t)]

    return layers


def _white_stripes_scroll(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    half = scene.length(0.22 * rng.uniform(0.9, 1.1))
    cx, cy = scene.at(rng.uniform(0.35, 0.65)), scene.at(rng.uniform(0.35, 0.65))
    stripe_angle, period = rng.uniform(0, np.pi), scene.length(0.11)
    stripes_per_second = rng.choice((-1.0, 1.0)) * rng.uniform(1.2, 2.0)

    def layers(t: np.ndarray) -> Layers:
        panel = rectangle(scene, cx, cy, half, half, 0.0)
        across = (scene.cols - cx) * np.cos(stripe_angle) + (scene.rows - cy) * np.sin(stripe_angle)
        wave = np.sin(2 * np.pi * (across / period - stripes_per_second * _column(t)))
        return [panel, panel * np.clip(0.5 + 3.0 * wave, 0.0, 1.0)]

    return layers


def _black_pendulum_swing(rng: np.random.Generator, scene: Scene) -> Callable[[np.ndarray], Layers]:
    rod, rod_half_width = scene.length(0.5), scene.length(0.02)
    bob = scene.length(0.1 * rng.uniform(0.9, 1.1))
    pivot_x, pivot_y = rng.uniform(0.4, 0.6), 0.08
    amplitude, period, phase = rng.uniform(0.5, 0.8), rng.uniform(1.4, 2.0), rng.uniform(0, 2 * np.pi)

    def layers(t: np.ndarray) -> Layers:
        swing = amplitude * np.sin(2 * np.pi * t / period + phase)
        direction = np.arctan2(np.cos(swing), np.sin(swing))  # from the pivot, downwards at rest
        mid_x = scene.at(pivot_x + 0.25 * np.sin(swing))
        mid_y = scene.at(pivot_y + 0.25 * np.cos(swing))
        bob_x = scene.at(pivot_x + 0.5 * np.sin(swing))
        bob_y = scene.at(pivot_y + 0.5 * np.cos(swing))
        body = np.maximum(
            rectangle(scene, mid_x, mid_y, rod / 2, rod_half_width, direction),
            disc(scene, bob_x, bob_y, bob),
        )
        return [body]

    return layers


@dataclass(frozen=True)
class StepEvent:
    """What a step class looks like: its base colours (RGB, 0..255) and how its shapes move."""

    colours: tuple[tuple[int, int, int], ...]
    make: EventMaker


STEP_EVENTS: dict[str, StepEvent] = {
    "red_disc_bounce": StepEvent(((220, 40, 40),), _red_disc_bounce),
    "blue_square_slide": StepEvent(((40, 70, 220),), _blue_square_slide),
    "green_triangle_spin": StepEvent(((40, 180, 60),), _green_triangle_spin),
    "yellow_bar_grow": StepEvent(((230, 225, 40),), _yellow_bar_grow),
    "purple_ring_pulse": StepEvent(((110, 40, 200),), _purple_ring_pulse),
    "orange_cross_orbit": StepEvent(((250, 120, 20),), _orange_cross_orbit),
    "cyan_diamond_zigzag": StepEvent(((40, 210, 220),), _cyan_diamond_zigzag),
    "magenta_star_drift": StepEvent(((240, 50, 180),), _magenta_star_drift),
    "white_stripes_scroll": StepEvent(((30, 30, 30), (240, 240, 240)), _white_stripes_scroll),
    "black_pendulum_swing": StepEvent(((20, 20, 20),), _black_pendulum_swing),
}


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


def available_codec() -> str:
    """The best video encoder this PyAV build has: libx264 (H.264), else mpeg4 (MPEG-4 Part 2)."""
    for name in PREFERRED_CODECS:
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:  # this FFmpeg build lacks the encoder
            continue
        return name
    raise ConfigError(
        f"this PyAV build has none of the encoders {', '.join(PREFERRED_CODECS)}; install av>=11"
    )


def write_mp4(chunks: Iterable[np.ndarray], path: Path, *, fps: int, codec: str | None = None) -> str:
    """Encode uint8 [n, H, W, 3] RGB chunks as an mp4 (yuv420p) at `fps`; returns the encoder used.

    The file appears only when complete (written to a temporary name, then renamed)."""
    codec = codec or available_codec()
    partial = path.with_name(path.name + ".part")
    try:
        with av.open(str(partial), mode="w", format="mp4") as container:
            stream = None
            for chunk in chunks:
                if stream is None:
                    stream = _add_video_stream(
                        container, codec, fps, height=chunk.shape[1], width=chunk.shape[2]
                    )
                for frame in chunk:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            if stream is None:
                raise ConfigError(f"no frames to write to {path}; the timeline is empty")
            container.mux(stream.encode())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
    return codec


def _add_video_stream(
    container: av.container.OutputContainer, codec: str, fps: int, *, height: int, width: int
) -> av.video.stream.VideoStream:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = height, width
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": "23", "preset": "veryfast"}  # x264's default quality, fast enough for tests
    else:
        stream.bit_rate = 2_000_000  # mpeg4 has no constant-quality default; ample for 160x160 at 15 fps
    return stream
