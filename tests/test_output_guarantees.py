"""Output guarantees under adversarial use (issue 34): file-name limits, special files, animated images, a
full disk, interrupted writes, name claims, a corrupt state folder, absurd decoding plans, per-video writing
and one video named several ways, through the real CLI (`main([...])`: exit code, stderr, files) and API."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from actfusion_sdk.batch.inputs import find_inputs
from actfusion_sdk.batch.job import BatchJob
from actfusion_sdk.cli import main
from actfusion_sdk.errors import InputError, VideoError
from actfusion_sdk.fileio import atomic_write, fit_name
from actfusion_sdk.outputs import (
    SUFFIX_BYTES,
    InputIdentity,
    claim_output_names,
    output_is_finished,
    write_outputs,
)
from actfusion_sdk.predictor import Predictor
from actfusion_sdk.results import timeline
from actfusion_sdk.video.decode import VideoDecoder, probe_video

from .helpers import (
    SMALL_SETTINGS,
    write_level_video,
    write_small_model,
    write_tiny_weights,
    write_video,
)

pytestmark = pytest.mark.usefixtures("fast_seeded_weights", "single_thread")

NAME_MAX = 255


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_small_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("other-model"))


@pytest.fixture
def deadline() -> Iterator[None]:
    """Fail instead of hanging: a SIGALRM after 30 s interrupts a blocking open or read."""

    def expired(signum, frame):
        raise TimeoutError("the command blocked for 30 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def cli(capsys, *argv: object) -> tuple[int, list[str]]:
    """`actfusion ARGV` in this process: its exit code and its stderr lines (never a traceback)."""
    code = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err.splitlines()


def records(out: Path) -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in out.glob("*.record.json")}


def hidden_leftovers(out: Path) -> list[str]:
    """Temporary files (dot-named) anywhere under `out`, the state folder aside."""
    return [
        path.name for path in out.rglob(".*") if path.name != ".actfusion" and ".actfusion" not in path.parts
    ]


def settings_of(record: Path) -> dict:
    return json.loads(record.read_text())["settings"]


# ---- row 1: names at the file-system limit -----------------------------------------------------------


def test_long_stems_get_complete_outputs_within_the_name_limit(tmp_path: Path, model: Path, capsys) -> None:
    fits = write_level_video(tmp_path / "long" / f"{'c' * 220}.mp4", 1.0)
    too_long = write_level_video(tmp_path / "long" / f"{'d' * 250}.mp4", 1.0)
    short = write_level_video(tmp_path / "v" / "good2.mp4", 1.0)
    out = tmp_path / "out"
    code, err = cli(
        capsys, "segment", fits, too_long, short, "--weights", model, "--out", out, "--plot", "--quiet"
    )
    assert code == 0, err
    names = claim_output_names(out, [fits, too_long, short])  # the names the run claimed, read back
    digest = hashlib.sha256(str(too_long.absolute()).encode()).hexdigest()[:8]
    assert names[fits] == "c" * 220 and names[short] == "good2"
    assert names[too_long] == "d" * (NAME_MAX - SUFFIX_BYTES - 9) + f"-{digest}"
    for video, name in names.items():
        record = out / f"{name}.segmentation.record.json"
        assert output_is_finished(
            record, InputIdentity.of(video), settings_of(record), [f"{name}.segmentation.json"]
        )
        assert json.loads((out / f"{name}.segmentation.json").read_text())["video"] == str(video)
    assert all(len(os.fsencode(path.name)) <= NAME_MAX for path in out.iterdir())
    assert len(list(out.glob("*.png"))) == 3 and hidden_leftovers(out) == []


def test_atomic_write_to_a_name_at_the_limit(tmp_path: Path) -> None:
    for name in ("x" * NAME_MAX, "é" * 127 + "y"):  # 255 bytes, ASCII and two-byte characters
        target = tmp_path / name
        with atomic_write(target, "w") as handle:
            handle.write("whole")
        assert target.read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x" * NAME_MAX, "é" * 127 + "y"])


def test_fit_name_never_splits_a_character() -> None:
    name = "ab" + "é" * 10 + ".segmentation.png"  # é is two bytes
    for limit in range(5, 40):
        end, start = fit_name(name, limit), fit_name(name, limit, keep="start")
        assert len(end.encode()) <= limit and name.endswith(end)
        assert len(start.encode()) <= limit and name.startswith(start)
        assert limit - len(end.encode()) <= 1 and limit - len(start.encode()) <= 1


# ---- row 2: FIFOs, devices and sockets are answered at once ------------------------------------------


def test_special_files_are_refused_at_once(tmp_path: Path, model: Path, capsys, deadline) -> None:
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "cam.sock"))
    try:
        for path, kind, instead in (
            (fifo, "named pipe (FIFO)", "actfusion live"),
            (Path("/dev/null"), "character device", "actfusion live"),
            (tmp_path / "cam.sock", "socket", "save the stream to a file"),
        ):
            code, err = cli(capsys, "segment", path, "--weights", model, "--out", tmp_path / "out", "--quiet")
            assert code == 3 and len(err) == 1, err
            assert f"'{path}' is a {kind}, not a regular file" in err[0] and instead in err[0]
            with pytest.raises(VideoError, match=re.escape(kind)):
                probe_video(path)
            with pytest.raises(InputError, match=re.escape(kind)):
                InputIdentity.of(path)
    finally:
        listener.close()
    failures = json.loads((tmp_path / "out" / "failures.json").read_text())
    assert [Path(entry["video"]).name for entry in failures] == ["cam.sock"]  # each run supersedes the last


# ---- row 3: animated images are videos, still images are not -----------------------------------------


def write_animation(path: Path, frames: int, *, milliseconds: int = 100) -> Path:
    images = [Image.fromarray(np.full((32, 40, 3), 20 + 5 * i, np.uint8)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=milliseconds, loop=0)
    return path


def test_animated_images_are_segmented_and_still_ones_refused(tmp_path: Path, model: Path, capsys) -> None:
    gif = write_animation(tmp_path / "anim.gif", 40)
    png = write_animation(tmp_path / "anim.png", 25)  # APNG
    still = write_animation(tmp_path / "still.gif", 1)
    code, err = cli(capsys, "segment", gif, png, "--weights", model, "--out", tmp_path / "out", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "anim.segmentation.json").read_text())["duration"] == pytest.approx(
        4.0
    )
    code, err = cli(capsys, "segment", still, "--weights", model)
    assert (
        code == 3 and len(err) == 1 and "'" + str(still) + "' is a still image (gif), not a video" in err[0]
    )


def test_an_animation_holding_a_frame_for_seconds_is_not_damaged(tmp_path: Path, caplog) -> None:
    images = [Image.fromarray(np.full((32, 40, 3), level, np.uint8)) for level in (20, 120, 220)]
    images[0].save(tmp_path / "pause.gif", save_all=True, append_images=images[1:], duration=[100, 5000, 100])
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video.decode"):
        frames = list(VideoDecoder(tmp_path / "pause.gif", fps=10.0))
    assert len(frames) == 52 and caplog.records == []  # 0.1 s + 5 s + 0.1 s at 10 fps
    assert [round(frames[i].float().mean().item()) for i in (0, 1, 50, 51)] == [20, 120, 120, 220]


# ---- row 7: a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (real ENOSPC); skipped where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip() or made.returncode}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_fails_each_video_cleanly(tmp_path: Path, model: Path, small_disk: Path, capsys) -> None:
    videos = [write_level_video(tmp_path / f"v{index}.mp4", 2.0) for index in (1, 2)]
    out = small_disk / "out"
    out.mkdir()
    filler = small_disk / "filler"
    # Fill the disk, then free 16 KiB: a JSON fits, a PNG does not.
    with open(filler, "wb", buffering=0) as handle, pytest.raises(OSError) as full:
        while True:
            handle.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    os.truncate(filler, filler.stat().st_size - 16 * 1024)
    code, err = cli(capsys, "segment", *videos, "--weights", model, "--out", out, "--plot", "--quiet")
    assert code == 3
    failed = [line for line in err if line.startswith("actfusion: OSError: cannot write the outputs of")]
    assert len(failed) == 2 and all("No space left on device" in line for line in failed), err
    assert sorted(path.name for path in out.iterdir()) == [".actfusion", "failures.json"]
    assert [Path(e["video"]).name for e in json.loads((out / "failures.json").read_text())] == [
        "v1.mp4",
        "v2.mp4",
    ]


def test_full_disk_simulated_at_the_rename(tmp_path: Path, model: Path, monkeypatch, capsys) -> None:
    """Where no tmpfs can be mounted: ENOSPC from the OS call that publishes each PNG (os.replace)."""
    videos = [write_level_video(tmp_path / f"v{index}.mp4", 1.0) for index in (1, 2)]
    replace = os.replace

    def full_disk(source, target, *args, **kwargs):
        if str(target).endswith(".png"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    out = tmp_path / "out"
    code, err = cli(capsys, "segment", *videos, "--weights", model, "--out", out, "--plot", "--quiet")
    assert code == 3 and len(err) == 2, err
    for line, video in zip(err, videos, strict=True):
        assert line.startswith(
            f"actfusion: OSError: cannot write the outputs of '{video}' into '{out}': No space"
        )
    assert sorted(path.name for path in out.iterdir()) == [".actfusion", "failures.json"]


def test_a_record_that_cannot_be_written_leaves_no_output(tmp_path: Path, monkeypatch) -> None:
    """Simulated in-process at the record's write (ENOSPC from its atomic write): the outputs already renamed
    into place are removed again, and the old record was removed before them."""
    from actfusion_sdk import outputs

    output, record = tmp_path / "a.segmentation.json", tmp_path / "a.segmentation.record.json"
    output.write_text("old")
    record.write_text("{}")
    real = outputs.atomic_write

    def full_disk(path, mode="wb"):
        if Path(path) == record:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, mode)

    monkeypatch.setattr(outputs, "atomic_write", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_outputs(record, {output: lambda path: path.write_text("new")}, lambda digests: digests)
    assert list(tmp_path.iterdir()) == []


# ---- row 8: no output that its record calls finished unless it is that output --------------------------


class FirstRun(NamedTuple):
    """A video segmented into OUT/K by the first model: its result, record, their bytes and settings."""

    video: Path
    out: Path
    result: Path
    record: Path
    first: bytes
    settings: dict


def segment_once(tmp_path: Path, model: Path, capsys) -> FirstRun:
    video = write_level_video(tmp_path / "good.mp4", 2.0)
    out = tmp_path / "K"
    assert cli(capsys, "segment", video, "--weights", model, "--out", out, "--quiet")[0] == 0
    result, record = out / "good.segmentation.json", out / "good.segmentation.record.json"
    return FirstRun(video, out, result, record, result.read_bytes(), settings_of(record))


def assert_first_run_stands(run: FirstRun, other_model: Path) -> dict:
    """The folder is as the first run left it (its output and record, consistent), and the other model's
    outputs are not finished; returns the other model's settings."""
    identity = InputIdentity.of(run.video)
    assert run.result.read_bytes() == run.first and output_is_finished(run.record, identity, run.settings)
    second_settings = {**run.settings, "model": Predictor(other_model, device="cpu").card.sha256}
    job = BatchJob("segment", run.out, weights=str(other_model), plot=True)
    assert not job.is_finished("good", identity, second_settings)
    visible = sorted(path.name for path in run.out.iterdir() if not path.name.startswith("."))
    assert visible == ["good.segmentation.json", "good.segmentation.record.json"]
    return second_settings


def test_an_interrupted_rewrite_never_leaves_a_stale_output_finished(
    tmp_path: Path, model: Path, other_model: Path, monkeypatch, capsys
) -> None:
    run = segment_once(tmp_path, model, capsys)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the run were stopped while the PNG renders

    monkeypatch.setattr(timeline, "plot", killed)
    code, err = cli(
        capsys, "segment", run.video, "--weights", other_model, "--out", run.out, "--plot", "--quiet"
    )
    assert code == 130 and err == ["actfusion: interrupted"]
    assert_first_run_stands(run, other_model)
    assert hidden_leftovers(run.out) == []
    # An output replaced behind its record's back (another model's, a copy) is not finished either.
    identity = InputIdentity.of(run.video)
    run.result.write_text(run.first.decode().replace('"duration"', '"duration" ', 1))
    assert not output_is_finished(run.record, identity, run.settings)
    assert not BatchJob("segment", run.out, weights=str(model)).is_finished("good", identity, run.settings)


KILLED_WHILE_PLOTTING = """
import os, signal, sys
from actfusion_sdk.cli import main
from actfusion_sdk.results import timeline
timeline.plot = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_run_killed_while_the_png_renders_leaves_no_stale_finished_output(
    tmp_path: Path, model: Path, other_model: Path, capsys
) -> None:
    """The issue's case with a real SIGKILL, sent by the process to itself as the PNG starts rendering."""
    run = segment_once(tmp_path, model, capsys)
    argv = ["segment", run.video, "--weights", other_model, "--out", run.out, "--plot", "--quiet"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_PLOTTING, *map(str, argv)], capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    second_settings = assert_first_run_stands(run, other_model)  # temporaries left by the kill are hidden
    # The next run with the other model completes it.
    code, err = cli(capsys, *argv)
    identity = InputIdentity.of(run.video)
    assert code == 0 and output_is_finished(run.record, identity, second_settings, ["good.segmentation.png"])


# ---- row 9: claimed names never collide with real stems ---------------------------------------------------


def test_a_disambiguated_name_never_lands_on_a_real_stem(tmp_path: Path, model: Path, capsys) -> None:
    first, second = (
        write_level_video(tmp_path / d / "clip.mp4", 1.0, level=40 * i) for i, d in ((1, "d1"), (2, "d2"))
    )
    digest = hashlib.sha256(str(second.absolute()).encode()).hexdigest()[:8]
    impostor = write_level_video(tmp_path / "v" / f"clip-{digest}.mp4", 1.0, level=200)
    out = tmp_path / "out"
    code, err = cli(capsys, "segment", impostor, first, second, "--weights", model, "--out", out, "--quiet")
    assert code == 0, err
    written = records(out)
    assert len(written) == 3
    assert sorted(entry["input"]["path"] for entry in written.values()) == sorted(
        str(video.absolute()) for video in (impostor, first, second)
    )
    # Another run, into the same folder, with the claims lost: the names whose files are there stay taken.
    (out / ".actfusion" / "names.json").unlink()
    third = write_level_video(tmp_path / "d3" / "clip.mp4", 1.0, level=90)
    names = claim_output_names(out, [third])
    assert names[third] not in {name.removesuffix(".segmentation.record.json") for name in written}


def test_claims_in_any_order_give_distinct_names(tmp_path: Path) -> None:
    paths = [tmp_path / "d1" / "clip.mp4", tmp_path / "d2" / "clip.mp4"]
    digest = hashlib.sha256(str(paths[1]).encode()).hexdigest()
    paths += [tmp_path / f"clip-{digest[:8]}.mp4", tmp_path / f"clip-{digest[:16]}.mp4"]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]):
        out = tmp_path / f"out-{''.join(map(str, order))}"
        out.mkdir()
        names = {}
        for index in order:  # one run per video, so every claim sees the earlier ones
            names.update(claim_output_names(out, [paths[index]]))
        assert len(set(names.values())) == 4
        assert claim_output_names(out, paths) == names  # a path keeps its name for good


def test_names_differing_only_in_case_are_distinct_names(tmp_path: Path) -> None:
    """On a case-insensitive file system (macOS, Windows) Clip.* and clip.* are the same files."""
    paths = [tmp_path / "a" / "Clip.mp4", tmp_path / "b" / "clip.mp4", tmp_path / "c" / "CLIP.mp4"]
    names = claim_output_names(tmp_path / "out", paths)
    assert names[paths[0]] == "Clip" and len({name.casefold() for name in names.values()}) == 3
    (tmp_path / "out2").mkdir()
    (tmp_path / "out2" / "CLIP.segmentation.json").write_text("another video's")
    assert claim_output_names(tmp_path / "out2", paths[1:2])[paths[1]].startswith("clip-")


def test_generated_names_never_collide_and_always_fit(tmp_path: Path) -> None:
    """A sweep: 3 runs of 60 generated paths each (stems of 1 to 250 bytes, dots, dashes, case, accents,
    stems shaped like disambiguated names) into one folder that also holds unrelated files."""
    rng = np.random.default_rng(34)
    alphabet = list("abcABC-._é") + ["clip", "-06f22597", "ÉTÉ"]
    out = tmp_path / "out"
    (out / "features").mkdir(parents=True)
    foreign = {"clip.segmentation.json", "notes.txt", "features/ÉTÉ.npy"}
    for name in foreign:
        (out / name).write_text("not ours")
    claimed: dict[Path, str] = {}
    for run in range(3):
        paths = []
        for index in range(60):
            stem = "".join(rng.choice(alphabet, size=int(rng.integers(1, 90)))).lstrip(".") or "x"
            stem = fit_name(stem, int(rng.choice([8, 60, 250])), keep="start")
            paths.append(tmp_path / f"d{run}-{index % 7}" / f"{stem}.mp4")
        names = claim_output_names(out, paths)
        assert all(claimed.get(path, name) == name for path, name in names.items())  # names are for good
        claimed.update(names)
    folded = {name.casefold() for name in set(claimed.values())}
    assert len(folded) == len(set(claimed.values())) == len({os.path.abspath(p) for p in claimed})
    assert all(len(os.fsencode(name)) <= NAME_MAX - SUFFIX_BYTES for name in claimed.values())
    foreign_names = {Path(name).name.split(".")[0].casefold() for name in foreign}
    assert not folded & foreign_names


# ---- row 10: a corrupt state folder -------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda state: state.rmdir() or state.write_text("x"),
            "is a regular file, but it must be the folder",
        ),
        (lambda state: (state / "lock").mkdir(), "is a folder, but it must be the output folder's lock"),
        (
            lambda state: os.mkfifo(state / "lock"),
            "is a named pipe (FIFO), but it must be the output folder's",
        ),
        (lambda state: (state / "names.json").mkdir(), "is a folder, but it must be the file of output name"),
        (lambda state: os.mkfifo(state / "names.json"), "is a named pipe (FIFO), but it must be the file of"),
        (lambda state: (state.parent / "failures.json").mkdir(), "is a folder, but it must be the failures"),
        (
            lambda state: os.mkfifo(state.parent / "failures.json"),
            "(FIFO), but it must be the failures report",
        ),
    ],
    ids=[
        "state-file",
        "lock-folder",
        "lock-fifo",
        "names-folder",
        "names-fifo",
        "failures-folder",
        "failures-fifo",
    ],
)
def test_a_damaged_state_folder_is_one_clear_error(
    tmp_path: Path, model: Path, capsys, deadline, damage, message
) -> None:
    video = write_level_video(tmp_path / "good.mp4", 1.0)
    state = tmp_path / "out" / ".actfusion"
    state.mkdir(parents=True)
    damage(state)
    code, err = cli(capsys, "segment", video, "--weights", model, "--out", tmp_path / "out")
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert err[0].endswith("; remove or rename it")
    assert not list((tmp_path / "out").glob("*.segmentation*"))


def test_a_record_that_is_not_a_file_is_not_finished(tmp_path: Path, deadline) -> None:
    video = write_level_video(tmp_path / "good.mp4", 1.0)
    record = tmp_path / "good.segmentation.record.json"
    os.mkfifo(record)  # reading it would wait for a writer
    assert not output_is_finished(record, InputIdentity.of(video), {})
    job = BatchJob("segment", tmp_path)
    assert not job.is_finished("good", InputIdentity.of(video), job.settings("model"))


def test_a_features_file_where_the_folder_goes_is_one_clear_error(tmp_path: Path, capsys) -> None:
    video = write_level_video(tmp_path / "good.mp4", 1.0)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SMALL_SETTINGS.to_dict()))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "features").write_text("not a folder")
    code, err = cli(capsys, "extract", video, "--out", tmp_path / "out", "--settings", settings, "--quiet")
    features = tmp_path / "out" / "features"
    message = f"output folder '{features}' is a file; remove or rename it, or give another folder"
    assert code == 2 and err == [f"actfusion: ConfigError: {message}"]


@pytest.mark.parametrize("garbage", ["[1, 2]", "{not json", '{"clip": 5}', b"\xff\xfe"])
def test_garbage_name_claims_are_replaced_with_a_warning(
    tmp_path: Path, model: Path, capsys, garbage
) -> None:
    video = write_level_video(tmp_path / "good.mp4", 1.0)
    out = tmp_path / "out"
    (out / ".actfusion").mkdir(parents=True)
    registry = out / ".actfusion" / "names.json"
    registry.write_bytes(garbage if isinstance(garbage, bytes) else garbage.encode())
    (out / "good.segmentation.json").write_text("another video's result")  # its claim was in the lost file
    code, err = cli(capsys, "segment", video, "--weights", model, "--out", out, "--quiet")
    assert code == 0 and any("is not a table of output name claims" in line for line in err), err
    assert (out / "good.segmentation.json").read_text() == "another video's result"
    claims = json.loads(registry.read_text())
    assert list(claims.values()) == [str(video.absolute())] and list(claims) != ["good"]


# ---- also seen: an absurd plan is warned about before the work -----------------------------------------


@pytest.mark.parametrize("container", ["mp4", "mkv"])  # mp4 declares its frame count, Matroska does not
def test_an_hour_gap_in_three_frames_is_warned_before_the_work(tmp_path: Path, caplog, container) -> None:
    video = write_video(tmp_path / f"gap.{container}", 3, pts_ms=[0, 100, 3_600_100])
    frames = iter(VideoDecoder(video, fps=16.0))
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video.decode"):
        produced = [next(frames) for _ in range(3)]  # the gap's tens of thousands of frames are not made
    assert len(produced) == 3
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "3 source frame(s)" in warnings[0], warnings
    assert "span 3600.1" in warnings[0] and "makes 57,60" in warnings[0] and "16 fps" in warnings[0]


def test_a_regular_video_gets_no_plan_warning(tmp_path: Path, caplog) -> None:
    video = write_level_video(tmp_path / "fine.mp4", 2.0)
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video.decode"):
        assert len(list(VideoDecoder(video, fps=16.0))) == 32
    assert caplog.records == []


# ---- also seen: each video's outputs are written when it is done ----------------------------------------


def test_an_interrupt_keeps_the_videos_already_done(tmp_path: Path, model: Path, monkeypatch, capsys) -> None:
    videos = [write_level_video(tmp_path / f"v{index}.mp4", 1.0) for index in (1, 2, 3)]
    prepare = Predictor.prepare

    def interrupted_at_the_third(self, video, *args, **kwargs):
        if Path(video).name == "v3.mp4":
            raise KeyboardInterrupt
        return prepare(self, video, *args, **kwargs)

    monkeypatch.setattr(Predictor, "prepare", interrupted_at_the_third)
    out = tmp_path / "out"
    code, err = cli(capsys, "segment", *videos, "--weights", model, "--out", out, "--quiet")
    assert code == 130, err
    for video in videos[:2]:
        record = out / f"{video.stem}.segmentation.record.json"
        assert output_is_finished(record, InputIdentity.of(video), settings_of(record))
    assert not list(out.glob("v3.*"))


def test_a_many_line_error_is_one_line(tmp_path: Path, model: Path, monkeypatch, capsys) -> None:
    videos = [write_level_video(tmp_path / f"v{index}.mp4", 1.0) for index in (1, 2)]
    prepare = Predictor.prepare

    def breaks_on_the_first(self, video, *args, **kwargs):
        if Path(video).name == "v1.mp4":
            raise RuntimeError(
                "set_text(): incompatible arguments:\n    1. (self, string: str)\n\nInvoked with: x"
            )
        return prepare(self, video, *args, **kwargs)

    monkeypatch.setattr(Predictor, "prepare", breaks_on_the_first)
    out = tmp_path / "out"
    code, err = cli(capsys, "segment", *videos, "--weights", model, "--out", out, "--quiet")
    expected = "RuntimeError: set_text(): incompatible arguments: 1. (self, string: str) Invoked with: x"
    assert code == 3 and err == [f"actfusion: {expected}"]
    assert json.loads((out / "failures.json").read_text())[0]["error"] == expected
    assert (out / "v2.segmentation.record.json").is_file()


# ---- also seen: one video named several ways is one batch input ----------------------------------------


def test_batch_inputs_name_each_file_once(tmp_path: Path, monkeypatch) -> None:
    video = write_level_video(tmp_path / "videos" / "clip.mp4", 0.5)
    other = write_level_video(tmp_path / "videos" / "other.mp4", 0.5)
    (tmp_path / "link.mp4").symlink_to(video)
    os.link(video, tmp_path / "hard.mp4")
    (tmp_path / "list.txt").write_text("videos/clip.mp4\nlink.mp4\n")
    monkeypatch.chdir(tmp_path)
    given = [
        str(video),
        "videos/clip.mp4",
        "videos/../videos/clip.mp4",
        "link.mp4",
        "hard.mp4",
        "list.txt",
        str(tmp_path / "videos"),
        "videos/*.mp4",
    ]
    assert find_inputs(given) == [video, other]
