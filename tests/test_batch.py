"""`actfusion batch` on Ray: inputs, outputs and resumption without Ray; then an embedded local Ray and a real
two-node cluster on 127.0.0.1 (results equal to the single-machine Pipeline, failures collected, both nodes
used, a re-run skips everything, a killed actor is retried without losing or rewriting anything)."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from actfusion_sdk.batch import BatchJob, ClusterOptions, find_inputs, run
from actfusion_sdk.cli import main
from actfusion_sdk.errors import InputError
from actfusion_sdk.features import i3d
from actfusion_sdk.features.seeded import seeded_i3d_state_dict
from actfusion_sdk.features.settings import FeatureSettings, WeightsSource
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.checkpoint import ModelCard, save_model
from actfusion_sdk.model.config import (
    DecoderConfig,
    DiffusionConfig,
    EncoderConfig,
    PostprocessConfig,
    preset,
)
from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.results import SegmentationResult

# Ray's node IP is then 127.0.0.1 and its servers listen on loopback only (read when ray is first imported).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray", reason="the batch tests need the cluster extra (ray)")

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
CLASSES = ("background", "pick", "place", "pour")
SEED = 5
OBJECT_STORE = 100 * 1024 * 1024
# Tiny features: 8 fps decoded, one 4-frame clip every 4 frames (2 features/s), 32 px crops.
# (The tiny model and settings follow tests/test_pipeline.py's, copied until shared test helpers exist.)
SETTINGS = FeatureSettings(
    fps=8.0,
    clip_frames=4,
    frame_stride=1,
    feature_stride=4,
    short_side=32,
    crop_size=32,
    weights=WeightsSource("seeded", seed=0),
)


def write_video(path: Path, seconds: float, shade: int) -> Path:
    """A short 48 px mp4 at 8 fps: a bright square moving over a `shade`d background."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 48
        stream.pix_fmt = "yuv420p"
        for index in range(round(seconds * 8)):
            frame = np.full((48, 48, 3), (shade, 90, 160), dtype=np.uint8)
            x = index * 3 % 32
            frame[16:32, x : x + 16] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_tiny_weights(directory: Path) -> Path:
    """A randomly initialised tiny ActFusion (2 DDIM steps) whose card names SETTINGS."""
    config = dataclasses.replace(
        preset("50salads"),
        name="tiny",
        encoder=EncoderConfig(3, 8, 5, 0.5, 0.5, 0.5, (0, 1, 2)),
        decoder=DecoderConfig(2, 8, 5, 0.1, time_emb_dim=16),
        diffusion=DiffusionConfig(sampling_timesteps=2, snr_scale=1.0),
        postprocess=PostprocessConfig("median", 3),
        sample_rate=2,
    )
    torch.manual_seed(0)
    card = ModelCard(
        format_version=1,
        config=config,
        classes=CLASSES,
        features=SETTINGS.to_dict(),
        fps=SETTINGS.features_per_second,
        description="tiny random model for batch tests",
        training=None,
    )
    save_model(ActFusion(config, num_classes=len(CLASSES)), card, directory)
    return directory


@functools.cache
def seeded_i3d(seed: int) -> dict[str, torch.Tensor]:
    return seeded_i3d_state_dict(seed)


@pytest.fixture(autouse=True)
def _fast_seeded_weights(monkeypatch):
    monkeypatch.setattr(i3d, "seeded_i3d_state_dict", seeded_i3d)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    videos = root / "videos"
    videos.mkdir()
    good = [write_video(videos / f"take{index}.mp4", 2.0 + index % 3, 30 * index) for index in range(6)]
    corrupt = videos / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return {"weights": write_tiny_weights(root / "tiny"), "videos": videos, "good": good, "corrupt": corrupt}


@pytest.fixture(scope="module")
def reference(assets) -> dict[str, SegmentationResult]:
    """The single-machine results: Pipeline(video).segment(seed=SEED) for every good video."""
    videos = [video.absolute() for video in assets["good"]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(i3d, "seeded_i3d_state_dict", seeded_i3d)
        pipeline = Pipeline(videos, weights=assets["weights"], device="cpu", progress=False)
        results = pipeline.segment(seed=SEED)
    return {result.video_id: result for result in results}


def assert_equal_to_reference(out: Path, reference: dict[str, SegmentationResult]) -> None:
    for name, expected in reference.items():
        got = SegmentationResult.from_json(out / f"{name}.segmentation.json")
        np.testing.assert_array_equal(got.frame_labels, expected.frame_labels)
        assert [s.to_dict() for s in got.segments] == [s.to_dict() for s in expected.segments]
        assert got.duration == pytest.approx(expected.duration) and got.video == expected.video


def failures(out: Path) -> dict[str, str]:
    listed = json.loads((out / "failures.json").read_text())
    return {Path(item["video"]).name: item["error"] for item in listed}


# -- without Ray ------------------------------------------------------------------------------------------


def test_inputs_are_files_folders_globs_and_list_files(tmp_path):
    for name in ("a.mp4", "b.avi", "notes.md", "sub/c.mkv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    listing = tmp_path / "videos.txt"
    listing.write_text("# mine\nb.avi\n\nsub/c.mkv\n")
    found = find_inputs([tmp_path / "a.mp4", str(tmp_path / "*.avi"), listing, tmp_path / "sub"])
    assert found == [tmp_path / "a.mp4", tmp_path / "b.avi", tmp_path / "sub/c.mkv"]
    assert find_inputs([tmp_path]) == [tmp_path / "a.mp4", tmp_path / "b.avi", tmp_path / "sub/c.mkv"]
    with pytest.raises(InputError, match="matches no file"):
        find_inputs([str(tmp_path / "*.webm")])


def test_outputs_follow_the_single_machine_layout(tmp_path):
    job = BatchJob("segment", tmp_path, format="csv", plot=True)
    assert job.outputs("/videos/take1.mp4") == [
        tmp_path / "take1.segmentation.csv",
        tmp_path / "take1.segmentation.png",
    ]
    anticipation = BatchJob("anticipate", tmp_path, format="activitynet")
    assert anticipation.outputs("x/take1.mp4") == [tmp_path / "take1.anticipation.activitynet.json"]
    assert BatchJob("extract", tmp_path).outputs("take1.mp4") == [
        tmp_path / "features" / "take1.npy",
        tmp_path / "features" / "take1.json",
    ]


def test_a_finished_batch_needs_no_cluster(assets, tmp_path, monkeypatch):
    job = BatchJob("segment", tmp_path, weights=str(assets["weights"]))
    for video in assets["good"]:
        for path in job.outputs(video):
            path.write_text("{}")
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started for nothing to do"))
    report = run(assets["good"], job, progress=False)
    assert len(report.skipped) == 6 and report.ok and report.startup_seconds == 0


# -- an embedded local Ray --------------------------------------------------------------------------------


def test_embedded_local_ray_segments_and_collects_failures(assets, reference, tmp_path):
    job = BatchJob("segment", tmp_path / "out", weights=str(assets["weights"]), seed=SEED)
    cluster = ClusterOptions(workers=1, local_cpus=2, object_store_bytes=OBJECT_STORE)
    report = run([assets["videos"]], job, cluster, progress=False)
    assert not ray.is_initialized()
    assert report.total == 7 and len(report.completed) == 6 and not report.skipped
    assert [failure.video.name for failure in report.failed] == ["corrupt.mp4"]
    assert_equal_to_reference(job.out, reference)
    assert set(failures(job.out)) == {"corrupt.mp4"}
    leftovers = [path.name for path in job.out.iterdir() if path.name.startswith(".")]
    assert leftovers == []


def test_batch_extract_cli_on_embedded_ray_writes_what_extract_writes(assets, tmp_path, monkeypatch, capsys):
    import actfusion_sdk.batch as batch_package

    small = functools.partial(ClusterOptions, local_cpus=2, object_store_bytes=OBJECT_STORE)
    monkeypatch.setattr(batch_package, "ClusterOptions", small)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SETTINGS.to_dict()))
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{assets['good'][0]}\n{assets['good'][1]}\n{assets['corrupt']}\n")
    single = ["extract", *assets["good"][:2], "--out", tmp_path / "one", "--settings", settings, "--quiet"]
    assert main([str(arg) for arg in single]) == 0
    argv = ["batch", "extract", listing, "--out", tmp_path / "many", "--settings", settings]
    assert main([str(arg) for arg in argv]) == 3
    assert "2 done, 0 skipped, 1 failed of 3" in capsys.readouterr().err
    assert set(failures(tmp_path / "many")) == {"corrupt.mp4"}
    for video in assets["good"][:2]:
        one = np.load(tmp_path / "one" / "features" / f"{video.stem}.npy")
        np.testing.assert_array_equal(np.load(tmp_path / "many" / "features" / f"{video.stem}.npy"), one)
        sidecar = json.loads((tmp_path / "many" / "features" / f"{video.stem}.json").read_text())
        assert sidecar["settings"] == SETTINGS.to_dict()


# -- a two-node cluster on this machine -------------------------------------------------------------------


def _stage_pids(stage: str) -> list[int]:
    """Pids of the Ray actors running `stage` (their process titles name it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::") and stage in title:
                pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def cluster():
    """A head and a worker node (1 CPU, 100 MB object store each) on 127.0.0.1, as separate raylet processes
    started by Ray's own multi-node test harness, shut down (every process it started) in teardown."""
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "num_gpus": 0, "object_store_memory": OBJECT_STORE, "node_ip_address": "127.0.0.1"}
    temp_dir = tempfile.mkdtemp(prefix="afray", dir="/tmp")  # short: Ray's socket paths live under it
    head = {**node, "include_dashboard": False, "temp_dir": temp_dir}
    nodes = Cluster(initialize_head=True, head_node_args=head)
    try:
        nodes.add_node(**node)
        nodes.wait_for_nodes()
        environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        yield {"address": nodes.address, "environment": environment}
    finally:
        nodes.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def batch_cli(cluster, *argv: str) -> subprocess.Popen:
    command = [sys.executable, "-c", "import sys; from actfusion_sdk.cli import main; sys.exit(main())"]
    return subprocess.Popen(
        [*command, "batch", *map(str, argv)],
        env=cluster["environment"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_node_cluster_matches_the_pipeline_and_resumes(assets, reference, cluster, tmp_path):
    out = tmp_path / "out"
    argv = ["segment", assets["videos"], "--out", out, "--weights", assets["weights"], "--seed", SEED]
    argv += ["--address", cluster["address"], "--cpus-per-worker", "0.5", "--workers", "2"]
    first = batch_cli(cluster, *argv)
    _, err = first.communicate(timeout=240)
    assert first.returncode == 3, err
    print(err)  # the report names the nodes that did the work
    assert "6 done, 0 skipped, 1 failed of 7" in err and "2 node(s)" in err
    assert_equal_to_reference(out, reference)
    assert set(failures(out)) == {"corrupt.mp4"}
    second = batch_cli(cluster, *argv)
    _, err = second.communicate(timeout=240)
    assert second.returncode == 3 and "0 done, 6 skipped, 1 failed of 7" in err, err


def test_a_killed_actor_is_retried_and_nothing_is_lost_or_rewritten(assets, reference, cluster, tmp_path):
    out = tmp_path / "out"
    argv = ["segment", *assets["good"], "--out", out, "--weights", assets["weights"], "--seed", SEED]
    argv += ["--address", cluster["address"], "--cpus-per-worker", "0.5", "--workers", "1"]
    batch = batch_cli(cluster, *argv)
    deadline = time.monotonic() + 180
    while not list(out.glob("*.segmentation.json")) and batch.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    victims = _stage_pids("ModelStage")
    assert victims and len(list(out.glob("*.segmentation.json"))) < 6, "the batch ended before the kill"
    os.kill(victims[0], signal.SIGKILL)
    before = {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in out.glob("*.json")}
    _, err = batch.communicate(timeout=240)
    assert batch.returncode == 0, err
    assert "6 done, 0 skipped, 0 failed of 6" in err
    assert_equal_to_reference(out, reference)
    # Nothing extra (no temporary file) and nothing written twice: files there at the kill are untouched.
    assert sorted(path.name for path in out.iterdir()) == sorted(
        f"{name}.segmentation.json" for name in reference
    )
    after = {name: ((out / name).stat().st_ino, (out / name).stat().st_mtime_ns) for name in before}
    assert after == before


def test_a_killed_driver_leaves_no_partial_output_and_the_rerun_does_the_rest(
    assets, reference, cluster, tmp_path
):
    out = tmp_path / "out"
    argv = ["segment", *assets["good"], "--out", out, "--weights", assets["weights"], "--seed", SEED]
    argv += ["--address", cluster["address"], "--cpus-per-worker", "0.5", "--workers", "1"]
    interrupted = batch_cli(cluster, *argv)
    deadline = time.monotonic() + 180
    while not list(out.glob("*.segmentation.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    interrupted.kill()
    interrupted.communicate()
    finished = {path.name for path in out.glob("*.segmentation.json")}
    assert 1 <= len(finished) < 6, "the batch ended before the kill"
    rerun = batch_cli(cluster, *argv)
    _, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err
    summary = re.search(r"(\d+) done, (\d+) skipped, 0 failed of 6 in", err)
    assert summary, err
    done, skipped = map(int, summary.groups())
    assert skipped >= len(finished) and done + skipped == 6
    assert_equal_to_reference(out, reference)  # every file under a final name is whole
