"""`actfusion extract`: MS-TCN layout output, sidecars, skipping, failure report, exit code."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_sdk.cli import main
from actfusion_sdk.features.extract import find_videos
from actfusion_sdk.features.settings import WeightsSource
from actfusion_sdk.fileio import atomic_write

from .helpers import seeded_i3d, tiny_extractor, tiny_settings, write_video


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "alpha.mp4", 9, fps=10, size=(40, 36))
    write_video(folder / "beta.mkv", 20, fps=20, size=(36, 40))
    (folder / "notes.txt").write_text("not a video, and not picked up from a directory")
    return folder


def write_settings(path: Path, settings_dict: dict) -> Path:
    path.write_text(json.dumps(settings_dict))
    return path


@pytest.mark.slow
def test_extract_writes_features_sidecars_and_a_failure_report(
    tmp_path: Path, videos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_text("garbage")
    settings = write_settings(tmp_path / "settings.json", tiny_settings().to_dict())
    out = tmp_path / "out"
    argv = [
        "extract",
        str(videos),
        str(broken),
        "--out",
        str(out),
        "--settings",
        str(settings),
        "--batch-size",
        "2",
    ]
    assert main(argv) == 3

    features = out / "features"
    assert sorted(p.name for p in features.iterdir()) == ["alpha.json", "alpha.npy", "beta.json", "beta.npy"]
    alpha = np.load(features / "alpha.npy")
    # alpha: 9 frames at 10 fps -> ceil(9/4) = 3 features; beta: 1 s -> 10 frames at 10 fps -> 3 features.
    assert alpha.shape == (2048, 3) and alpha.dtype == np.float32
    assert np.load(features / "beta.npy").shape == (2048, 3)
    expected = tiny_extractor().extract(videos / "alpha.mp4").features
    assert np.allclose(alpha, expected, rtol=1e-5, atol=1e-5)

    sidecar = json.loads((features / "alpha.json").read_text())
    assert sidecar["shape"] == [2048, 3] and sidecar["timestamps"] == [0.2, 0.6, 1.0]
    assert (sidecar["fps"], sidecar["features_per_second"], sidecar["feature_stride"]) == (10.0, 2.5, 4)
    assert sidecar["extractor"] == "pytorchvideo/i3d_r50"
    assert sidecar["weights"] == {"kind": "seeded", "seed": 0}
    assert sidecar["settings"] == tiny_settings().to_dict()

    failures = json.loads((out / "failures.json").read_text())
    assert [Path(f["video"]).name for f in failures] == ["broken.mp4"]
    assert "VideoError" in failures[0]["error"] and "broken.mp4" in failures[0]["error"]
    assert "broken.mp4" in capsys.readouterr().err
    assert not list(out.rglob("*.tmp"))

    # A second run skips what is finished and, once the broken input is gone, succeeds quietly.
    stamp = (features / "alpha.npy").stat().st_mtime_ns
    assert main(["extract", str(videos), "--out", str(out), "--settings", str(settings), "--quiet"]) == 0
    assert (features / "alpha.npy").stat().st_mtime_ns == stamp
    assert capsys.readouterr().err == ""
    assert not (out / "failures.json").exists()


def test_extract_with_a_local_weights_file_and_model_card_settings(tmp_path: Path, videos: Path) -> None:
    weights = tmp_path / "I3D_8x8_R50.pyth"
    torch.save({"model_state": seeded_i3d(0)}, weights)
    card = {"format_version": 1, "features": tiny_settings(WeightsSource("file")).to_dict()}
    settings = write_settings(tmp_path / "model.json", card)
    out = tmp_path / "out"
    argv = ["extract", str(videos / "alpha.mp4"), "--out", str(out), "--settings", str(settings)]
    assert main([*argv, "--i3d-weights", str(weights), "--quiet"]) == 0
    sidecar = json.loads((out / "features" / "alpha.json").read_text())
    assert sidecar["weights"] == {"kind": "file", "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert main([*argv, "--quiet"]) == 4  # file-kind settings without --i3d-weights: a weights error


def test_unknown_settings_name_is_a_usage_error(tmp_path: Path, videos: Path) -> None:
    assert main(["extract", str(videos), "--out", str(tmp_path / "o"), "--settings", "imagenet"]) == 2


def test_find_videos_keeps_files_and_scans_directories(tmp_path: Path, videos: Path) -> None:
    missing = tmp_path / "missing.mp4"
    found = find_videos([videos, missing, videos / "alpha.mp4"])
    assert [p.name for p in found] == ["alpha.mp4", "beta.mkv", "missing.mp4"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write("partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
