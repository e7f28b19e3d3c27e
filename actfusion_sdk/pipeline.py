"""One call from video (or features) to typed results: orchestration only, no math beyond unit conversions.

    pipeline = Pipeline("video.mp4")              # weights: explicit -> $ACTFUSION_WEIGHTS -> bundled demo
    result = pipeline.segment()                   # SegmentationResult
    future = pipeline.anticipate(ratio=0.3)       # AnticipationResult, same features (extracted once)

The model card decides how features are made (card.features -> FeatureSettings), so a model only ever sees
features made the way it was trained.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import ConfigError, InputError, VideoError, WeightsError
from .results import AnticipationResult, SegmentationResult
from .runtime import resolve_device
from .weights import resolve_weights

if TYPE_CHECKING:
    from .features.settings import FeatureSettings

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PreparedFeatures:
    """Features of one input, ready for the model: [D, T] at `fps` features/s over `duration` seconds."""

    features: np.ndarray
    fps: float
    duration: float
    source: str | None
    seconds: float  # wall time spent decoding and extracting (0 for precomputed features)


def check_anticipation_request(
    ratio: float | None, observed: float | None, horizon: float | None
) -> tuple[float | None, float | None, float | None]:
    """Validate `ratio` xor (`observed`, `horizon`); ratio defaults to 0.3 (the paper's α)."""
    if observed is None and horizon is None:
        ratio = 0.3 if ratio is None else float(ratio)
        if not 0.0 < ratio < 1.0:
            raise ConfigError(f"ratio must be in (0, 1) (the observed fraction of the video), got {ratio}")
        return ratio, None, None
    if ratio is not None:
        raise ConfigError("give either a ratio or observed and horizon (seconds), not both")
    if observed is None or horizon is None:
        raise ConfigError("observed and horizon (seconds) go together; give both, or a ratio instead")
    if not (observed > 0 and horizon > 0):
        raise ConfigError(
            f"observed and horizon must be positive seconds, got observed={observed}, horizon={horizon}"
        )
    return None, float(observed), float(horizon)


class Pipeline:
    """Segment and anticipate actions in one video, several videos, or precomputed features.

    `segment()` and `anticipate()` return one result, or a list when `source` is a list. Features are
    extracted once per video and reused. Sampling is seeded per call (`seed=`), the same seed for every video.
    """

    def __init__(
        self,
        source: PathLike | Sequence[PathLike],
        weights: PathLike | None = None,
        device: str | torch.device | None = None,
        attention_impl: str = "auto",
        i3d_weights: PathLike | dict[str, torch.Tensor] | None = None,
        precision: str | None = None,
        progress: bool = True,
    ) -> None:
        videos = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        if not videos:
            raise ConfigError("Pipeline needs at least one video path; got an empty list")
        for video in videos:
            if not Path(video).is_file():
                raise VideoError(f"video {str(video)!r} does not exist or is not a file; check the path")
        self._load(weights, device, attention_impl)
        self._many = not isinstance(source, (str, os.PathLike))
        self._sources: list[PathLike | None] = videos
        self._prepared: list[PreparedFeatures | None] = [None] * len(videos)
        self._settings = self._feature_settings()
        self._extractor_options = {"weights": i3d_weights, "precision": precision or self._settings.precision}
        self._extractor = None
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
        inputs = list(features) if isinstance(features, (list, tuple)) else [features]
        if not inputs:
            raise ConfigError("from_features needs at least one array or .npy path; got an empty list")
        if duration is not None and len(inputs) > 1:
            raise ConfigError("duration= applies to a single input; several inputs take T / fps each")
        pipeline = cls.__new__(cls)
        pipeline._load(weights, device, attention_impl)
        fps = pipeline.card.fps if fps is None else fps
        if fps is None or not fps > 0:
            raise ConfigError(
                f"fps (features per second) must be positive and the model card has none; got {fps}"
            )
        pipeline._many = isinstance(features, (list, tuple))
        pipeline._sources = [None] * len(inputs)
        pipeline._prepared = [pipeline._precomputed(item, float(fps), duration) for item in inputs]
        pipeline.progress = False
        return pipeline

    def _load(self, weights: PathLike | None, device: str | torch.device | None, attention_impl: str) -> None:
        """Resolve the device and the weights, and load the model in eval mode."""
        from .model.checkpoint import load_model

        self.device = resolve_device(device)
        self.weights = resolve_weights(weights)
        loaded = load_model(self.weights, device=self.device)
        self.model, self.card = loaded.model, loaded.card
        self.model.attention_impl = attention_impl
        self.model.eval()

    def _feature_settings(self) -> FeatureSettings:
        """The card's feature settings (a model only works on features made the way it was trained)."""
        from .features.settings import FeatureSettings

        if self.card.features is None:
            raise WeightsError(
                f"the model card of {self.weights} records no feature settings, so it cannot run on video; "
                "use Pipeline.from_features with the features it was trained on"
            )
        try:
            return FeatureSettings.from_dict(self.card.features)
        except ConfigError as err:
            raise WeightsError(
                f"the model card of {self.weights} has invalid feature settings: {err}"
            ) from err

    def _precomputed(
        self, item: np.ndarray | PathLike, fps: float, duration: float | None
    ) -> PreparedFeatures:
        source = None
        if not isinstance(item, np.ndarray):
            source = str(item)
            try:
                item = np.load(source, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise InputError(f"cannot load features from {source!r}: {err}") from err
        expected = self.card.config.encoder.input_dim
        if item.ndim != 2 or item.shape[0] != expected:
            raise InputError(
                f"features{f' in {source!r}' if source else ''} must be [{expected}, T] (feature dim first), "
                f"got shape {tuple(item.shape)}; transpose a [T, {expected}] array with .T"
            )
        duration = item.shape[1] / fps if duration is None else float(duration)
        return PreparedFeatures(np.asarray(item, dtype=np.float32), fps, duration, source, 0.0)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.card.classes)

    def features(self) -> list[PreparedFeatures]:
        """Features of every input, extracting (once) those not yet extracted."""
        return [self._features_of(index) for index in range(len(self._prepared))]

    def _features_of(self, index: int) -> PreparedFeatures:
        if self._prepared[index] is None:
            self._prepared[index] = self._extract(self._sources[index])
        return self._prepared[index]

    def _extract(self, video: PathLike) -> PreparedFeatures:
        from .features.i3d import I3DFeatureExtractor

        if self._extractor is None:
            self._extractor = I3DFeatureExtractor(
                self._settings, device=self.device, **self._extractor_options
            )
        started = time.perf_counter()
        with _ProgressBar(Path(video).name, enabled=self.progress) as report:
            extracted = self._extractor.extract(video, progress=report)
        seconds = time.perf_counter() - started
        return PreparedFeatures(
            extracted.features, extracted.fps_features, extracted.duration, str(video), seconds
        )

    def segment(self, seed: int = 0) -> SegmentationResult | list[SegmentationResult]:
        """Temporal action segmentation of every input."""
        from .model.inference import segment

        def predict(prepared: PreparedFeatures) -> Any:
            return segment(self.model, prepared.features, seed=seed)

        def build(
            prepared: PreparedFeatures, prediction: Any, timings: dict[str, float]
        ) -> SegmentationResult:
            return SegmentationResult.from_frames(
                prediction.labels,
                self.classes,
                prepared.fps,
                frame_probs=prediction.probs,
                duration=prepared.duration,
                video=prepared.source,
                model=self.card.config.name,
                timings=timings,
            )

        return self._run_all(predict, build)

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
        from .model.inference import anticipate

        ratio, observed, horizon = check_anticipation_request(ratio, observed, horizon)

        def total_frames(prepared: PreparedFeatures) -> int:
            if ratio is not None:
                return prepared.features.shape[1]
            return observed_frames(prepared) + max(1, round(horizon * prepared.fps))

        def observed_frames(prepared: PreparedFeatures) -> int:
            available = prepared.features.shape[1]
            frames = round(observed * prepared.fps)
            if not 1 <= frames <= available:
                raise ConfigError(
                    f"observed={observed} s is {frames} feature frames but {prepared.source or 'the input'} "
                    f"has {available} ({prepared.duration:.2f} s); observe at least one frame and at most all"
                )
            return frames

        def predict(prepared: PreparedFeatures) -> Any:
            total = total_frames(prepared)
            if ratio is not None:
                return anticipate(
                    self.model, prepared.features, total_frames=total, observation_ratio=ratio, seed=seed
                )
            frames = observed_frames(prepared)
            return anticipate(
                self.model,
                prepared.features[:, :frames],
                total_frames=total,
                observed_frames=frames,
                seed=seed,
            )

        def build(
            prepared: PreparedFeatures, prediction: Any, timings: dict[str, float]
        ) -> AnticipationResult:
            total, cut = total_frames(prepared), prediction.observed_frames
            if not 0 < cut < total:
                raise ConfigError(
                    f"ratio {ratio} observes {cut} of {total} feature frames of "
                    f"{prepared.source or 'the input'}, leaving nothing to observe or to anticipate; "
                    "choose a ratio further from 0 and 1"
                )
            # A ratio keeps the input's duration; observed + horizon lies on the feature-frame grid.
            duration = prepared.duration if ratio is not None else total / prepared.fps
            return AnticipationResult.from_frames(
                prediction.labels,
                self.classes,
                prepared.fps,
                cut,
                frame_probs=prediction.probs,
                duration=duration,
                observation_ratio=ratio,
                video=prepared.source,
                model=self.card.config.name,
                timings=timings,
            )

        return self._run_all(predict, build)

    def _run_all(
        self,
        predict: Callable[[PreparedFeatures], Any],
        build: Callable[[PreparedFeatures, Any, dict[str, float]], Any],
    ) -> Any:
        """Predict and build a result for every input, timing the stages: features, model, results."""
        results = []
        for index in range(len(self._prepared)):
            prepared = self._features_of(index)
            started = time.perf_counter()
            prediction = predict(prepared)
            predicted = time.perf_counter()
            timings = {"features": prepared.seconds, "model": predicted - started}
            result = build(prepared, prediction, timings)
            timings["results"] = time.perf_counter() - predicted
            results.append(replace(result, timings=MappingProxyType(timings)))
        return results if self._many else results[0]


class _ProgressBar:
    """A tqdm bar on stderr fed by the extractor's `progress(done, expected)` callback."""

    def __init__(self, name: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(desc=name, unit="feature", file=sys.stderr, leave=False, disable=not enabled)

    def __enter__(self) -> Callable[[int, int | None], None]:
        return self._update

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()

    def _update(self, done: int, expected: int | None) -> None:
        self._bar.total = expected
        self._bar.n = done
        self._bar.refresh()
