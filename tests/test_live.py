"""Live video with real streams: frames pushed from Python, MPEG-TS through a FIFO, a stream that stops,
one that stalls, and a long bounded stream (the tiny random model and its settings: tests/helpers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from actfusion_sdk.cli import main as cli_main
from actfusion_sdk.errors import VideoError
from actfusion_sdk.live import LiveUpdate
from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.predictor import AnticipationWindow, Predictor

from .helpers import VIDEO_FPS, seeded_i3d, write_tiny_weights

pytestmark = pytest.mark.usefixtures("single_thread", "fast_seeded_weights")


def frames(seconds: float, size: int = 48) -> Iterator[np.ndarray]:
    """A bright square moving over a background whose colour changes every second."""
    for index in range(round(seconds * VIDEO_FPS)):
        image = np.zeros((size, size, 3), dtype=np.uint8)
        image[:] = (40 * (index // VIDEO_FPS) % 255, 90, 160)
        x = index * 2 % (size - 16)
        image[16:32, x : x + 16] = 255
        yield image


def write_ts(path: Path, seconds: float) -> Path:
    """The generated video as MPEG-TS (mpeg2video, 16 fps)."""
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=VIDEO_FPS)
        stream.width = stream.height = 48
        stream.pix_fmt = "yuv420p"
        for image in frames(seconds):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def decoded(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """(timestamp, RGB image) of every frame of `path`, as a camera library would hand them over."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield float(frame.pts * frame.time_base), frame.to_ndarray(format="rgb24")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("live")
    return {"weights": write_tiny_weights(root / "tiny"), "ts": write_ts(root / "kitchen.ts", 9.0)}


@pytest.fixture(scope="module")
def predictor(assets) -> Predictor:
    seeded = seeded_i3d(0)
    return Predictor(assets["weights"], device="cpu", i3d_weights=seeded)


@pytest.fixture(scope="module")
def offline(predictor, assets) -> np.ndarray:
    return predictor.extract(assets["ts"]).features


def live_features(predictor: Predictor, source, **options) -> tuple[list[LiveUpdate], np.ndarray]:
    """All updates of a stream and the features it computed (context unset keeps them all)."""
    from actfusion_sdk.live import stream as live_stream

    captured = {}
    original = live_stream.FeatureStream

    class Capturing(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            captured["stream"] = self

    live_stream.FeatureStream = Capturing
    try:
        updates = list(Pipeline.stream(source, predictor=predictor, **options))
    finally:
        live_stream.FeatureStream = original
    held = captured["stream"]
    return updates, held.window(held.count, None)[1]


def assert_equals_offline(update: LiveUpdate, predictor: Predictor, offline: np.ndarray, horizon: float):
    expected = predictor.anticipate(
        predictor.load_features(offline), AnticipationWindow(observed=update.time, horizon=horizon), seed=3
    )
    assert update.observed_frames == expected.cut_frame
    for live, reference in (
        (update.observed_segments, expected.observed_segments),
        (update.anticipated_segments, expected.anticipated_segments),
    ):
        assert [(s.label, s.start_frame, s.end_frame) for s in live] == [
            (s.label, s.start_frame, s.end_frame) for s in reference
        ]
        assert [s.score for s in live] == pytest.approx([s.score for s in reference], abs=1e-4)


def test_pushed_frames_give_offline_features_and_answers(predictor, assets, offline):
    updates, features = live_features(predictor, decoded(assets["ts"]), every=2.0, horizon=5.0, seed=3)
    assert features.shape == offline.shape
    np.testing.assert_allclose(features, offline, atol=1e-5, rtol=1e-5)
    times = [u.time for u in updates]
    assert times[:-1] == [2.0, 4.0, 6.0, 8.0] and updates[-1].final and updates[-1].end == "end"
    assert times == sorted(times) and [u.index for u in updates] == list(range(len(updates)))
    assert updates[-1].observed_frames == offline.shape[1]
    for update in (updates[1], updates[-1]):
        assert_equals_offline(update, predictor, offline, horizon=5.0)
    assert all(u.latency >= 0 and u.lag >= 0 for u in updates)
    assert updates[-1].current is not None


# Copies an MPEG-TS file in 188-byte packets to a path, paced so the whole file takes argv[3] seconds.
PACED_WRITER = (
    "import sys, time\n"
    "data = open(sys.argv[1], 'rb').read(); start = time.monotonic(); chunk = 188 * 8\n"
    "with open(sys.argv[2], 'wb', buffering=0) as out:\n"
    "    for at in range(0, len(data), chunk):\n"
    "        delay = start + float(sys.argv[3]) * at / len(data) - time.monotonic()\n"
    "        time.sleep(max(0.0, delay)); out.write(data[at : at + chunk])\n"
)


def paced_writer(source: Path, target: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PACED_WRITER, str(source), str(target), str(seconds)])


def test_fifo_mpegts_at_real_time_pace(predictor, assets, offline, tmp_path):
    fifo = tmp_path / "camera.ts"
    os.mkfifo(fifo)
    seconds = 9.0
    size = assets["ts"].stat().st_size
    writer = paced_writer(assets["ts"], fifo, seconds)
    try:
        started = time.monotonic()
        updates, features = live_features(predictor, fifo, every=2.0, horizon=5.0, seed=3, format="mpegts")
        elapsed = time.monotonic() - started
    finally:
        writer.wait(timeout=30)
    assert size > 0 and elapsed >= seconds * 0.8  # it really was read as it arrived
    np.testing.assert_allclose(features, offline, atol=1e-5, rtol=1e-5)
    assert [u.time for u in updates][:-1] == [2.0, 4.0, 6.0, 8.0]
    assert_equals_offline(updates[-1], predictor, offline, horizon=5.0)


def test_a_file_still_being_written_is_followed_to_its_end(predictor, assets, offline, tmp_path):
    growing = tmp_path / "recording.ts"
    growing.touch()
    writer = paced_writer(assets["ts"], growing, 4.0)
    try:
        updates, features = live_features(
            predictor,
            growing,
            every=2.0,
            horizon=5.0,
            seed=3,
            format="mpegts",
            follow=True,
            stall_seconds=2.0,
        )
    finally:
        writer.wait(timeout=30)
    np.testing.assert_allclose(features, offline, atol=1e-5, rtol=1e-5)  # nothing lost at the growing end
    assert [u.time for u in updates][:-1] == [2.0, 4.0, 6.0, 8.0] and updates[-1].final


def test_cli_reads_a_stream_from_stdin(assets, tmp_path):
    jsonl = tmp_path / "stdin.jsonl"
    command = [sys.executable, "-c", "import sys; from actfusion_sdk.cli import main; sys.exit(main())"]
    argv = ["live", "pipe:0", "--format", "mpegts", "--weights", str(assets["weights"]), "--device", "cpu"]
    with open(assets["ts"], "rb") as stdin:
        run = subprocess.run(
            [*command, *argv, "--every", "3", "--horizon", "4", "--jsonl", str(jsonl)],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert run.returncode == 0, run.stderr
    updates = [LiveUpdate.from_json(line) for line in jsonl.read_text().splitlines()]
    assert [u.time for u in updates][:-1] == [3.0, 6.0] and updates[-1].final


def test_stream_that_stops_midway_pads_like_offline(predictor, tmp_path):
    # Frames pushed for 3.3 s, then the iterator ends: the last window is edge-padded as offline.
    clip = tmp_path / "short.ts"
    write_ts(clip, 3.3)
    offline = predictor.extract(clip).features
    updates, features = live_features(predictor, decoded(clip), every=1.0, horizon=2.0, seed=3)
    np.testing.assert_allclose(features, offline, atol=1e-5, rtol=1e-5)
    assert [u.time for u in updates][:-1] == [1.0, 2.0, 3.0]
    assert updates[-1].final and updates[-1].observed_frames == offline.shape[1]


def test_stalled_source_ends_cleanly_with_a_final_update(predictor):
    release = threading.Event()

    def stalling() -> Iterator[tuple[float, np.ndarray]]:
        for index, image in enumerate(frames(2.5)):
            yield index / VIDEO_FPS, image
        release.wait(30)  # the camera goes silent

    started = time.monotonic()
    with pytest.warns(UserWarning, match="no frame for 0.5 s"):
        updates = list(
            Pipeline.stream(stalling(), every=1.0, horizon=2.0, predictor=predictor, stall_seconds=0.5)
        )
    release.set()
    assert time.monotonic() - started < 20
    assert updates[-1].final and updates[-1].end == "stalled"
    assert [u.time for u in updates][:-1] == [1.0, 2.0]


def test_bad_sources_raise_video_error(predictor, tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        list(Pipeline.stream(tmp_path / "missing.ts", predictor=predictor))
    garbage = tmp_path / "garbage.ts"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError):
        list(Pipeline.stream(garbage, predictor=predictor, format="mpegts"))


def test_context_bounds_the_window_and_memory(predictor):
    def synthetic(seconds: float) -> Iterator[tuple[float, np.ndarray]]:
        for index, image in enumerate(frames(seconds, size=32)):
            yield index / VIDEO_FPS, image

    def peak(seconds: float) -> tuple[int, list[LiveUpdate]]:
        tracemalloc.start()
        updates = list(
            Pipeline.stream(synthetic(seconds), every=4.0, horizon=2.0, context=4.0, predictor=predictor)
        )
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak_bytes, updates

    # Both streams outlast the frames that may wait for the consumer (256 read ahead): a shorter one peaks
    # lower only because its whole source fits in that buffer, and the comparison would then hinge on how
    # fast this machine's consumer is.
    short_peak, _ = peak(24.0)
    long_peak, updates = peak(72.0)
    assert long_peak < short_peak * 1.25 + 256 * 1024
    last = updates[-2]
    assert last.context_start == pytest.approx(last.time - 4.0)
    assert last.observed_segments[0].start == pytest.approx(last.context_start)
    assert last.anticipated_segments[-1].end == pytest.approx(last.time + 2.0)


def test_drop_policy_skips_stale_updates_not_frames(predictor, assets, offline):
    # Unpaced, the source races ahead of the loop, so regular updates are stale and only the final remains.
    updates, features = live_features(predictor, decoded(assets["ts"]), every=0.5, horizon=2.0, drop=True)
    np.testing.assert_allclose(features, offline, atol=1e-5, rtol=1e-5)
    assert updates[-1].final and sum(u.skipped for u in updates) + len(updates) - 1 == 17


def test_update_json_round_trip_and_cli_jsonl(predictor, assets, tmp_path, capsys):
    jsonl = tmp_path / "live.jsonl"
    code = cli_main(
        [
            "live",
            str(assets["ts"]),
            "--weights",
            str(assets["weights"]),
            "--device",
            "cpu",
            "--every",
            "3",
            "--horizon",
            "4",
            "--jsonl",
            str(jsonl),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    lines = jsonl.read_text().splitlines()
    updates = [LiveUpdate.from_json(line) for line in lines]
    assert [u.time for u in updates][:-1] == [3.0, 6.0] and updates[-1].final
    assert LiveUpdate.from_json(updates[0].to_json()) == updates[0]
    assert "now:" in out and "updates" in out.splitlines()[-1]
