"""The inference core: a loaded model and (lazily) its feature extractor, answering many calls.

    predictor = Predictor()                          # weights: explicit -> $ACTFUSION_WEIGHTS -> demo
    features = predictor.extract("video.mp4")        # PreparedFeatures (decode + I3D)
    predictor.segment(features, seed=0)              # SegmentationResult
    predictor.anticipate(features, AnticipationWindow(ratio=0.3))

`Pipeline` binds sources to one of these; the CLI, batch workers and the live loop call it directly. The model
card decides how features are made (card.features -> FeatureSettings), so a model only ever sees features made
the way it was trained; `VideoFeaturizer.from_card` makes them from the card alone, without loading the model.
"""

from __future__ import annotations

import functools
import logging
import numbers
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from .errors import ConfigError, InputError, WeightsError
from .limits import MAX_FEATURE_RATE, MAX_FRAMES, check_seconds, check_seed
from .results import AnticipationResult, SegmentationResult
from .runtime import resolve_device
from .weights import BUNDLED_DEFAULT, DEMO_VIDEO_TAG, resolve_weights

Result = TypeVar("Result", SegmentationResult, AnticipationResult)

if TYPE_CHECKING:
    from .features.extract import FeatureExtractor
    from .features.settings import FeatureSettings
    from .model.checkpoint import ModelCard

PathLike = str | os.PathLike[str]

DEFAULT_RATIO = 0.3  # the paper's observation ratio α
NO_DEMO_NOTICE = "ACTFUSION_NO_DEMO_NOTICE"  # set to hide the notice that the demo model runs on other video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedFeatures:
    """Features of one input, ready for the model: [D, T] at `fps` features/s over `duration` seconds."""

    features: np.ndarray
    fps: float
    duration: float
    source: str | None
    seconds: float  # wall time spent decoding and extracting (0 for precomputed features)
    complete: bool = True  # False: only the first features of the video were extracted (see `extract`)

    @property
    def frames(self) -> int:
        return self.features.shape[1]


@dataclass(frozen=True)
class FrameWindow:
    """A window on the feature-frame grid: `observed` of `total` frames (None: by ratio, per stream)."""

    total: int
    observed: int | None


@dataclass(frozen=True)
class AnticipationWindow:
    """What to observe and how far to anticipate: a `ratio` of each input, or `observed` + `horizon` seconds.

    `AnticipationWindow()` is the paper's protocol (ratio 0.3); `horizon` may reach beyond the input's end.
    """

    ratio: float | None = None
    observed: float | None = None
    horizon: float | None = None

    def __post_init__(self) -> None:
        if self.observed is None and self.horizon is None:
            ratio = DEFAULT_RATIO if self.ratio is None else self.ratio
            if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
                raise ConfigError(f"ratio must be a number in (0, 1), got {ratio!r}")
            ratio = float(ratio)
            if not 0.0 < ratio < 1.0:
                raise ConfigError(
                    f"ratio must be in (0, 1) (the observed fraction of the video), got {ratio}"
                )
            object.__setattr__(self, "ratio", ratio)
            return
        if self.ratio is not None:
            raise ConfigError("give either a ratio or observed and horizon (seconds), not both")
        if self.observed is None or self.horizon is None:
            raise ConfigError("observed and horizon (seconds) go together; give both, or a ratio instead")
        for name in ("observed", "horizon"):
            object.__setattr__(self, name, check_seconds(name, getattr(self, name)))

    def observed_frames(self, fps: float) -> int | None:
        """Feature frames observed at `fps` features/s (None for a ratio: it depends on the input)."""
        return None if self.observed is None else round(self.observed * fps)

    def check_rate(self, fps: float) -> None:
        """Refuse, before any decoding, an observation shorter than one feature frame at `fps` features/s,
        or a window of more than MAX_FRAMES feature frames."""
        observed = self.observed_frames(fps)
        if observed is None:
            return
        if observed < 1:
            raise ConfigError(
                f"observed={self.observed:g} s is less than one feature frame of this model "
                f"({fps:g} features/s); observe at least {0.5 / fps:g} s"
            )
        total = observed + max(1, round(self.horizon * fps))
        if total > MAX_FRAMES:
            raise ConfigError(
                f"observed + horizon = {self.observed + self.horizon:g} s is {total} feature frames of this "
                f"model ({fps:g} features/s), more than the {MAX_FRAMES} it answers at once; shorten them"
            )

    def check_duration(self, duration: float | None, fps: float, source: str) -> None:
        """Refuse, before decoding, an observation longer than a video (`duration`: what its container
        states; half a feature frame at `fps` of slack, as `frames` rounds to the grid)."""
        if self.observed is not None and duration is not None and self.observed > duration + 0.5 / fps:
            raise ConfigError(
                f"observed={self.observed:g} s but {source} lasts {duration:.2f} s; "
                "observe at most the whole video"
            )

    def frames(self, prepared: PreparedFeatures) -> FrameWindow:
        """Seconds -> feature frames of `prepared` (the one place this conversion happens)."""
        self.check_rate(prepared.fps)
        observed = self.observed_frames(prepared.fps)
        if observed is None:
            return FrameWindow(total=prepared.frames, observed=None)
        if not 1 <= observed <= prepared.frames:
            raise ConfigError(
                f"observed={self.observed} s is {observed} feature frames but "
                f"{prepared.source or 'the input'} has {prepared.frames} ({prepared.duration:.2f} s); "
                "observe at least one frame and at most all"
            )
        return FrameWindow(total=observed + max(1, round(self.horizon * prepared.fps)), observed=observed)


class VideoFeaturizer:
    """Decode + I3D features the way a model card says (card.features), without the model itself.

    `weights`: the resolved model path whose `card` this is; `i3d_weights` and `precision` configure the
    extractor (default: the card's settings), which is built on first use.
    """

    def __init__(
        self,
        weights: Path,
        card: ModelCard,
        device: torch.device,
        i3d_weights: PathLike | dict[str, torch.Tensor] | None = None,
        precision: str | None = None,
    ) -> None:
        self.weights, self.card, self.device = weights, card, device
        self._i3d_weights = i3d_weights
        self._precision = precision
        self._extractor: FeatureExtractor | None = None

    @classmethod
    def from_card(
        cls, weights: PathLike | None = None, device: str | torch.device | None = None
    ) -> VideoFeaturizer:
        """The featurizer of the model at `weights` (resolved as Predictor does), reading only its card."""
        from .model.checkpoint import load_card

        resolved = resolve_weights(weights)
        return cls(resolved, load_card(resolved), resolve_device(device))

    def feature_settings(self) -> FeatureSettings:
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

    @property
    def extractor(self) -> FeatureExtractor:
        """The extractor for the card's settings (i3d_r50, or MS-TCN with the weights the card names), built
        on first use."""
        if self._extractor is None:
            from .features.extract import build_extractor

            settings = self.feature_settings()
            self._extractor = build_extractor(
                settings,
                self._i3d_weights,
                device=self.device,
                precision=self._precision or settings.precision,
            )
        return self._extractor

    def extract(
        self, video: PathLike, progress: bool = False, window: AnticipationWindow | None = None
    ) -> PreparedFeatures:
        """Decode `video` and extract its features (a progress bar on stderr when `progress`).

        With an observed/horizon `window`, the request is checked against the container's duration first and
        only the observed features are extracted (decoding stops where their clips end).
        """
        from .video.decode import probe_video

        info = probe_video(video)
        if Path(self.weights).resolve() == BUNDLED_DEFAULT and info.comment != DEMO_VIDEO_TAG:
            _demo_model_notice()
        needed = None
        if window is not None and window.observed is not None:
            fps = self.feature_settings().features_per_second
            window.check_rate(fps)
            window.check_duration(info.duration, fps, repr(str(video)))
            needed = window.observed_frames(fps)
        extractor = self.extractor  # built on first use, outside the features' timing
        started = time.perf_counter()
        with _ProgressBar(Path(video).name, enabled=progress) as report:
            extracted = extractor.extract(video, progress=report, max_features=needed, info=info)
        return PreparedFeatures(
            extracted.features,
            extracted.fps_features,
            extracted.duration,
            str(video),
            time.perf_counter() - started,
            complete=needed is None or extracted.features.shape[1] < needed,
        )

    def prepare(
        self,
        video: PathLike,
        progress: bool = False,
        window: AnticipationWindow | None = None,
        features_dir: PathLike | None = None,
        cache: bool = True,
    ) -> PreparedFeatures:
        """`video`'s features, decoding it only when they were not made before: from `features_dir` (what
        `actfusion extract` wrote; an InputError when they are missing or were made otherwise), else from the
        per-video cache when `cache` (see `features.reuse`), else `extract`ed (and then cached when complete).
        """
        from .features.reuse import find_extracted, load_cached, store_cached
        from .outputs import InputIdentity

        try:
            identity = InputIdentity.of(video)
        except InputError:  # missing or unreadable: the decoder says why, as a VideoError
            return self.extract(video, progress=progress, window=window)
        settings = self.feature_settings()
        precision = self._precision or settings.precision  # as the extractor will run, without building it
        started = time.perf_counter()
        if features_dir is not None:
            stored = find_extracted(features_dir, identity, settings.to_dict(), precision)
        else:
            stored = load_cached(identity, settings.to_dict(), precision) if cache else None
        if stored is not None:
            return PreparedFeatures(
                stored.features, stored.fps, stored.duration, str(video), time.perf_counter() - started
            )
        prepared = self.extract(video, progress=progress, window=window)
        if cache and prepared.complete:
            store_cached(prepared.features, prepared.fps, prepared.duration, settings, precision, identity)
        return prepared


class Predictor(VideoFeaturizer):
    """A model loaded once (and its feature extractor, loaded on first use) that answers per call.

    `weights`: a checkpoint directory, model.json or .safetensors (default: $ACTFUSION_WEIGHTS, then the
    bundled demo model). `i3d_weights` and `precision` configure the extractor (default: the card's settings).
    """

    def __init__(
        self,
        weights: PathLike | None = None,
        device: str | torch.device | None = None,
        attention_impl: str = "auto",
        i3d_weights: PathLike | dict[str, torch.Tensor] | None = None,
        precision: str | None = None,
    ) -> None:
        from .model.checkpoint import load_model

        device = resolve_device(device)
        weights = resolve_weights(weights)
        loaded = load_model(weights, device=device)
        super().__init__(weights, loaded.card, device, i3d_weights, precision)
        self.model = loaded.model
        self.model.attention_impl = attention_impl
        self.model.eval()

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.card.classes)

    def load_features(
        self, item: np.ndarray | PathLike, fps: float | None = None, duration: float | None = None
    ) -> PreparedFeatures:
        """Precomputed features: a [D, T] array or .npy path at `fps` features/s (default: the card's)."""
        if fps is None and self.card.fps is None:
            raise ConfigError("give fps (features per second): the model card has none")
        fps = self.card.fps if fps is None else fps
        if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps <= MAX_FEATURE_RATE:
            raise ConfigError(f"fps (features per second) must be in (0, {MAX_FEATURE_RATE}], got {fps!r}")
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
        where = f" in {source!r}" if source else ""
        if item.dtype.kind not in "fiu":
            raise InputError(f"features{where} must be numbers, got an array of {item.dtype}")
        if item.shape[1] == 0:
            raise InputError(f"features{where} hold no frames (shape {tuple(item.shape)})")
        if not np.isfinite(item).all():
            raise InputError(f"features{where} hold NaN or infinite values; extract them again")
        duration = item.shape[1] / fps if duration is None else check_seconds("duration", duration)
        return PreparedFeatures(np.asarray(item, dtype=np.float32), float(fps), duration, source, 0.0)

    def segment(self, prepared: PreparedFeatures, seed: int = 0) -> SegmentationResult:
        """Temporal action segmentation of one input."""
        from .model.inference import segment

        check_seed(seed)
        started = time.perf_counter()
        prediction = segment(self.model, prepared.features, seed=seed)
        predicted = time.perf_counter()
        result = SegmentationResult.from_frames(
            prediction.labels,
            self.classes,
            prepared.fps,
            frame_probs=prediction.probs,
            duration=prepared.duration,
            video=prepared.source,
            model=self.card.config.name,
        )
        return _timed(result, prepared, started, predicted)

    def anticipate(
        self, prepared: PreparedFeatures, window: AnticipationWindow | None = None, seed: int = 0
    ) -> AnticipationResult:
        """Anticipate what follows the observed part of one input (default window: ratio 0.3)."""
        from .model.inference import anticipate

        window = window or AnticipationWindow()
        check_seed(seed)
        frames = window.frames(prepared)
        started = time.perf_counter()
        if window.ratio is not None:
            prediction = anticipate(
                self.model,
                prepared.features,
                total_frames=frames.total,
                observation_ratio=window.ratio,
                seed=seed,
            )
        else:
            prediction = anticipate(
                self.model,
                prepared.features[:, : frames.observed],
                total_frames=frames.total,
                observed_frames=frames.observed,
                seed=seed,
            )
        predicted = time.perf_counter()
        cut = prediction.observed_frames
        if not 0 < cut < frames.total:
            raise ConfigError(
                f"ratio {window.ratio} observes {cut} of {frames.total} feature frames of "
                f"{prepared.source or 'the input'}, leaving nothing to observe or to anticipate; "
                "choose a ratio further from 0 and 1"
            )
        # A ratio keeps the input's duration; observed + horizon lies on the feature-frame grid.
        duration = prepared.duration if window.ratio is not None else frames.total / prepared.fps
        result = AnticipationResult.from_frames(
            prediction.labels,
            self.classes,
            prepared.fps,
            cut,
            frame_probs=prediction.probs,
            duration=duration,
            observation_ratio=window.ratio,
            video_duration=prepared.duration,
            video=prepared.source,
            model=self.card.config.name,
        )
        return _timed(result, prepared, started, predicted)


@functools.cache
def _demo_model_notice() -> None:
    """Say once per process that the bundled demo model knows only the procedural demo's synthetic actions."""
    if os.environ.get(NO_DEMO_NOTICE):
        return
    log.warning(
        "the bundled demo model knows only the 10 synthetic actions of the procedural demo (moving coloured "
        "shapes), so its labels on other videos mean nothing; train a model for your actions with "
        "`actfusion extract` then `actfusion train` (README, 'Training'). Set %s=1 to hide this notice.",
        NO_DEMO_NOTICE,
    )


def _timed(result: Result, prepared: PreparedFeatures, started: float, predicted: float) -> Result:
    """`result` with its stage timings: features (from `prepared`), model, results."""
    timings = {
        "features": prepared.seconds,
        "model": predicted - started,
        "results": time.perf_counter() - predicted,
    }
    return replace(result, timings=MappingProxyType(timings))


class _ProgressBar:
    """A tqdm bar on stderr fed by the extractor's `progress(done, expected)` callback."""

    def __init__(self, name: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        # Shown from the first update on (an empty "0feature [00:00, ?]" line would precede every video).
        self._bar = tqdm(
            desc=name, unit="feature", file=sys.stderr, leave=False, disable=not enabled, delay=1e-9
        )

    def __enter__(self) -> Callable[[int, int | None], None]:
        return self._update

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()

    def _update(self, done: int, expected: int | None) -> None:
        self._bar.total = expected
        self._bar.n = done
        self._bar.refresh()
