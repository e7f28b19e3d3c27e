"""How features are made: one typed, JSON-safe record that a model card stores verbatim.

A model is only meaningful on features made the way it was trained, so everything that changes the
numbers (decode rate, clip geometry, resize/crop, normalisation, pooling, the extractor's weights) lives here.
Two extractors exist: pytorchvideo's i3d_r50 (the default) and DeepMind's two-stream Inception-I3D under the
MS-TCN protocol (`FeatureSettings.mstcn`, the features the official checkpoints of this field consume).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import ConfigError

EXTRACTOR_I3D_R50 = "pytorchvideo/i3d_r50"
POOLING_ADAPTIVE_MEAN = "adaptive_mean_res5"
EXTRACTOR_MSTCN = "deepmind/inception_i3d_mstcn"
POOLING_MSTCN = "mixed_5c_avg_2x7x7_time_mean"
MSTCN_STREAMS = ("rgb", "flow")
STREAM_DIM = 1024  # one Inception-I3D stream's feature size
# The MS-TCN protocol fixes these (every frame, a 21-frame window centred on it, short side 256, crop 224,
# (x - 127.5) / 127.5): FeatureSettings.mstcn fills them in and validation refuses anything else.
MSTCN_GEOMETRY = {
    "clip_frames": 21,
    "frame_stride": 1,
    "feature_stride": 1,
    "short_side": 256,
    "crop_size": 224,
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "pooling": POOLING_MSTCN,
}
PRECISIONS = ("fp32", "bf16")
WEIGHT_KINDS = ("seeded", "file")
FEATURE_DIM = 2048
FPS_RANGE = (0.1, 1000.0)  # decode rates outside this are mistakes (and 1e6 fps plans days of work)
# Upper bounds of the integer settings: far above any real use, low enough to catch typos before decoding.
INTEGER_LIMITS = {
    "clip_frames": 512,
    "frame_stride": 256,
    "feature_stride": 100_000,
    "short_side": 2048,
    "crop_size": 2048,
}


@dataclass(frozen=True)
class WeightsSource:
    """Where the extractor's weights come from: a seed (the demo extractor) or a file identified by sha256.

    ``path``: where the file lives, for settings that must find their weights by themselves (a model card made
    by ``actfusion import-checkpoint``); extraction records keep only the sha256.
    """

    kind: str
    seed: int | None = None
    sha256: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in WEIGHT_KINDS:
            raise ConfigError(f"weights kind {self.kind!r} is unknown; use one of {', '.join(WEIGHT_KINDS)}")
        if self.kind == "seeded" and (not isinstance(self.seed, int) or self.seed < 0):
            raise ConfigError(f"seeded weights need a non-negative integer seed, got {self.seed!r}")
        if self.sha256 is not None and (
            len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256)
        ):
            raise ConfigError(f"weights sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if self.path is not None and (self.kind != "file" or not isinstance(self.path, str) or not self.path):
            raise ConfigError(
                f"a weights path must be a non-empty string of a file source, got {self.path!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "seeded":
            return {"kind": "seeded", "seed": self.seed}
        if self.path is not None:
            return {"kind": "file", "sha256": self.sha256, "path": self.path}
        return {"kind": "file", "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightsSource:
        if not isinstance(data, dict) or "kind" not in data:
            raise ConfigError(f"feature weights must be a dict with a 'kind', got {data!r}")
        unknown = set(data) - {"kind", "seed", "sha256", "path"}
        if unknown:
            raise ConfigError(f"unknown keys in feature weights: {sorted(unknown)}")
        return cls(kind=data["kind"], seed=data.get("seed"), sha256=data.get("sha256"), path=data.get("path"))


@dataclass(frozen=True)
class FeatureSettings:
    """Feature-extraction settings.

    Frames are decoded at ``fps`` (resampled by presentation time). One feature is made every
    ``feature_stride`` decoded frames, from a clip of ``clip_frames`` frames taken every ``frame_stride``-th
    frame and centred on the feature's time; frames before the start or after the end are edge replicas.
    Each frame's short side is resized to ``short_side`` (antialiased bilinear), centre-cropped to
    ``crop_size``², scaled to [0, 1] and normalised with ``mean``/``std``. The feature is the mean of res5
    over time and space (``pooling``), a raw 2048-d vector: per-video normalisation is the model's job
    (its ``use_instance_norm``). ``precision`` is the default compute precision of the extractor.

    The MS-TCN extractor (``extractor == EXTRACTOR_MSTCN``, see `mstcn`) has one feature per frame from
    ``streams`` (RGB, and optical flow with ``flow_weights``); its ``fps`` may be None: every decoded frame at
    the video's own rate.
    """

    fps: float | None
    clip_frames: int
    frame_stride: int
    feature_stride: int
    short_side: int
    crop_size: int
    weights: WeightsSource
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    extractor: str = EXTRACTOR_I3D_R50
    pooling: str = POOLING_ADAPTIVE_MEAN
    precision: str = "fp32"
    streams: tuple[str, ...] | None = None  # MS-TCN only: ("rgb",) or ("rgb", "flow")
    flow_weights: WeightsSource | None = None  # MS-TCN only: the flow stream's weights

    def __post_init__(self) -> None:
        low, high = FPS_RANGE
        native = self.fps is None and self.extractor == EXTRACTOR_MSTCN
        if not native and (not _is_number(self.fps) or not low <= self.fps <= high):
            raise ConfigError(
                f"fps must be a number from {low:g} to {high:g} frames per second, got {self.fps!r}"
            )
        for name, limit in INTEGER_LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
                raise ConfigError(f"{name} must be an integer from 1 to {limit}, got {value!r}")
        if self.crop_size > self.short_side:
            raise ConfigError(f"crop_size {self.crop_size} is larger than short_side {self.short_side}")
        if self.crop_size < 32:
            raise ConfigError(f"crop_size {self.crop_size} is too small for i3d_r50 (needs >= 32 px)")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != 3 or not all(map(_is_number, value)):
                raise ConfigError(f"{name} must be three numbers (R, G, B), got {value!r}")
        if not all(0 <= m <= 1 for m in self.mean):
            raise ConfigError(f"mean must lie in [0, 1] (pixels are scaled to [0, 1]), got {self.mean!r}")
        if not all(0 < s <= 1 for s in self.std):
            raise ConfigError(f"std must lie in (0, 1], got {self.std!r}")
        if self.extractor == EXTRACTOR_MSTCN:
            self._check_mstcn()
        elif self.extractor != EXTRACTOR_I3D_R50:
            raise ConfigError(
                f"extractor {self.extractor!r} is unknown; use {EXTRACTOR_I3D_R50!r} or {EXTRACTOR_MSTCN!r}"
            )
        elif self.pooling != POOLING_ADAPTIVE_MEAN:
            raise ConfigError(f"pooling {self.pooling!r} is unknown; only {POOLING_ADAPTIVE_MEAN!r} exists")
        elif self.streams is not None or self.flow_weights is not None:
            raise ConfigError(f"streams and flow_weights belong to the {EXTRACTOR_MSTCN!r} extractor only")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
        if not isinstance(self.weights, WeightsSource):
            raise ConfigError(f"weights must be a WeightsSource, got {self.weights!r}")

    def _check_mstcn(self) -> None:
        """The MS-TCN protocol's fixed geometry, its streams and their weights."""
        for name, value in MSTCN_GEOMETRY.items():
            if getattr(self, name) != value:
                raise ConfigError(
                    f"the MS-TCN protocol fixes {name} = {value!r}, got {getattr(self, name)!r}; "
                    "make the settings with FeatureSettings.mstcn()"
                )
        if self.streams not in (MSTCN_STREAMS[:1], MSTCN_STREAMS):
            raise ConfigError(f"MS-TCN streams must be ('rgb',) or ('rgb', 'flow'), got {self.streams!r}")
        if self.weights.kind != "file":
            raise ConfigError("the MS-TCN extractor needs weights from a file (kind 'file')")
        with_flow = "flow" in self.streams
        if with_flow != isinstance(self.flow_weights, WeightsSource) or (
            with_flow and self.flow_weights.kind != "file"
        ):
            raise ConfigError(
                "flow_weights must be a file WeightsSource exactly when the streams include 'flow', got "
                f"streams {self.streams!r} and flow_weights {self.flow_weights!r}"
            )

    @property
    def feature_dim(self) -> int:
        """The size of one feature vector: 2048 for i3d_r50, 1024 per MS-TCN stream."""
        return FEATURE_DIM if self.streams is None else STREAM_DIM * len(self.streams)

    @property
    def features_per_second(self) -> float | None:
        """Features per second (None for MS-TCN settings at each video's own rate)."""
        return None if self.fps is None else self.fps / self.feature_stride

    @property
    def clip_seconds(self) -> float | None:
        """Time spanned by one clip (None at each video's own rate)."""
        return None if self.fps is None else self.clip_frames * self.frame_stride / self.fps

    @classmethod
    def demo(cls, seed: int = 0) -> FeatureSettings:
        """The procedural demo's extractor (notes/procedural-demo.md): seeded weights, 112 px crops, 8 frames
        at stride 2, 2 features per second. Frames are decoded at 16 fps (the notes used 15) so that the
        feature stride is a whole number of frames (8); a clip then spans exactly 1 s."""
        return cls(
            fps=16.0,
            clip_frames=8,
            frame_stride=2,
            feature_stride=8,
            short_side=112,
            crop_size=112,
            weights=WeightsSource("seeded", seed=seed),
        )

    @classmethod
    def kinetics(cls, sha256: str | None = None) -> FeatureSettings:
        """i3d_r50 as trained on Kinetics-400 (spec §8): 30 fps, 8 frames every 8th, short side 256, centre
        crop 224; one feature every 15 frames (2 per second). ``sha256`` pins the weights file, when known."""
        return cls(
            fps=30.0,
            clip_frames=8,
            frame_stride=8,
            feature_stride=15,
            short_side=256,
            crop_size=224,
            weights=WeightsSource("file", sha256=sha256),
        )

    @classmethod
    def mstcn(
        cls,
        fps: float | None = None,
        streams: tuple[str, ...] = MSTCN_STREAMS,
        weights: WeightsSource | None = None,
        flow_weights: WeightsSource | None = None,
    ) -> FeatureSettings:
        """The MS-TCN feature protocol (DeepMind's two-stream Inception-I3D, one [2048] or [1024] feature per
        frame; docs/mstcn-features.md). ``fps``: resample to that rate by presentation time first (Breakfast
        and GTEA models: 15, 50 Salads: 30); None: every decoded frame at the video's own rate.
        ``weights`` and ``flow_weights`` default to unidentified files (given to the extractor)."""
        streams = tuple(streams)
        if flow_weights is None and "flow" in streams:
            flow_weights = WeightsSource("file")
        return cls(
            fps=None if fps is None else float(fps),
            weights=weights or WeightsSource("file"),
            extractor=EXTRACTOR_MSTCN,
            streams=streams,
            flow_weights=flow_weights,
            **MSTCN_GEOMETRY,
        )

    def with_weights(
        self, weights: WeightsSource, flow_weights: WeightsSource | None = None
    ) -> FeatureSettings:
        """These settings with other weights (and, for MS-TCN settings with flow, other flow weights)."""
        if flow_weights is None:
            return replace(self, weights=weights)
        return replace(self, weights=weights, flow_weights=flow_weights)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["weights"] = self.weights.to_dict()
        if self.streams is None:  # i3d_r50 settings: the same record as before MS-TCN settings existed
            del data["streams"], data["flow_weights"]
        else:
            data["streams"] = list(self.streams)
            data["flow_weights"] = None if self.flow_weights is None else self.flow_weights.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSettings:
        if not isinstance(data, dict):
            raise ConfigError(f"feature settings must be a dict, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown keys in feature settings: {sorted(unknown)}")
        required = {
            "fps",
            "clip_frames",
            "frame_stride",
            "feature_stride",
            "short_side",
            "crop_size",
            "weights",
        }
        missing = required - set(data)
        if missing:
            raise ConfigError(f"feature settings lack {sorted(missing)}")
        values = dict(data)
        values["weights"] = WeightsSource.from_dict(data["weights"])
        if values.get("flow_weights") is not None:
            values["flow_weights"] = WeightsSource.from_dict(values["flow_weights"])
        for name in ("mean", "std", "streams"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
