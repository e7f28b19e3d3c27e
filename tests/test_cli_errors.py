"""Every user error of every command: one line on stderr with the documented exit code, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from actfusion_sdk.cli import main
from actfusion_sdk.errors import WeightsError
from actfusion_sdk.train.state import resume_checkpoint

from .helpers import SMALL_SETTINGS, write_level_video, write_small_model

NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("errors")
    (root / "a_file").write_text("not a folder")
    settings = {
        "mean_scalar": {**SMALL_SETTINGS.to_dict(), "mean": 0.45},
        "fps_huge": {**SMALL_SETTINGS.to_dict(), "fps": 1e6},
        "fps_tiny": {**SMALL_SETTINGS.to_dict(), "fps": 1e-9},
        "clip_huge": {**SMALL_SETTINGS.to_dict(), "clip_frames": 100_000},
        "stride_zero": {**SMALL_SETTINGS.to_dict(), "feature_stride": 0},
    }
    for name, data in settings.items():
        (root / f"{name}.json").write_text(json.dumps(data))
    return {
        "root": root,
        "video": write_level_video(root / "clip.mp4", 1.0),
        "weights": write_small_model(root / "model"),
    }


def cases(root: Path, video: Path, weights: Path) -> list[tuple[list[object], int, str]]:
    """(argv, exit code, a fragment of the one error line)."""
    extract = ["extract", video, "--out", root / "out"]
    segment = ["segment", video, "--weights", weights]
    rows = [
        (["extract", video, "--out", root / "out", "--device", "gpu0"], 2, "gpu0"),
        ([*extract, "--settings", root / "mean_scalar.json"], 2, "mean must be three numbers"),
        ([*extract, "--settings", root / "fps_huge.json"], 2, "fps must be a number from"),
        ([*extract, "--settings", root / "fps_tiny.json"], 2, "fps must be a number from"),
        ([*extract, "--settings", root / "clip_huge.json"], 2, "clip_frames must be an integer"),
        ([*extract, "--settings", root / "stride_zero.json"], 2, "feature_stride must be an integer"),
        ([*extract, "--batch-size", "0"], 2, "--batch-size"),
        (["extract", video, "--out", root / "a_file"], 2, "is a file"),
        (["extract", video, "--out", root / "a_file" / "below"], 2, "not writable"),
        ([*segment, "--out", root / "a_file", "--format", "json"], 2, "is a file"),
        # Checked before the model loads: a missing model would otherwise be the error.
        (["segment", video, "--weights", root / "none", "--out", root / "a_file"], 2, "is a file"),
        ([*segment, "--device", "gpu0"], 2, "gpu0"),
        (["anticipate", video, "--weights", weights, "--observed", "30", "--horizon", "1"], 3, "observed=30"),
        (["selfcheck", root / "a_file", "--cuda-graphs"], 2, "needs --device cuda"),
    ]
    if NO_CUDA:
        rows += [
            ([*extract, "--device", "cuda"], 2, "CUDA is not available"),
            ([*segment, "--device", "cuda"], 2, "CUDA is not available"),
            (["selfcheck", root / "a_file", "--device", "cuda"], 2, "CUDA is not available"),
        ]
    return rows


def test_every_bad_option_is_one_line_with_its_exit_code(files, capsys) -> None:
    for argv, code, fragment in cases(files["root"], files["video"], files["weights"]):
        assert main([str(a) for a in argv]) == code, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err, argv
        lines = [line for line in err.splitlines() if line.startswith("actfusion:")]
        assert len(lines) == 1 and fragment in lines[0], (argv, err)


def test_unwritable_out_is_a_usage_error_before_any_work(files, capsys) -> None:
    # sysfs refuses new folders even to root, so this holds wherever the tests run (CI runs as root).
    argv = ["segment", files["video"], "--weights", files["root"] / "none", "--out", "/sys/actfusion-out"]
    assert main([str(a) for a in argv + ["--format", "json"]]) == 2
    assert "not writable" in capsys.readouterr().err


def test_resume_over_an_unsafe_pickle_is_a_weights_error(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    unsafe = tmp_path / "latest.pt"
    torch.save({"version": Payload()}, unsafe)
    with pytest.raises(WeightsError, match="cannot resume from"):
        resume_checkpoint(unsafe, None, None, None, torch.device("cpu"))  # refused before any of them is used
