"""Output integrity (issue 16): outputs know their input, never collide, reports survive concurrent runs,
segment/anticipate carry on past bad videos, model files are deterministic, rotation is really exercised."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from actfusion_sdk.cli import main
from actfusion_sdk.features import i3d
from actfusion_sdk.model.checkpoint import load_model, save_model
from actfusion_sdk.outputs import InputIdentity, claim_output_names, output_is_finished
from actfusion_sdk.video.decode import probe_video, read_frames

from .helpers import SMALL_SETTINGS, tiny_config, write_level_video, write_small_model

CLI = "import sys; from actfusion_sdk.cli import main; sys.exit(main())"


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(SMALL_SETTINGS.to_dict()))
    return path


def extract_cli(*argv: object, settings: Path) -> subprocess.CompletedProcess[str]:
    """`actfusion extract` in its own process."""
    command = [sys.executable, "-c", CLI, "extract", *map(str, argv), "--settings", str(settings)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def feature_frames(out: Path, name: str) -> int:
    return np.load(out / "features" / f"{name}.npy").shape[1]


def test_same_stem_in_two_folders_never_collides(tmp_path: Path, settings_file: Path) -> None:
    first = write_level_video(tmp_path / "a" / "clip.mp4", 2.0)
    second = write_level_video(tmp_path / "b" / "clip.mp4", 1.0, level=150)
    out = tmp_path / "out"
    assert extract_cli(first, "--out", out, settings=settings_file).returncode == 0
    run = extract_cli(second, "--out", out, settings=settings_file)
    assert run.returncode == 0 and "1 extracted, 0 skipped" in run.stderr, run.stderr
    names = claim_output_names(out, [first, second])
    assert names[first] == "clip" and names[second].startswith("clip-") and len(names[second]) == 13
    assert (feature_frames(out, "clip"), feature_frames(out, names[second])) == (5, 3)
    sidecar = json.loads((out / "features" / f"{names[second]}.json").read_text())
    assert sidecar["input"]["path"] == str(second.resolve())
    # Both in one run: each keeps its name, both are finished, nothing is redone.
    assert (
        main(["extract", str(first), str(second), "--out", str(out), "--settings", str(settings_file)]) == 0
    )
    assert sorted(p.name for p in (out / "features").glob("*.npy")) == sorted(
        f"{name}.npy" for name in names.values()
    )


def test_a_video_replaced_in_place_is_extracted_again(tmp_path: Path, settings_file: Path) -> None:
    video = write_level_video(tmp_path / "clip.mp4", 2.0)
    out = tmp_path / "out"
    assert extract_cli(video, "--out", out, settings=settings_file).returncode == 0
    identity = InputIdentity.of(video)
    assert output_is_finished(out / "features" / "clip.json", identity, SMALL_SETTINGS.to_dict())
    write_level_video(video, 1.0, level=200)
    assert not output_is_finished(
        out / "features" / "clip.json", InputIdentity.of(video), SMALL_SETTINGS.to_dict()
    )
    run = extract_cli(video, "--out", out, settings=settings_file)
    assert run.returncode == 0 and "1 extracted, 0 skipped" in run.stderr, run.stderr
    assert feature_frames(out, "clip") == 3


def test_concurrent_runs_keep_each_others_failures(tmp_path: Path, settings_file: Path) -> None:
    """B starts and is paused mid-video; A fails a video and exits; B then finishes without failures."""
    good = write_level_video(tmp_path / "good.mp4", 3.0)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-c",
        CLI,
        "extract",
        str(good),
        "--out",
        str(out),
        "--settings",
        str(settings_file),
    ]
    second = subprocess.Popen(command, stderr=subprocess.PIPE)
    seen = b""
    while b"good.mp4" not in seen:  # the progress bar names the video once B has begun it
        chunk = os.read(second.stderr.fileno(), 4096)
        assert chunk, "the second run ended before it began its video"
        seen += chunk
    second.send_signal(signal.SIGSTOP)
    try:
        first = extract_cli(broken, "--out", out, settings=settings_file)
    finally:
        second.send_signal(signal.SIGCONT)
    second.stderr.read()
    assert second.wait(timeout=300) == 0
    assert first.returncode == 3, first.stderr
    failures = json.loads((out / "failures.json").read_text())
    assert [Path(entry["video"]).name for entry in failures] == ["broken.mp4"]
    assert feature_frames(out, "good") == 8


def test_segment_over_several_videos_carries_on_past_a_bad_one(tmp_path: Path, capsys) -> None:
    weights = write_small_model(tmp_path / "model")
    good = write_level_video(tmp_path / "good.mp4", 2.0)
    second = write_level_video(tmp_path / "other" / "good.mp4", 1.0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    argv = ["segment", good, bad, second, "--weights", weights, "--out", out, "--format", "json", "--quiet"]
    assert main([str(a) for a in argv]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and [line for line in err.splitlines() if "bad.mp4" in line]
    names = sorted(p.name for p in out.glob("*.segmentation.json") if ".record." not in p.name)
    assert (
        names[0] == "good-" + names[0][5:13] + ".segmentation.json" and names[1] == "good.segmentation.json"
    )
    assert [Path(e["video"]).name for e in json.loads((out / "failures.json").read_text())] == ["bad.mp4"]
    record = out / "good.segmentation.record.json"
    settings = json.loads(record.read_text())["settings"]
    assert output_is_finished(record, InputIdentity.of(good), settings)


def test_a_video_changed_while_it_is_read_is_a_failure_not_a_result(tmp_path: Path, monkeypatch, capsys):
    weights = write_small_model(tmp_path / "model")
    video = write_level_video(tmp_path / "growing.mp4", 1.0)
    extract = i3d.I3DFeatureExtractor.extract

    def rewritten_meanwhile(self, path, *args, **kwargs):
        features = extract(self, path, *args, **kwargs)
        write_level_video(Path(path), 2.0, level=120)  # the recorder rewrote it during extraction
        return features

    monkeypatch.setattr(i3d.I3DFeatureExtractor, "extract", rewritten_meanwhile)
    out = tmp_path / "out"
    argv = ["segment", video, "--weights", weights, "--out", out, "--quiet"]
    assert main([str(a) for a in argv]) == 3
    assert "changed while it was read" in capsys.readouterr().err
    assert not list(out.glob("*.segmentation.json"))


def test_equal_weights_give_equal_files(tmp_path: Path) -> None:
    first = write_small_model(tmp_path / "one")
    model, card = load_model(first)
    second = save_model(model, card, tmp_path / "two")
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    header = (first / "model.safetensors").read_bytes()
    keys = list(json.loads(header[8 : 8 + int.from_bytes(header[:8], "little")]))
    assert keys == sorted(keys)


def test_rotated_video_is_turned_upright(tmp_path: Path) -> None:
    plain = write_level_video(tmp_path / "plain.mp4", 0.2)
    rotated = write_level_video(tmp_path / "rotated.mp4", 0.2, rotation=90)
    with av.open(str(rotated)) as container:  # PyAV reads the display matrix back
        frame = next(container.decode(video=0))
        assert frame.rotation == 90
    assert probe_video(rotated).width == 40  # coded size; rotation is applied per frame
    upright, turned = read_frames(plain, 10), read_frames(rotated, 10)
    assert turned.shape[1:3] == (40, 32) and upright.shape[1:3] == (32, 40)
    assert torch.equal(turned, torch.rot90(upright, k=1, dims=(1, 2)))


def test_resume_logs_each_epoch_once(tmp_path: Path) -> None:
    from actfusion_sdk.data.synthetic import write_synthetic_mstcn
    from actfusion_sdk.train import train

    data = write_synthetic_mstcn(
        tmp_path / "toy", num_videos=5, num_classes=3, feature_dim=16, frames=(30, 40), test_videos=1
    )
    out = tmp_path / "run"
    common = dict(eval_every=2, seed=0, val_fraction=0.25, progress=False)
    train(tiny_config(batch_size=2), data, 1, out, epochs=2, **common)
    shutil.copy(out / "latest.pt", tmp_path / "epoch2.pt")
    train(tiny_config(batch_size=2), data, 1, out, epochs=3, resume=True, **common)
    shutil.copy(
        tmp_path / "epoch2.pt", out / "latest.pt"
    )  # as if killed after logging epoch 3, before saving
    train(tiny_config(batch_size=2), data, 1, out, epochs=3, resume=True, **common)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["event"] == "epoch"] == [1, 2, 3]


def test_symlink_loop_in_a_folder_is_reported(tmp_path: Path, settings_file: Path, capsys) -> None:
    folder = tmp_path / "videos"
    write_level_video(folder / "fine.mp4", 1.0)
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    out = tmp_path / "out"
    assert main(["extract", str(folder), "--out", str(out), "--settings", str(settings_file), "--quiet"]) == 3
    failures = json.loads((out / "failures.json").read_text())
    assert [Path(f["video"]).name for f in failures] == ["loop.mp4"]
    assert "symbolic link loop" in failures[0]["error"]
    assert "Traceback" not in capsys.readouterr().err
