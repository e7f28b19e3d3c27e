"""Features made before, used instead of decoding a video again: from a folder `actfusion extract` wrote
(`features_dir`: ``DIR/features/<name>.npy`` + its JSON sidecar) and from the per-video cache under the SDK's
cache root (``$ACTFUSION_CACHE_DIR/features``; an empty ACTFUSION_CACHE_DIR turns it off).

Features from `features_dir` count when their sidecar names this very video content (size and content
fingerprint, wherever the file now lies), the same feature settings and compute precision, and the feature
file still has the sha256 the sidecar records. Cache entries are keyed by the input's whole identity (path,
size, mtime, fingerprint), the settings and the precision, so a second output format, a re-run or another
command on the same file reads them back, and a changed or touched file, or other settings, miss.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import cache_root
from ..errors import InputError
from ..fileio import sha256_file
from ..outputs import InputIdentity, output_record, write_outputs
from .extract import feature_files
from .settings import FeatureSettings


@dataclass(frozen=True)
class StoredFeatures:
    """Features read back from disk: [D, T] at `fps` features/s over `duration` seconds of video."""

    features: np.ndarray
    fps: float
    duration: float
    path: Path


def find_extracted(
    features_dir: str | Path, identity: InputIdentity, settings: Mapping[str, Any], precision: str
) -> StoredFeatures:
    """The features of the video `identity` in a folder `actfusion extract` wrote (the folder or its
    ``features/``), made with `settings` and `precision`; an InputError says why none fit."""
    root = Path(features_dir)
    folder = root / "features" if (root / "features").is_dir() else root
    if not folder.is_dir():
        raise InputError(f"--features {root} is not a folder; give the --out folder of `actfusion extract`")
    stem = Path(identity.path).stem
    sidecars = sorted(folder.glob("*.json"), key=lambda meta: (meta.stem != stem, meta.name))
    other_settings = None
    for meta in sidecars:
        record = _read_record(meta)
        if record is None or not _same_video(record, identity):
            continue
        stored = _stored(meta, record, settings, precision)
        if stored is not None:
            return stored
        other_settings = meta
    if other_settings is not None:
        raise InputError(
            f"the features of '{identity.path}' in {other_settings} were made with other settings than the "
            f"model's (or changed since); extract them again with --settings MODEL/model.json"
        )
    raise InputError(
        f"{folder} holds no features of '{identity.path}' (no sidecar records this video's content); run "
        f"`actfusion extract {identity.path} --out {root}` first"
    )


def load_cached(
    identity: InputIdentity, settings: Mapping[str, Any], precision: str
) -> StoredFeatures | None:
    """The cached features of this video content with these settings, or None (no cache, or a miss)."""
    meta = _cache_entry(identity, settings, precision)
    record = None if meta is None else _read_record(meta)
    if record is None or record["input"] != identity.to_dict():
        return None
    return _stored(meta, record, settings, precision)


def store_cached(
    features: np.ndarray,
    fps: float,
    duration: float,
    settings: FeatureSettings,
    precision: str,
    identity: InputIdentity,
) -> Path | None:
    """Keep a video's features in the cache (the .npy, then its record, as `write_outputs` guarantees); the
    path, or None when caching is off or the cache cannot be written (never worth failing a run for)."""
    meta = _cache_entry(identity, settings.to_dict(), precision)
    if meta is None:
        return None
    npy = meta.with_suffix(".npy")

    def save(path: Path) -> None:
        with open(path, "wb") as handle:
            np.save(handle, features.astype(np.float32, copy=False))

    def record(digests: dict[str, str]) -> dict[str, Any]:
        fields = {"features_per_second": fps, "duration": duration, "precision": precision}
        return {**output_record(identity, settings.to_dict(), digests), **fields}

    try:
        meta.parent.mkdir(parents=True, exist_ok=True)
        write_outputs(meta, {npy: save}, record)
    except OSError:
        return None
    return npy


def _cache_entry(identity: InputIdentity, settings: Mapping[str, Any], precision: str) -> Path | None:
    """A cache entry's record: <cache root>/features/<sha256 of the input's identity and settings>.json."""
    root = cache_root()
    if root is None:
        return None
    key = json.dumps([identity.to_dict(), dict(settings), precision], sort_keys=True, default=str)
    return feature_files(root, hashlib.sha256(key.encode()).hexdigest())[1]


def _read_record(meta: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("input"), dict) else None


def _same_video(record: Mapping[str, Any], identity: InputIdentity) -> bool:
    """The record's input has this video's size and content fingerprint (its path may have changed)."""
    recorded = record["input"]
    return recorded.get("size") == identity.size and recorded.get("fingerprint") == identity.fingerprint


def _stored(
    meta: Path, record: Mapping[str, Any], settings: Mapping[str, Any], precision: str
) -> StoredFeatures | None:
    """The features `record` describes, when made with these settings and still the recorded file."""
    if record.get("settings") != dict(settings) or record.get("precision") != precision:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or len(outputs) != 1:
        return None
    ((name, digest),) = outputs.items()
    npy = meta.parent / str(name)
    try:
        if sha256_file(npy) != digest:
            return None
        features = np.load(npy, allow_pickle=False)
        return StoredFeatures(features, float(record["features_per_second"]), float(record["duration"]), npy)
    except (OSError, ValueError, KeyError, TypeError):
        return None
