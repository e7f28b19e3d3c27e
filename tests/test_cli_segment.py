"""`actfusion segment` and `actfusion anticipate`: outputs parsed back, exit codes, one-line user errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from actfusion_sdk.cli import main
from actfusion_sdk.results import AnticipationResult, SegmentationResult

from .helpers import TINY_CLASSES, write_moving_square, write_tiny_weights

pytestmark = pytest.mark.usefixtures("fast_seeded_weights")


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return {
        "weights": write_tiny_weights(root / "tiny"),
        "video": write_moving_square(root / "counter.mp4", 3.0),
        "corrupt": corrupt,
    }


@pytest.fixture(autouse=True)
def _weights_from_the_environment(assets, monkeypatch):
    """In-process runs find the tiny model through $ACTFUSION_WEIGHTS (the resolution order's second step)."""
    monkeypatch.setenv("ACTFUSION_WEIGHTS", str(assets["weights"]))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("actfusion:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.slow
def test_segment_in_a_subprocess_writes_json_and_plot(assets, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-c",
        "import sys; from actfusion_sdk.cli import main; sys.exit(main())",
        "segment",
        assets["video"],
        "--weights",
        assets["weights"],
        "--device",
        "cpu",
        "--format",
        "json",
        "--out",
        out,
        "--plot",
    ]
    completed = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert completed.returncode == 0, completed.stderr
    result = SegmentationResult.from_json(out / "counter.segmentation.json")
    assert result.video == str(assets["video"]) and result.classes == TINY_CLASSES
    assert len(result.frame_labels) == 6  # 3 s, 2 features per second
    assert result.segments[0].start == 0.0 and result.segments[-1].end == result.duration
    assert all(a.end == b.start for a, b in zip(result.segments, result.segments[1:], strict=False))
    image = Image.open(out / "counter.segmentation.png")
    image.load()
    assert image.format == "PNG" and image.size[0] == 1200
    assert f"wrote {out / 'counter.segmentation.json'}" in completed.stderr
    for segment in result.segments:  # the table on stdout
        assert f"{segment.start:.2f}s" in completed.stdout and segment.label in completed.stdout


def test_segment_csv_on_stdout(assets, capsys):
    code, out, err = run_cli(capsys, "segment", assets["video"], "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["start"] == "0.0" and int(rows[-1]["end_frame"]) == 6
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(rows, rows[1:], strict=False))
    assert {row["label"] for row in rows} <= set(TINY_CLASSES)


@pytest.mark.slow
def test_anticipate_ratio_json_and_observed_horizon_table(assets, capsys, tmp_path):
    code, out, err = run_cli(
        capsys,
        "anticipate",
        assets["video"],
        "--ratio",
        "0.5",
        "--format",
        "json",
    )
    assert code == 0, err
    result = AnticipationResult.from_json(out)
    # round(ceil(6 / 2) * 0.5) = 2 sampled steps (banker's rounding) = 4 frames = 2.0 s at 2 features/s.
    assert (result.cut_frame, result.cut_time, result.observation_ratio) == (4, 2.0, 0.5)
    assert result.observed_segments[-1].end == result.anticipated_segments[0].start == 2.0

    code, out, err = run_cli(
        capsys,
        "anticipate",
        assets["video"],
        "--observed",
        "1.5",
        "--horizon",
        "4",
        "--out",
        tmp_path,
        "--format",
        "mstcn",
        "--quiet",
    )
    assert code == 0 and err == ""
    labels = (tmp_path / "counter.anticipation.txt").read_text().splitlines()
    assert len(labels) == 11 and set(labels) <= set(TINY_CLASSES)  # (1.5 + 4) s at 2 features/s
    assert "cut at 1.50 s" in out and "horizon 4.00 s" in out


@pytest.mark.parametrize("ratio", ["0", "1", "-0.3", "1.2"])
def test_bad_ratio_is_a_usage_error(assets, capsys, ratio):
    code, out, err = run_cli(capsys, "anticipate", assets["video"], "--ratio", ratio)
    assert code == 2 and out == ""
    assert_one_line_error(err, "ConfigError", "ratio must be in (0, 1)")


def test_missing_video_is_an_input_error(assets, capsys, tmp_path):
    code, _, err = run_cli(capsys, "segment", tmp_path / "absent.mp4")
    assert code == 3
    assert_one_line_error(err, "VideoError", "absent.mp4", "does not exist")


def test_corrupt_video_is_an_input_error(assets, capsys):
    code, _, err = run_cli(capsys, "segment", assets["corrupt"], "--quiet")
    assert code == 3
    assert_one_line_error(err, "VideoError", "corrupt.mp4")


def test_missing_weights_is_a_weights_error(assets, capsys, tmp_path):
    code, _, err = run_cli(capsys, "segment", assets["video"], "--weights", tmp_path / "none.safetensors")
    assert code == 4
    assert_one_line_error(err, "WeightsError", "none.safetensors", "does not exist")


def test_usage_errors_exit_2(assets, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["anticipate", str(assets["video"]), "--ratio", "0.3", "--observed", "2"])
    assert exit_info.value.code == 2
    code, _, err = run_cli(capsys, "anticipate", assets["video"], "--observed", "2")
    assert code == 2
    assert_one_line_error(err, "go together")
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(assets["video"]), "--format", "xml"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_several_videos_need_out_for_csv(assets, capsys, tmp_path):
    second = write_moving_square(tmp_path / "second.mp4", 2.0)
    code, out, err = run_cli(capsys, "segment", assets["video"], second, "--format", "activitynet")
    assert code == 0, err
    assert sorted(json.loads(out)["results"]) == ["counter", "second"]
    code, _, err = run_cli(capsys, "segment", assets["video"], second, "--format", "csv")
    assert code == 2
    assert_one_line_error(err, "--out DIR")
