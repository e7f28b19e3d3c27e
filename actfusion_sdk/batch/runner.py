"""The batch as a streaming Ray Data pipeline: inputs -> features actor pool -> model actor pool -> records.

Listing the inputs, claiming their output names (once, under the output folder's lock) and skipping finished
ones happen on the driver; every actor loads its model or extractor once and writes each result and its
record itself, atomically, so the output folder must be storage that every node sees (the user's --out).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError
from ..outputs import (
    InputFailure,
    InputIdentity,
    Run,
    claim_output_names,
    prepare_output_dir,
    record_failures,
)
from .connection import join_cluster
from .inputs import find_inputs
from .job import BatchJob
from .report import BatchReport, Progress, VideoRecord


@dataclass(frozen=True)
class ClusterOptions:
    """Where the batch runs and how big its workers are.

    `address`: None starts an embedded local Ray (`local_cpus`, default all; `object_store_bytes`, default
    Ray's), "auto", "HOST:PORT" or "ray://HOST:PORT" joins a running cluster. A worker slot of
    `cpus_per_worker` CPUs (and `gpus_per_worker` GPUs: default 1 where the cluster has GPUs, else 0) holds
    one actor of every stage; `workers`: the number of slots (default: as many as the cluster holds).
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None
    local_cpus: int | None = None
    object_store_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if not (math.isfinite(self.cpus_per_worker) and self.cpus_per_worker > 0):
            raise ConfigError(f"cpus per worker must be positive and finite, got {self.cpus_per_worker}")
        gpus = self.gpus_per_worker
        if gpus is not None and not (math.isfinite(gpus) and gpus >= 0):
            raise ConfigError(f"gpus per worker must be 0 or more (and finite), got {gpus}")


def run(
    inputs: Sequence[str | Path],
    job: BatchJob,
    cluster: ClusterOptions | None = None,
    progress: bool = True,
) -> BatchReport:
    """Run `job` on every video named by `inputs` (files, folders, globs, list files) on a Ray cluster.

    The outputs are those the single-machine command writes into the same folder: names are claimed here,
    once, before any cluster work; finished videos are skipped; failures are merged into OUT/failures.json
    (never fatal); each video's result equals `Pipeline(video).segment(seed=job.seed)` (or anticipate /
    extract) on one machine.
    """
    cluster = cluster or ClusterOptions()
    ray = _import_ray(local=cluster.address is None)
    started = time.perf_counter()
    job, model_sha256 = _resolved(job)
    settings = job.settings(model_sha256)
    prepare_output_dir(job.out if job.runs_model else job.out / "features")
    videos = find_inputs(inputs)
    if not videos:
        raise InputError(f"no video files found in {', '.join(map(str, inputs))}")
    this_run = Run.begin()
    names = claim_output_names(job.out, videos)
    failed: list[InputFailure] = []
    skipped: list[Path] = []
    todo: list[dict[str, str]] = []
    for video in videos:
        try:
            identity = InputIdentity.of(video)
        except InputError as err:  # as `actfusion extract` reports a missing or unreadable video
            failed.append(InputFailure(video, f"{type(err).__name__}: {err}"))
            continue
        if job.is_finished(names[video], identity, settings):
            skipped.append(video)
        else:
            todo.append(
                {"video": identity.path, "name": names[video], "identity": json.dumps(identity.to_dict())}
            )
    given = {os.path.abspath(video): video for video in videos}  # reports name videos as they were given
    completed: list[VideoRecord] = []
    startup = 0.0
    if todo:
        tracker = Progress(len(videos), len(skipped), enabled=progress)
        with _ray_session(ray, cluster):
            startup = time.perf_counter() - started
            tracker.start()
            for row in _dataset(ray, job, settings, cluster, todo).iter_rows():
                tracker.update(row["video"], row["error"])
                video = given.get(row["video"], Path(row["video"]))
                if row["error"]:
                    failed.append(InputFailure(video, row["error"]))
                else:
                    completed.append(replace(VideoRecord.from_row(row), video=video))
    finished = skipped + [record.video for record in completed]
    return BatchReport(
        total=len(videos),
        completed=tuple(completed),
        skipped=tuple(skipped),
        failed=tuple(failed),
        startup_seconds=startup,
        seconds=time.perf_counter() - started,
        failures_file=record_failures(job.out, this_run, failed, finished),
    )


def _import_ray(local: bool) -> Any:
    if local:
        # A one-machine Ray needs no network: with Ray's cluster mode off its node IP is 127.0.0.1, so every
        # Ray server listens on loopback only. Ray reads this when first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as err:
        raise ConfigError("actfusion batch needs Ray: pip install 'actfusion-sdk[cluster]'") from err
    return ray


def _resolved(job: BatchJob) -> tuple[BatchJob, str]:
    """`job` with absolute paths (workers have other working directories) and its weights checked here,
    before any cluster work (a model card that cannot run on video fails at once); and their sha256."""
    job = replace(job, out=job.out.absolute())
    if not job.runs_model:
        return job, ""
    from ..predictor import Predictor

    predictor = Predictor(job.weights, device="cpu")
    predictor.feature_settings()
    return replace(job, weights=str(predictor.weights.absolute())), predictor.card.sha256


@contextmanager
def _ray_session(ray: Any, cluster: ClusterOptions) -> Iterator[None]:
    """Join the cluster at `cluster.address`, or start an embedded one bound to 127.0.0.1; a Ray session the
    caller already opened is used as it is and left open."""
    if ray.is_initialized():
        yield
        return
    if cluster.address is None:
        ray.init(
            num_cpus=cluster.local_cpus,
            object_store_memory=cluster.object_store_bytes,
            include_dashboard=False,
            log_to_driver=False,
        )
    else:
        join_cluster(ray, cluster.address)
    try:
        yield
    finally:
        ray.shutdown()


def _dataset(
    ray: Any, job: BatchJob, settings: dict[str, Any], cluster: ClusterOptions, rows: list[dict[str, str]]
):
    """The streaming pipeline over `rows` (video, name, identity): one block per video so videos flow
    through the stages apart."""
    from .stages import ExtractStage, FeatureStage, ModelStage

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    resources = ray.cluster_resources()
    gpus = cluster.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
    stages = [FeatureStage, ModelStage] if job.runs_model else [ExtractStage]
    workers = cluster.workers or _pool_size(resources, cluster.cpus_per_worker, gpus)
    threads = max(1, math.floor(cluster.cpus_per_worker))
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    for stage in stages:
        dataset = dataset.map(
            stage,
            fn_constructor_kwargs={"job": job, "settings": settings, "threads": threads},
            compute=ray.data.ActorPoolStrategy(size=workers),
            # One worker slot holds an actor of every stage; a video's stages take turns on it.
            num_cpus=cluster.cpus_per_worker / len(stages),
            num_gpus=gpus / len(stages),
        )
    return dataset


def _pool_size(resources: dict[str, float], cpus: float, gpus: float) -> int:
    """Worker slots (= actors per stage) that the cluster holds at once."""
    if gpus > 0:
        return max(1, math.floor(resources.get("GPU", 0) / gpus))
    return max(1, math.floor(resources.get("CPU", 1) / cpus))
