"""The live loop: frames -> incremental features -> an anticipation every `every` seconds of stream time.

Scheduling only; the model math is `Predictor.anticipate`. Update k observes the first
n_k = round(k·every·fps) feature frames (fps: features per second) and runs as soon as feature n_k − 1 is
embedded, so it equals the offline `anticipate(observed=k·every, horizon=…)` on the same features and seed
when `context` is unset. With `context`, the model sees only the last round(context·fps) features and the
stream keeps no more, so time and memory per update stay flat on an endless stream. When the source ends or
stalls, the open clips are edge-padded as offline and a final update observes every feature.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ..errors import ConfigError
from ..limits import MAX_FRAMES, check_seconds, check_seed
from ..predictor import AnticipationWindow, Predictor
from ..results import Segment
from ..video.live import LiveSource
from .features import FeatureStream
from .update import LiveUpdate


@dataclass(frozen=True)
class UpdatePlan:
    """When and what to answer: every `every` s, `horizon` s ahead, on the last `context` s (None: all).

    `drop`: skip an update that is already stale when its turn comes (the source has passed the next
    update's time), so the answer stays current on a machine that cannot keep up; frames are never skipped.
    """

    every: float = 2.0
    horizon: float = 30.0
    context: float | None = None
    seed: int = 0
    drop: bool = False

    def __post_init__(self) -> None:
        for name in ("every", "horizon", "context"):
            value = getattr(self, name)
            if value is not None or name != "context":  # only the context may be None (all the stream)
                object.__setattr__(self, name, check_seconds(name, value))
        check_seed(self.seed)
        if not isinstance(self.drop, bool):
            raise ConfigError(f"drop must be True or False, got {self.drop!r}")

    def check_rate(self, fps: float) -> None:
        """Refuse, before the stream is opened, an update step or context shorter than one feature frame
        (`fps` features/s): such updates would repeat on the same features without end."""
        for name in ("every", "context"):
            value = getattr(self, name)
            if value is not None and value * fps < 1:
                raise ConfigError(
                    f"{name}={value:g} s is shorter than one feature frame of this model "
                    f"({fps:g} features/s); use at least {1 / fps:g} s"
                )
        if self.horizon * fps > MAX_FRAMES:
            raise ConfigError(
                f"horizon={self.horizon:g} s is {round(self.horizon * fps)} feature frames of this model "
                f"({fps:g} features/s), more than the {MAX_FRAMES} it answers at once; shorten it"
            )


def live_updates(predictor: Predictor, source: LiveSource, plan: UpdatePlan) -> Iterator[LiveUpdate]:
    """Rolling `LiveUpdate`s for `source` (see the module docstring); ends with a `final` update."""
    fps = predictor.feature_settings().features_per_second
    context = None if plan.context is None else max(1, round(plan.context * fps))
    features = FeatureStream(predictor.extractor, keep=context)
    answer = _Answerer(predictor, source, plan, fps, context, features)
    for frame in source.frames():
        features.push(frame.image, frame.arrival)
        # Embed when a batch is full, when the next update's features are there, or when nothing waits.
        due = answer.next_frames
        caught_up = source.newest == frame.index
        if features.ready >= due or features.pending >= features.extractor.batch_size or caught_up:
            features.embed(until=min(features.ready, due))
        while features.count >= answer.next_frames:
            yield from answer.regular()
            features.embed(until=min(features.ready, answer.next_frames))
    features.finish(time.monotonic())
    features.embed(until=features.ready)
    while answer.next_frames < features.count:
        yield from answer.regular(ending=True)
    yield answer.final(features.count)


class _Answerer:
    """Turns the features observed so far into updates, in stream-time order."""

    def __init__(
        self,
        predictor: Predictor,
        source: LiveSource,
        plan: UpdatePlan,
        fps: float,
        context: int | None,
        features: FeatureStream,
    ) -> None:
        self.predictor, self.source, self.plan = predictor, source, plan
        self.fps, self.context, self.features = fps, context, features
        self.step = 1  # the next regular update observes step·every seconds
        self.index = 0
        self.skipped = 0
        self.last_frames = 0

    @property
    def next_frames(self) -> int:
        return max(1, round(self.step * self.plan.every * self.fps))

    def regular(self, ending: bool = False) -> Iterator[LiveUpdate]:
        """The update due now, unless the drop policy finds it stale (the final one is never dropped)."""
        observed, seconds = self.next_frames, self.step * self.plan.every
        self.step += 1
        stale = self.source.newest_time >= self.step * self.plan.every
        if self.plan.drop and (stale or ending):
            self.skipped += 1
            return
        yield self._update(observed, seconds, final=False)

    def final(self, observed: int) -> LiveUpdate:
        end = "stalled" if self.source.stalled else "end"
        return self._update(observed, observed / self.fps, final=True, end=end)

    def _update(self, observed: int, seconds: float, final: bool, end: str | None = None) -> LiveUpdate:
        first, window = self.features.window(observed, self.context)
        prepared = self.predictor.load_features(window, self.fps)
        result = self.predictor.anticipate(
            prepared,
            AnticipationWindow(observed=window.shape[1] / self.fps, horizon=self.plan.horizon),
            seed=self.plan.seed,
        )
        update = LiveUpdate(
            index=self.index,
            time=seconds,
            observed_frames=observed,
            context_start=first / self.fps,
            horizon=self.plan.horizon,
            fps=self.fps,
            latency=time.monotonic() - (self.features.arrival or time.monotonic()),
            lag=max(0.0, self.source.newest_time - seconds),
            skipped=self.skipped,
            final=final,
            end=end,
            observed_segments=self._in_stream_time(result.observed_segments, first),
            anticipated_segments=self._in_stream_time(result.anticipated_segments, first),
        )
        self.index += 1
        self.skipped = 0
        self.last_frames = observed
        return update

    def _in_stream_time(self, segments: tuple[Segment, ...], first: int) -> tuple[Segment, ...]:
        """Segments of the model's window shifted by its first feature frame (no shift without context)."""
        if first == 0:
            return segments
        return tuple(
            replace(
                segment,
                start=segment.start + first / self.fps,
                end=segment.end + first / self.fps,
                start_frame=segment.start_frame + first,
                end_frame=segment.end_frame + first,
            )
            for segment in segments
        )
