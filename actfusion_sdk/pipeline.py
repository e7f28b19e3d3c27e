"""One call from video (or features) to typed results: a thin facade that binds sources to a Predictor.

pipeline = Pipeline("video.mp4")              # weights: explicit -> $ACTFUSION_WEIGHTS -> bundled demo
result = pipeline.segment()                   # SegmentationResult
future = pipeline.anticipate(ratio=0.3)       # AnticipationResult, same features (extracted once)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from .errors import ConfigError, VideoError
from .limits import check_seed
from .predictor import AnticipationWindow, Predictor, PreparedFeatures
from .results import AnticipationResult, SegmentationResult

if TYPE_CHECKING:
    from .live import LiveUpdate

PathLike = str | os.PathLike[str]
Result = TypeVar("Result", SegmentationResult, AnticipationResult)


class Pipeline:
    """Segment and anticipate actions in one video, several videos, or precomputed features.

    `segment()` and `anticipate()` return one result, or a list when `source` is a list. Features are
    extracted once per video and reused. Sampling is seeded per call (`seed=`), the same seed for every video.
    Pass `predictor=` to share one loaded model between pipelines (then leave the model options unset).
    """

    def __init__(
        self,
        source: PathLike | PreparedFeatures | Sequence[PathLike | PreparedFeatures],
        weights: PathLike | None = None,
        device: str | torch.device | None = None,
        attention_impl: str = "auto",
        i3d_weights: PathLike | dict[str, torch.Tensor] | None = None,
        precision: str | None = None,
        progress: bool = True,
        *,
        predictor: Predictor | None = None,
    ) -> None:
        self._many = isinstance(source, (list, tuple))
        items = list(source) if self._many else [source]
        if not items:
            raise ConfigError("Pipeline needs at least one video path; got an empty list")
        for item in items:
            if not isinstance(item, PreparedFeatures) and not Path(item).is_file():
                raise VideoError(f"video {str(item)!r} does not exist or is not a file; check the path")
        if predictor is None:
            predictor = Predictor(weights, device, attention_impl, i3d_weights, precision)
        elif any(option is not None for option in (weights, device, i3d_weights, precision)):
            raise ConfigError("give either predictor= or the model options (weights, device, ...), not both")
        if not all(isinstance(item, PreparedFeatures) for item in items):
            predictor.feature_settings()  # a card that cannot run on video fails here, before any work
        self.predictor = predictor
        self._inputs: list[PathLike | PreparedFeatures] = items
        self.progress = progress

    @classmethod
    def from_features(
        cls,
        features: np.ndarray | PathLike | Sequence[np.ndarray | PathLike],
        fps: float | None = None,
        weights: PathLike | None = None,
        device: str | torch.device | None = None,
        attention_impl: str = "auto",
        duration: float | None = None,
    ) -> Pipeline:
        """Skip decoding: `features` is a [D, T] array or .npy path (or a list of them) at `fps` features/s.

        `fps` defaults to the model card's; `duration` (one input only) defaults to T / fps.
        """
        many = isinstance(features, (list, tuple))
        inputs = list(features) if many else [features]
        if not inputs:
            raise ConfigError("from_features needs at least one array or .npy path; got an empty list")
        if duration is not None and len(inputs) > 1:
            raise ConfigError("duration= applies to a single input; several inputs take T / fps each")
        predictor = Predictor(weights, device, attention_impl)
        prepared = [predictor.load_features(item, fps, duration) for item in inputs]
        return cls(prepared if many else prepared[0], predictor=predictor, progress=False)

    @property
    def model(self):
        return self.predictor.model

    @property
    def card(self):
        return self.predictor.card

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    @property
    def weights(self) -> Path:
        return self.predictor.weights

    @property
    def classes(self) -> tuple[str, ...]:
        return self.predictor.classes

    def features(self) -> list[PreparedFeatures]:
        """Features of every input, extracting (once) those not yet extracted."""
        return [self._features_of(index) for index in range(len(self._inputs))]

    def _features_of(self, index: int, window: AnticipationWindow | None = None) -> PreparedFeatures:
        """Input `index`'s features, extracted once; an observed/horizon `window` needs only its part."""
        item = self._inputs[index]
        if isinstance(item, PreparedFeatures) and (item.complete or _covers(item, window)):
            return item
        video = item.source if isinstance(item, PreparedFeatures) else item
        prepared = self.predictor.extract(video, progress=self.progress, window=window)
        if not isinstance(item, PreparedFeatures) or prepared.frames > item.frames:
            self._inputs[index] = prepared
        return prepared

    def segment(self, seed: int = 0) -> SegmentationResult | list[SegmentationResult]:
        """Temporal action segmentation of every input."""
        check_seed(seed)  # before any extraction
        return self._each(lambda index: self.predictor.segment(self._features_of(index), seed=seed))

    def anticipate(
        self,
        ratio: float | None = None,
        *,
        observed: float | None = None,
        horizon: float | None = None,
        seed: int = 0,
    ) -> AnticipationResult | list[AnticipationResult]:
        """Anticipate what follows the observed part.

        `ratio` (default 0.3, the paper's α): observe that fraction of each video, anticipate the rest.
        `observed` and `horizon` (seconds): observe the first `observed` seconds, anticipate `horizon` more
        (which may reach beyond the end of the video).
        """
        window = AnticipationWindow(ratio, observed, horizon)
        check_seed(seed)  # before any extraction
        return self._each(
            lambda index: self.predictor.anticipate(self._features_of(index, window), window, seed=seed)
        )

    @classmethod
    def stream(
        cls,
        source: PathLike | Iterable[tuple[float, np.ndarray]],
        every: float = 2.0,
        horizon: float = 30.0,
        context: float | None = None,
        seed: int = 0,
        *,
        drop: bool = False,
        realtime: bool = False,
        follow: bool = False,
        format: str | None = None,  # noqa: A002 - PyAV's name for the container/device format
        options: dict[str, str] | None = None,
        stall_seconds: float = 10.0,
        weights: PathLike | None = None,
        device: str | torch.device | None = None,
        predictor: Predictor | None = None,
    ) -> Iterator[LiveUpdate]:
        """Rolling `LiveUpdate`s while `source` plays: every `every` s of stream time, the segmentation so
        far and the anticipated next `horizon` s (see actfusion_sdk.live).

        `source`: a path, FIFO, `pipe:0`, rtsp:// or http(s):// URL, a V4L2 device (`format="v4l2"`), or an
        iterable of (timestamp seconds, HxWx3 uint8 array). `context` (s) bounds the model's input to the
        latest part of the stream; `drop` skips stale updates; `realtime` paces a file at 1x; `follow` reads
        a file that is still being written; a source silent for `stall_seconds` ends the stream.
        """
        from .live import UpdatePlan, live_updates
        from .video.live import LiveSource

        plan = UpdatePlan(every, horizon, context, seed, drop)
        if predictor is None:
            predictor = Predictor(weights, device)
        elif weights is not None or device is not None:
            raise ConfigError("give either predictor= or weights/device, not both")
        settings = predictor.feature_settings()
        plan.check_rate(settings.features_per_second)
        live = LiveSource(
            source,
            settings.fps,
            short_side=settings.short_side,
            crop_size=settings.crop_size,
            format=format,
            options=options,
            realtime=realtime,
            follow=follow,
            stall_seconds=stall_seconds,
        )
        return live_updates(predictor, live, plan)

    def _each(self, answer: Callable[[int], Result]) -> Result | list[Result]:
        results = [answer(index) for index in range(len(self._inputs))]
        return results if self._many else results[0]


def _covers(prepared: PreparedFeatures, window: AnticipationWindow | None) -> bool:
    """Whether the first features of a video, `prepared`, are all that `window` observes."""
    needed = None if window is None else window.observed_frames(prepared.fps)
    return needed is not None and needed <= prepared.frames
