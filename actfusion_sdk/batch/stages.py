"""The Ray Data stages: callable classes built once per actor (so the model and the extractor load once per
worker) and called once per video. A failing video becomes a row with an `error`, never an exception, so one
corrupt file cannot stop the batch.

Rows: {"video" (absolute), "name" (claimed output name), "identity" (its InputIdentity as JSON)} -> features
-> {..., "features" (.npy bytes), "fps", "duration", "seconds", "error", "feature_node"} -> model -> a record
(see `record`).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from ..outputs import InputIdentity
from .job import BatchJob


def _node() -> str:
    return ray.get_runtime_context().get_node_id()


def _error(err: Exception) -> str:
    """The failure text of `failures.json`, as the single-machine commands write it."""
    return f"{type(err).__name__}: {err}"


def _identity(row: dict[str, Any]) -> InputIdentity:
    """The input identity the driver took (before any work, as `actfusion extract` does)."""
    return InputIdentity(**json.loads(row["identity"]))


def _video(row: dict[str, Any]) -> dict[str, Any]:
    """What every stage passes on about its video."""
    return {"video": row["video"], "name": row["name"], "identity": row["identity"]}


def record(
    row: dict[str, Any], error: str = "", outputs: list[Path] | None = None, present: bool = False
) -> dict[str, Any]:
    """The last row of a video: its outputs (or error), whether they were already there, where it ran."""
    return {
        "video": row["video"],
        "error": error,
        "outputs": [str(path) for path in outputs or []],
        "present": present,
        "feature_node": row.get("feature_node", ""),
        "model_node": row.get("model_node", ""),
        "pid": os.getpid(),
    }


class FeatureStage:
    """Decode + I3D features of one video, made as the model card says (reading only the card)."""

    def __init__(self, job: BatchJob, settings: dict[str, Any], threads: int) -> None:
        from ..predictor import VideoFeaturizer

        torch.set_num_threads(threads)
        self.window = job.observed_window
        self.featurizer = VideoFeaturizer.from_card(job.weights, job.device)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        row = {**_video(row), "feature_node": _node(), "features": b"", "error": ""}
        try:
            prepared = self.featurizer.extract(row["video"], window=self.window)
        except Exception as err:  # one bad video must not stop the batch: its row carries the error
            return {**row, "fps": 0.0, "duration": 0.0, "seconds": 0.0, "error": _error(err)}
        buffer = io.BytesIO()
        np.save(buffer, prepared.features)
        return {
            **row,
            "features": buffer.getvalue(),
            "fps": prepared.fps,
            "duration": prepared.duration,
            "seconds": prepared.seconds,
        }


class ModelStage:
    """The model on one video's features; writes the result's files and record from this worker."""

    def __init__(self, job: BatchJob, settings: dict[str, Any], threads: int) -> None:
        from ..predictor import Predictor

        torch.set_num_threads(threads)
        self.job, self.settings = job, settings
        self.predictor = Predictor(job.weights, job.device)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from ..predictor import PreparedFeatures

        row = {**row, "model_node": _node()}
        if row["error"]:
            return record(row, row["error"])
        name, identity = row["name"], _identity(row)
        if self.job.is_finished(name, identity, self.settings):  # a retried task's first attempt wrote it
            return record(row, outputs=self.job.outputs(name), present=True)
        try:
            features = np.load(io.BytesIO(row["features"]), allow_pickle=False)
            prepared = PreparedFeatures(features, row["fps"], row["duration"], row["video"], row["seconds"])
            if self.job.task == "segment":
                result = self.predictor.segment(prepared, seed=self.job.seed)
            else:
                result = self.predictor.anticipate(prepared, self.job.window, seed=self.job.seed)
            return record(row, outputs=self.job.write(result, name, identity, self.settings))
        except Exception as err:  # e.g. an anticipation window longer than this video
            return record(row, _error(err))


class ExtractStage:
    """`actfusion extract` for one video: features + sidecar written from this worker."""

    def __init__(self, job: BatchJob, settings: dict[str, Any], threads: int) -> None:
        from ..features.extract import build_extractor

        torch.set_num_threads(threads)
        self.job, self.settings = job, settings
        self.extractor = build_extractor(  # MS-TCN settings carry their flow weights' path themselves
            job.feature_settings,
            job.i3d_weights,
            device=job.device,
            precision=job.precision,
            batch_size=job.batch_size,
        )

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from ..features.extract import write_features

        row = {**_video(row), "feature_node": _node()}
        name, identity = row["name"], _identity(row)
        if self.job.is_finished(name, identity, self.settings):  # a retried task's first attempt wrote it
            return record(row, outputs=self.job.outputs(name), present=True)
        npy, meta = self.job.outputs(name)[0], self.job.record(name)
        try:
            features = self.extractor.extract(Path(row["video"]))
            write_features(npy, meta, features, self.extractor.precision, identity)
        except Exception as err:  # one bad video must not stop the batch: its record carries the error
            return record(row, _error(err))
        return record(row, outputs=[npy, meta])
