"""What a new user hits in the first hour (issue 13): one test per point, on real files and the real CLI."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from actfusion_sdk import predictor as predictor_module
from actfusion_sdk.cli import main
from actfusion_sdk.demo.encode import write_mp4
from actfusion_sdk.errors import ConfigError
from actfusion_sdk.features import i3d
from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.predictor import NO_DEMO_NOTICE, AnticipationWindow, Predictor

from .helpers import write_moving_square, write_tiny_weights, write_video

pytestmark = pytest.mark.usefixtures("fast_seeded_weights")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("first_contact")
    return {
        "weights": write_tiny_weights(root / "tiny"),
        "video": write_moving_square(root / "clip.mp4", 4.0),  # 2 features/s: 8 features
    }


@pytest.fixture
def extractions(monkeypatch):
    """The calls to the I3D extractor, and how many features each one produced."""
    calls: list[int] = []
    extract = i3d.I3DFeatureExtractor.extract

    def counting(self, video_path, progress=None, **options):
        features = extract(self, video_path, progress, **options)
        calls.append(features.features.shape[1])
        return features

    monkeypatch.setattr(i3d.I3DFeatureExtractor, "extract", counting)
    return calls


def test_1_out_without_format_writes_json(assets, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["segment", str(assets["video"]), "--weights", str(assets["weights"]), "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    written = json.loads((out / "clip.segmentation.json").read_text())
    assert written["kind"] == "segmentation" and written["segments"]
    assert "clip" in capsys.readouterr().out  # the table still goes to stdout


def test_2_demo_model_on_other_video_says_so_once(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv(NO_DEMO_NOTICE, raising=False)
    predictor_module._demo_model_notice.cache_clear()
    own = write_moving_square(tmp_path / "street.mp4", 1.0)
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    demo = tmp_path / "demo.mp4"
    write_mp4([frames], demo, fps=16)  # the demo renderer's encoder tags its videos
    predictor = Predictor(device="cpu")  # the bundled demo model
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk"):
        predictor.extract(demo)
        assert caplog.records == []
        predictor.extract(own)
        predictor.extract(own)
    (record,) = caplog.records
    assert "bundled demo model" in record.getMessage() and "actfusion train" in record.getMessage()

    predictor_module._demo_model_notice.cache_clear()
    monkeypatch.setenv(NO_DEMO_NOTICE, "1")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk"):
        predictor.extract(own)
    assert caplog.records == []
    predictor_module._demo_model_notice.cache_clear()


def test_3_observed_extracts_only_what_it_needs(assets, extractions):
    pipeline = Pipeline(assets["video"], weights=assets["weights"], device="cpu", progress=False)
    window = AnticipationWindow(observed=1.5, horizon=2.0)
    result = pipeline.anticipate(observed=1.5, horizon=2.0)
    assert extractions == [3]  # 1.5 s at 2 features/s, not the video's 8
    assert result.cut_frame == 3 and result.num_frames == 3 + 4
    partial = pipeline.features()  # segment() needs them all: extracted again, in full
    assert extractions == [3, 8]
    whole = partial[0].features
    first = Predictor(assets["weights"], device="cpu").extract(assets["video"], window=window).features
    np.testing.assert_allclose(first, whole[:, :3], rtol=1e-5, atol=1e-5)


def test_3_impossible_observation_is_refused_before_decoding(assets, extractions, capsys):
    argv = ["anticipate", str(assets["video"]), "--weights", str(assets["weights"]), "--quiet"]
    assert main([*argv, "--observed", "100", "--horizon", "5"]) == 3
    assert extractions == []
    # Before decoding from the container's duration, or from the features when a run has cached them.
    err = capsys.readouterr().err
    assert err.startswith("actfusion: ConfigError: observed=100") and str(assets["video"]) in err
    assert "lasts 4.00 s" in err or "has 8 (4.00 s)" in err
    with pytest.raises(ConfigError, match="lasts 4.00 s"):
        Predictor(assets["weights"], device="cpu").extract(
            assets["video"], window=AnticipationWindow(observed=100, horizon=5)
        )


def test_4_decoder_findings_are_one_plain_line(assets, tmp_path, capsys):
    times = [t for t in range(0, 4000, 62) if not 1000 < t < 2000]  # 16 fps with a 1 s hole
    gappy = write_video(tmp_path / "gappy.mkv", len(times), fps=16, size=(64, 64), pts_ms=times)
    argv = ["segment", str(gappy), "--weights", str(assets["weights"]), "--quiet", "--format", "json"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "gappy.mkv" in line]
    assert len(lines) == 1 and lines[0].startswith("actfusion: warning: ")
    assert "dropped frames (longest gap 1.0" in lines[0] and "truncated" not in lines[0]
    assert "UserWarning" not in err and ".py:" not in err


def test_5_make_benchmark_defaults_to_held_out_videos(tmp_path, capsys):
    small = ["--videos", "1", "--size", "64", "--fps", "4", "--test-fraction", "0", "--quiet"]
    assert main(["make-benchmark", "--out", str(tmp_path / "default"), *small]) == 0
    assert json.loads((tmp_path / "default" / "benchmark.json").read_text())["settings"]["seed"] == 1000
    assert "warning" not in capsys.readouterr().err
    assert main(["make-benchmark", "--out", str(tmp_path / "seed0"), "--seed", "0", *small]) == 0
    assert "training and validation videos" in capsys.readouterr().err


def test_6_selfcheck_of_a_non_vector_file_is_one_whole_sentence(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# not vectors\n")
    assert main(["selfcheck", str(readme)]) == 3
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "is not a test-vector file" in line and line.endswith(")")


def test_6_a_folder_given_as_a_video_is_called_a_folder(assets, tmp_path, capsys):
    assert main(["segment", str(tmp_path), "--weights", str(assets["weights"]), "--quiet"]) == 3
    assert "is a directory" in capsys.readouterr().err


def test_6_no_empty_progress_line_before_extraction(assets, capsys):
    Predictor(assets["weights"], device="cpu").extract(assets["video"], progress=True)
    # The empty bar read "0feature [00:00, ?feature/s]"; a rate such as "70.70feature/s" must not match.
    assert not re.search(r"(?<![\d.])0feature \[", capsys.readouterr().err)


def test_6_makefile_says_what_it_installs():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    setup = makefile[makefile.index("$(STAMP):") :].split("\n\n")[0]
    assert "@echo" in setup.splitlines()[1]  # the first thing the setup step does is say what it does
