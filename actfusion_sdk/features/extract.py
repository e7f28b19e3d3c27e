"""Batch extraction to an MS-TCN layout: ``<out>/features/<name>.npy`` ([2048, T] float32) + a JSON sidecar.

Each file is written atomically (temporary file + ``os.replace``), videos whose outputs exist with the same
settings are skipped, and a failing video is recorded in the report while the batch goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_write
from .i3d import I3DFeatureExtractor, VideoFeatures

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
)
FAILURES_FILE = "failures.json"


@dataclass(frozen=True)
class ExtractionFailure:
    video: Path
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"video": str(self.video), "error": self.error}


@dataclass
class ExtractionReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[ExtractionFailure] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{len(self.written)} extracted, {len(self.skipped)} skipped, {len(self.failed)} failed"]
        lines += [f"  FAILED {f.video}: {f.error}" for f in self.failed]
        return "\n".join(lines)


def find_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given and the videos (by suffix) under each directory, sorted; order kept, no repeats."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            found.append(item)
    return list(dict.fromkeys(found))


def sidecar(result: VideoFeatures, precision: str) -> dict[str, Any]:
    """The JSON record written next to a feature file."""
    settings = result.settings
    return {
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
        "settings": settings.to_dict(),
    }


def feature_paths(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Where the features of the video named `name` go: ``out_dir/features/<name>.npy`` and its sidecar."""
    feature_dir = Path(out_dir) / "features"
    return feature_dir / f"{name}.npy", feature_dir / f"{name}.json"


def is_extracted(npy: Path, meta: Path, settings: dict[str, Any]) -> bool:
    """Whether `npy` and its sidecar `meta` exist, made with `settings`."""
    if not (npy.is_file() and meta.is_file()):
        return False
    try:
        return json.loads(meta.read_text()).get("settings") == settings
    except (OSError, ValueError):
        return False


def extract_to_directory(
    videos: Sequence[Path],
    out_dir: str | Path,
    extractor: I3DFeatureExtractor,
    *,
    on_video: Callable[[int, Path], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> ExtractionReport:
    """Extract every video into ``out_dir/features``; failures are collected, written to
    ``out_dir/failures.json`` and never stop the batch. ``on_video(index, video)`` runs before each video."""
    out_dir = Path(out_dir)
    feature_dir = out_dir / "features"
    feature_dir.mkdir(parents=True, exist_ok=True)
    settings = extractor.settings.to_dict()
    report = ExtractionReport()
    claimed: dict[str, Path] = {}
    for index, video in enumerate(videos):
        if on_video is not None:
            on_video(index, video)
        name = video.stem
        if name in claimed:
            report.failed.append(
                ExtractionFailure(video, f"has the same name as {claimed[name]}; rename one")
            )
            continue
        claimed[name] = video
        npy, meta = feature_paths(out_dir, name)
        if is_extracted(npy, meta, settings):
            report.skipped.append(video)
            continue
        try:
            result = extractor.extract(video, progress=progress)
        except Exception as err:  # one bad video must not stop the batch; the report says what happened
            report.failed.append(ExtractionFailure(video, f"{type(err).__name__}: {err}"))
            continue
        write_features(npy, meta, result, extractor.precision)
        report.written.append(npy)
    write_failures(out_dir, report.failed)
    return report


def write_features(npy: Path, meta: Path, result: VideoFeatures, precision: str) -> None:
    """The features (float32) and then their sidecar, each atomically: a sidecar means finished features."""
    with atomic_write(npy) as handle:
        np.save(handle, result.features.astype(np.float32, copy=False))
    with atomic_write(meta, "w") as handle:
        json.dump(sidecar(result, precision), handle, indent=1)


def write_failures(out_dir: str | Path, failed: Sequence[ExtractionFailure]) -> None:
    """``out_dir/failures.json`` listing `failed` (atomically), or no such file when nothing failed."""
    failures = Path(out_dir) / FAILURES_FILE
    if failed:
        with atomic_write(failures, "w") as handle:
            json.dump([f.to_dict() for f in failed], handle, indent=1)
    else:
        failures.unlink(missing_ok=True)
