"""Scripts of procedural activity videos: activity grammars, step classes, pacing and one video's timeline.

Each activity type is a grammar of slots: a slot holds one step, or two steps that may come in either
order, and may be optional. A video follows one activity type; its steps last a few seconds each, with
background before the first step, after the last, and in gaps between some steps. The step classes are the
visual events of `events.STEP_EVENTS`; class 0 is "background".

Balance: every step class is required in exactly two activity types and optional in two others, so with
activity types used equally often every class is expected equally often (and all steps share one duration
distribution).

    spec = sample_activity(np.random.default_rng(0))   # one video's script
    spec.feature_labels(label_fps=2.0)                   # ... and its labels
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .events import BACKGROUND, STEP_EVENTS
from .shapes import MIN_SIZE

CLASSES: tuple[str, ...] = (BACKGROUND, *STEP_EVENTS)
OPTIONAL_PROBABILITY = 0.5  # an optional slot is used in half of the videos
SWAP_PROBABILITY = 0.5  # a reorderable pair comes in either order equally often


@dataclass(frozen=True)
class GrammarSlot:
    """One position in an activity's script: a step, or two steps that may appear in either order."""

    steps: tuple[str, ...]
    optional: bool = False


def _step(name: str) -> GrammarSlot:
    return GrammarSlot((name,))


def _maybe(name: str) -> GrammarSlot:
    return GrammarSlot((name,), optional=True)


def _either_order(first: str, second: str) -> GrammarSlot:
    return GrammarSlot((first, second))


_R, _B, _G, _Y, _P = (
    "red_disc_bounce",
    "blue_square_slide",
    "green_triangle_spin",
    "yellow_bar_grow",
    "purple_ring_pulse",
)
_O, _C, _M, _W, _K = (
    "orange_cross_orbit",
    "cyan_diamond_zigzag",
    "magenta_star_drift",
    "white_stripes_scroll",
    "black_pendulum_swing",
)

# Four required and four optional steps each (4-8 steps per video); one reorderable pair each.
ACTIVITIES: dict[str, tuple[GrammarSlot, ...]] = {
    "recipe_a": (_step(_R), _maybe(_P), _step(_G), _maybe(_B), _either_order(_O, _W), _maybe(_C), _maybe(_K)),
    "recipe_b": (_step(_Y), _maybe(_R), _either_order(_B, _P), _maybe(_O), _maybe(_M), _step(_K), _maybe(_W)),
    "recipe_c": (_step(_M), _maybe(_G), _either_order(_R, _Y), _maybe(_K), _step(_C), _maybe(_O), _maybe(_W)),
    "recipe_d": (_step(_W), _maybe(_Y), _step(_K), _maybe(_C), _either_order(_B, _G), _maybe(_P), _maybe(_M)),
    "recipe_e": (_maybe(_B), _either_order(_C, _M), _maybe(_Y), _step(_P), _maybe(_R), _step(_O), _maybe(_G)),
}


@dataclass(frozen=True)
class Pacing:
    """How long things last, in seconds: (low, high) ranges are drawn uniformly."""

    step_seconds: tuple[float, float] = (4.0, 10.0)
    gap_seconds: tuple[float, float] = (1.0, 3.0)
    gap_probability: float = 0.4  # chance of a background gap after each step but the last
    lead_seconds: tuple[float, float] = (0.5, 2.0)  # background before the first and after the last step

    def __post_init__(self) -> None:
        for name in ("step_seconds", "gap_seconds", "lead_seconds"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ConfigError(
                    f"{name} must be a (low, high) range with 0 < low <= high, got {(low, high)}"
                )
        if not 0 <= self.gap_probability <= 1:
            raise ConfigError(f"gap_probability must lie in [0, 1], got {self.gap_probability}")


DEFAULT_PACING = Pacing()


@dataclass(frozen=True)
class StepSpan:
    """One stretch of a video's timeline: a class name over frames [start_frame, end_frame)."""

    label: str
    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class ActivitySpec:
    """Everything needed to render one video and label it: a contiguous timeline of spans from frame 0,
    the frame size and rate, and the seed of its look and motion."""

    activity: str
    spans: tuple[StepSpan, ...]
    size: int = 160
    fps: int = 15
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.spans:
            raise ConfigError("an activity needs at least one span")
        expected_start = 0
        for span in self.spans:
            if span.label not in CLASSES:
                raise ConfigError(f"span label {span.label!r} is not a class; known: {', '.join(CLASSES)}")
            if span.start_frame != expected_start or span.end_frame <= span.start_frame:
                raise ConfigError(
                    f"spans must be non-empty and contiguous from frame 0; {span} should start at "
                    f"{expected_start}"
                )
            expected_start = span.end_frame
        if not isinstance(self.fps, int) or self.fps < 1:
            raise ConfigError(f"fps must be a positive whole number of frames per second, got {self.fps!r}")
        if self.size < MIN_SIZE or self.size % 2:
            raise ConfigError(f"video size must be an even number of pixels >= {MIN_SIZE}, got {self.size}")

    @property
    def num_frames(self) -> int:
        return self.spans[-1].end_frame

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.num_frames / self.fps

    @property
    def steps(self) -> tuple[str, ...]:
        """The step classes in order, background left out."""
        return tuple(span.label for span in self.spans if span.label != BACKGROUND)

    def frame_labels(self) -> list[str]:
        """The class of every video frame."""
        return [span.label for span in self.spans for _ in range(span.end_frame - span.start_frame)]

    def feature_labels(self, label_fps: float = 2.0) -> list[str]:
        """round(duration * label_fps) labels: label k is the class of the frame showing time
        (k + 0.5) / label_fps, the centre of feature k when features are made label_fps times a second."""
        if not label_fps > 0:
            raise ConfigError(f"label_fps must be positive, got {label_fps}")
        frames = self.frame_labels()
        count = round(self.duration * label_fps)
        return [
            frames[min(math.floor((k + 0.5) * self.fps / label_fps), self.num_frames - 1)]
            for k in range(count)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "activity": self.activity,
            "spans": [[span.label, span.start_frame, span.end_frame] for span in self.spans],
            "size": self.size,
            "fps": self.fps,
            "seed": self.seed,
        }


def sample_steps(rng: np.random.Generator, activity: str) -> list[str]:
    """Draw one step sequence from an activity's grammar."""
    if activity not in ACTIVITIES:
        raise ConfigError(f"activity {activity!r} is unknown; known: {', '.join(ACTIVITIES)}")
    steps: list[str] = []
    for slot in ACTIVITIES[activity]:
        if slot.optional and rng.random() >= OPTIONAL_PROBABILITY:
            continue
        reorder = len(slot.steps) > 1 and rng.random() < SWAP_PROBABILITY
        steps.extend(reversed(slot.steps) if reorder else slot.steps)
    return steps


def sample_activity(
    rng: np.random.Generator,
    activity: str | None = None,
    *,
    size: int = 160,
    fps: int = 15,
    pacing: Pacing = DEFAULT_PACING,
) -> ActivitySpec:
    """Script one video: an activity type (drawn if not given), its steps, their durations and the
    background gaps.

    The video lasts a whole number of seconds (the trailing background is stretched to the next second), so
    at 2 features per second it has exactly 2 features per second of video."""
    if activity is None:
        activity = str(rng.choice(list(ACTIVITIES)))
    steps = sample_steps(rng, activity)
    pieces = [(BACKGROUND, rng.uniform(*pacing.lead_seconds))]
    for index, step in enumerate(steps):
        pieces.append((step, rng.uniform(*pacing.step_seconds)))
        if index < len(steps) - 1 and rng.random() < pacing.gap_probability:
            pieces.append((BACKGROUND, rng.uniform(*pacing.gap_seconds)))
    pieces.append((BACKGROUND, rng.uniform(*pacing.lead_seconds)))
    total_seconds = math.ceil(sum(seconds for _, seconds in pieces))
    ends = np.rint(np.cumsum([seconds for _, seconds in pieces]) * fps).astype(int)
    ends[-1] = total_seconds * fps
    spans, start = [], 0
    for (label, _), end in zip(pieces, ends, strict=True):
        if end > start:
            spans.append(StepSpan(label, start, int(end)))
            start = int(end)
    return ActivitySpec(activity, tuple(spans), size=size, fps=fps, seed=int(rng.integers(2**63)))
