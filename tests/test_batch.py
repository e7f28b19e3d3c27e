"""`actfusion batch` on Ray: inputs, outputs and resumption without Ray; then an embedded local Ray and a real
two-node cluster on 127.0.0.1 (results equal to the single-machine Pipeline, failures collected, both nodes
used, a re-run skips everything, a killed actor is retried without losing or rewriting anything)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_sdk.batch import BatchJob, ClusterOptions, find_inputs, run
from actfusion_sdk.cli import main
from actfusion_sdk.errors import InputError
from actfusion_sdk.features import i3d
from actfusion_sdk.model.checkpoint import load_card
from actfusion_sdk.outputs import STATE_DIR, InputIdentity
from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.results import SegmentationResult

from .helpers import REPO, TINY_SETTINGS, seeded_i3d, write_moving_square, write_tiny_weights

# Ray's node IP is then 127.0.0.1 and its servers listen on loopback only (read when ray is first imported).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray", reason="the batch tests need the cluster extra (ray)")
pytestmark = pytest.mark.usefixtures("fast_seeded_weights")

SEED = 5
OBJECT_STORE = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("batch")
    videos = root / "videos"
    videos.mkdir()
    good = [write_moving_square(videos / f"take{index}.mp4", 2.0 + index % 3) for index in range(6)]
    corrupt = videos / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return {"weights": write_tiny_weights(root / "tiny"), "videos": videos, "good": good, "corrupt": corrupt}


@pytest.fixture(scope="module")
def reference(assets) -> dict[str, SegmentationResult]:
    """The single-machine results: Pipeline(video).segment(seed=SEED) for every good video."""
    videos = [video.absolute() for video in assets["good"]]
    with one_torch_thread(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(i3d, "seeded_i3d_state_dict", seeded_i3d)
        pipeline = Pipeline(videos, weights=assets["weights"], device="cpu", progress=False)
        results = pipeline.segment(seed=SEED)
    return {result.video_id: result for result in results}


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run as a batch actor does (one torch thread, cpus_per_worker 1): float sums depend on the thread
    count, so single-machine references made this way must equal the batch's numbers exactly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    assert job.outputs("take1") == [tmp_path / "take1.segmentation.csv", tmp_path / "take1.segmentation.png"]
    assert job.record("take1") == tmp_path / "take1.segmentation.record.json"
    anticipation = BatchJob("anticipate", tmp_path, format="activitynet")
    assert anticipation.outputs("take1") == [tmp_path / "take1.anticipation.activitynet.json"]
    extraction = BatchJob("extract", tmp_path)
    assert extraction.outputs("take1") == [tmp_path / "features" / "take1.npy"]
    assert extraction.record("take1") == tmp_path / "features" / "take1.json"


def test_what_segment_wrote_is_finished_for_the_batch_without_a_cluster(assets, tmp_path, monkeypatch):
    """Same-stem videos from two folders, segmented by `actfusion segment --out`: the batch finds the same
    names and records and skips both without starting Ray; another seed would redo them."""
    clips = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        clips.append(shutil.copy(assets["good"][0], tmp_path / folder / "clip.mp4"))
    out = tmp_path / "out"
    argv = ["segment", *clips, "--out", out, "--weights", assets["weights"], "--seed", SEED, "--quiet"]
    assert main([str(arg) for arg in argv]) == 0
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started for nothing to do"))
    job = BatchJob("segment", out, weights=str(assets["weights"]), seed=SEED)
    report = run(clips, job, progress=False)
    assert report.skipped == tuple(map(Path, clips)) and report.ok and report.startup_seconds == 0
    written = sorted(path.name for path in out.glob("clip*.segmentation.json"))
    assert len(written) == 2 and "clip.segmentation.json" in written
    model = load_card(assets["weights"]).sha256
    identity = InputIdentity.of(clips[0])
    assert job.is_finished("clip", identity, job.settings(model))
    other_seed = BatchJob("segment", out, weights=str(assets["weights"]), seed=SEED + 1)
    assert not other_seed.is_finished("clip", identity, other_seed.settings(model))


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
    leftovers = [path.name for path in job.out.rglob(".*") if path.name != STATE_DIR]
    assert leftovers == []
    assert sorted(path.name for path in job.out.glob("*.record.json")) == sorted(
        f"{name}.segmentation.record.json" for name in reference
    )


def test_batch_extract_cli_on_embedded_ray_writes_what_extract_writes(assets, tmp_path, monkeypatch, capsys):
    import actfusion_sdk.batch as batch_package

    small = functools.partial(ClusterOptions, local_cpus=2, object_store_bytes=OBJECT_STORE)
    monkeypatch.setattr(batch_package, "ClusterOptions", small)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(TINY_SETTINGS.to_dict()))
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{assets['good'][0]}\n{assets['good'][1]}\n{assets['corrupt']}\n")
    single = ["extract", *assets["good"][:2], "--out", tmp_path / "one", "--settings", settings, "--quiet"]
    with one_torch_thread():
        assert main([str(arg) for arg in single]) == 0
    argv = ["batch", "extract", listing, "--out", tmp_path / "many", "--settings", settings]
    assert main([str(arg) for arg in argv]) == 3
    assert "2 done, 0 skipped, 1 failed of 3" in capsys.readouterr().err
    assert set(failures(tmp_path / "many")) == {"corrupt.mp4"}
    for video in assets["good"][:2]:
        one = np.load(tmp_path / "one" / "features" / f"{video.stem}.npy")
        np.testing.assert_array_equal(np.load(tmp_path / "many" / "features" / f"{video.stem}.npy"), one)
        sidecar = json.loads((tmp_path / "many" / "features" / f"{video.stem}.json").read_text())
        one_sidecar = json.loads((tmp_path / "one" / "features" / f"{video.stem}.json").read_text())
        assert sidecar["settings"] == TINY_SETTINGS.to_dict()
        assert sidecar["input"] == one_sidecar["input"] == InputIdentity.of(video).to_dict()


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


def first_video_done(batch: subprocess.Popen) -> str:
    """Read the batch's stderr until its progress says a video is done (its outputs are written); returns
    what was read. Event-driven: no sleeping, no polling of the output folder."""
    seen = []
    for line in batch.stderr:
        seen.append(line)
        if re.match(r"batch: [1-9]\d* done", line):
            return "".join(seen)
    raise AssertionError("the batch ended before any video was done:\n" + "".join(seen))


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
    first = first_video_done(batch)
    victims = _stage_pids("ModelStage")
    assert victims and len(list(out.glob("*.segmentation.json"))) < 6, "the batch ended before the kill"
    os.kill(victims[0], signal.SIGKILL)
    before = {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in out.glob("*.json")}
    _, rest = batch.communicate(timeout=240)
    err = first + rest
    assert batch.returncode == 0, err
    assert "6 done, 0 skipped, 0 failed of 6" in err
    assert_equal_to_reference(out, reference)
    # Nothing extra (no temporary file) and nothing written twice: files there at the kill are untouched.
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [STATE_DIR]
        + [f"{name}.segmentation.json" for name in reference]
        + [f"{name}.segmentation.record.json" for name in reference]
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
    first_video_done(interrupted)
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
