"""Batch extraction to an MS-TCN layout: ``<out>/features/<name>.npy`` ([2048, T] float32) + a JSON sidecar.

Each file is written atomically (temporary file + ``os.replace``); a video is skipped when its sidecar records
the same input (path, size, mtime, content fingerprint) and settings; a failing video is recorded in the
report while the batch goes on. Videos sharing a stem get distinct names (`claim_output_names`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..errors import ConfigError
from ..outputs import (
    InputFailure,
    InputIdentity,
    Run,
    claim_output_names,
    output_is_finished,
    output_record,
    prepare_output_dir,
    record_failures,
    write_outputs,
)
from ..video.decode import VideoInfo
from ..video.files import VIDEO_SUFFIXES
from .i3d import I3DFeatureExtractor, VideoFeatures
from .settings import EXTRACTOR_MSTCN, FeatureSettings


class FeatureExtractor(Protocol):
    """What extraction needs of an extractor: i3d_r50's `I3DFeatureExtractor` or `MstcnFeatureExtractor`."""

    settings: FeatureSettings
    precision: str

    def extract(
        self,
        video_path: str | Path,
        progress: Callable[[int, int | None], None] | None = None,
        max_features: int | None = None,
        info: VideoInfo | None = None,
    ) -> VideoFeatures: ...


def build_extractor(
    settings: FeatureSettings,
    weights: str | Path | dict | None = None,
    *,
    flow_weights: str | Path | None = None,
    device: str | torch.device | None = None,
    precision: str | None = None,
    batch_size: int = 8,
    flow_cache: str | Path | None = None,
) -> FeatureExtractor:
    """The extractor that ``settings`` name: i3d_r50 (``weights``: its .pyth) or the MS-TCN two-stream
    Inception-I3D (``weights``/``flow_weights``: the RGB/flow weights, else the paths the settings record;
    ``flow_cache``: a folder for per-video flow)."""
    if settings.extractor == EXTRACTOR_MSTCN:
        from .mstcn import MstcnFeatureExtractor

        return MstcnFeatureExtractor(
            settings, weights, flow_weights, device, precision, batch_size, flow_cache=flow_cache
        )
    if flow_weights is not None:
        raise ConfigError("flow weights are for the MS-TCN features (--settings mstcn) only")
    return I3DFeatureExtractor(settings, weights, device=device, precision=precision, batch_size=batch_size)


@dataclass
class ExtractionReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[InputFailure] = field(default_factory=list)
    failures_file: Path | None = None

    def summary(self) -> str:
        lines = [f"{len(self.written)} extracted, {len(self.skipped)} skipped, {len(self.failed)} failed"]
        lines += [f"  FAILED {f.video}: {f.error}" for f in self.failed]
        return "\n".join(lines)


def find_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given and the videos (by suffix) under each directory, sorted; order kept, no repeats."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            # Broken links and link loops are listed too, so that they are reported rather than skipped.
            found += sorted(
                p
                for p in item.rglob("*")
                if (p.is_file() or p.is_symlink()) and p.suffix.lower() in VIDEO_SUFFIXES
            )
        else:
            found.append(item)
    return list(dict.fromkeys(found))


def sidecar(
    result: VideoFeatures, precision: str, identity: InputIdentity, digests: dict[str, str]
) -> dict[str, Any]:
    """The JSON record written next to a feature file (also its `output_is_finished` record; digests: the
    feature file's sha256 by its name)."""
    settings = result.settings
    return {
        **output_record(identity, settings.to_dict(), digests),
        "video": str(result.source),
        "shape": list(result.features.shape),
        "fps": settings.fps,
        "features_per_second": result.fps_features,
        "feature_stride": settings.feature_stride,
        "clip_frames": settings.clip_frames,
        "frame_stride": settings.frame_stride,
        "num_frames": result.num_frames,
        "duration": result.duration,
        "timestamps": [round(float(t), 6) for t in result.timestamps],
        "extractor": settings.extractor,
        "weights": settings.weights.to_dict(),
        "precision": precision,
    }


def feature_files(out_dir: Path, name: str) -> tuple[Path, Path]:
    """Where the features of the video named `name` go: ``out_dir/features/<name>.npy`` and its sidecar."""
    feature_dir = out_dir / "features"
    return feature_dir / f"{name}.npy", feature_dir / f"{name}.json"


def write_features(
    npy: Path, meta: Path, result: VideoFeatures, precision: str, identity: InputIdentity
) -> None:
    """The features (float32), then their sidecar (`write_outputs`): a sidecar means these very features."""

    def save(path: Path) -> None:
        with open(path, "wb") as handle:
            np.save(handle, result.features.astype(np.float32, copy=False))

    write_outputs(meta, {npy: save}, lambda digests: sidecar(result, precision, identity, digests))


def extract_to_directory(
    videos: Sequence[Path],
    out_dir: str | Path,
    extractor: FeatureExtractor,
    *,
    on_video: Callable[[int, Path], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> ExtractionReport:
    """Extract every video into ``out_dir/features``; failures are collected, merged into
    ``out_dir/failures.json`` and never stop the batch. ``on_video(index, video)`` runs before each video."""
    out_dir = prepare_output_dir(out_dir)
    prepare_output_dir(out_dir / "features")
    settings = extractor.settings.to_dict()
    report = ExtractionReport()
    run = Run.begin()
    names = claim_output_names(out_dir, videos)
    for index, video in enumerate(videos):
        if on_video is not None:
            on_video(index, video)
        npy, meta = feature_files(out_dir, names[video])
        try:
            identity = InputIdentity.of(video)
            if output_is_finished(meta, identity, settings):
                report.skipped.append(video)
                continue
            result = extractor.extract(video, progress=progress)
            write_features(npy, meta, result, extractor.precision, identity)
        except Exception as err:  # one bad video must not stop the batch; the report says what happened
            report.failed.append(InputFailure(video, f"{type(err).__name__}: {err}"))
            continue
        report.written.append(npy)
    finished = [video for video in videos if video not in {f.video for f in report.failed}]
    report.failures_file = record_failures(out_dir, run, report.failed, finished)
    return report
