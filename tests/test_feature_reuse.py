"""segment/anticipate reuse features instead of decoding again (the per-video cache, `--features DIR`),
draw a ground-truth row with `--plot --truth`, and take `--threads` like every command that runs torch."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from actfusion_sdk.cache import CACHE_DIR_ENV
from actfusion_sdk.cli import main
from actfusion_sdk.features.i3d import I3DFeatureExtractor

from .helpers import TINY_CLASSES, write_moving_square, write_tiny_weights

pytestmark = pytest.mark.usefixtures("fast_seeded_weights", "single_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_tiny_weights(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def video(tmp_path):
    return write_moving_square(tmp_path / "square.mp4", 3.0)


@pytest.fixture
def decodes(monkeypatch, tmp_path):
    """How many times a video was decoded and its features extracted, with a fresh cache root."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    calls: list[str] = []
    extract = I3DFeatureExtractor.extract

    def counted(self, video, *args, **kwargs):
        calls.append(str(video))
        return extract(self, video, *args, **kwargs)

    monkeypatch.setattr(I3DFeatureExtractor, "extract", counted)
    return calls


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_second_format_and_a_rerun_read_the_cache(model, video, decodes, capsys):
    code, as_json, _ = run(capsys, "segment", video, "--weights", model, "--format", "json", "--quiet")
    assert code == 0 and len(decodes) == 1
    code, as_csv, _ = run(capsys, "segment", video, "--weights", model, "--format", "csv", "--quiet")
    assert code == 0 and len(decodes) == 1  # not decoded again
    code, again, _ = run(capsys, "segment", video, "--weights", model, "--format", "json", "--quiet")
    assert len(decodes) == 1
    first, second = json.loads(as_json), json.loads(again)
    assert first["segments"] == second["segments"] and first["num_frames"] == second["num_frames"]
    assert first["video"] == second["video"] == str(video)
    code, _, _ = run(capsys, "anticipate", video, "--weights", model, "--quiet", "--threads", "1")
    assert code == 0 and len(decodes) == 1 and torch.get_num_threads() == 1
    write_moving_square(video, 2.0)  # other content under the same name: decoded again
    assert run(capsys, "segment", video, "--weights", model, "--quiet")[0] == 0
    assert len(decodes) == 2


def test_an_empty_cache_root_turns_the_cache_off(model, video, decodes, capsys, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, "")
    for _ in range(2):
        assert run(capsys, "segment", video, "--weights", model, "--quiet")[0] == 0
    assert len(decodes) == 2


def test_features_dir_is_used_when_it_holds_this_video_with_the_models_settings(
    model, video, decodes, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv(CACHE_DIR_ENV, "")  # only --features may spare the decoding here
    out = tmp_path / "extracted"
    card = model / "model.json"
    options = ("--settings", card, "--quiet", "--threads", "1")
    code, _, err = run(capsys, "extract", video, "--out", out, *options)
    assert code == 0 and len(decodes) == 1, err
    code, reused, _ = run(capsys, "segment", video, "--weights", model, "--features", out, "--format", "json")
    assert code == 0 and len(decodes) == 1
    code, decoded, _ = run(capsys, "segment", video, "--weights", model, "--format", "json", "--quiet")
    assert len(decodes) == 2
    assert json.loads(reused)["segments"] == json.loads(decoded)["segments"]

    other = tmp_path / "demo-features"
    assert run(capsys, "extract", video, "--out", other, "--settings", "demo", "--quiet")[0] == 0
    code, _, err = run(capsys, "segment", video, "--weights", model, "--features", other, "--quiet")
    assert code == 3 and "were made with other settings than the model's" in err
    stranger = write_moving_square(tmp_path / "other.mp4", 2.0)
    code, _, err = run(capsys, "segment", stranger, "--weights", model, "--features", out, "--quiet")
    assert code == 3 and "holds no features of" in err and "actfusion extract" in err


def test_plot_draws_the_ground_truth_row(model, video, capsys, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("video,start,end,label\nsquare.mp4,0.5,1.5,pick\nsquare.mp4,2.0,3.0,pour\n")
    plain, with_truth = tmp_path / "plain", tmp_path / "truth"
    assert run(capsys, "segment", video, "--weights", model, "--plot", "--out", plain, "--quiet")[0] == 0
    options = ("--plot", "--out", with_truth, "--truth", truth, "--quiet")
    code, _, err = run(capsys, "segment", video, "--weights", model, *options)
    assert code == 0, err
    rows = {}
    for name, folder in (("plain", plain), ("truth", with_truth)):
        (png,) = folder.glob("*.png")
        rows[name] = Image.open(png).size[1]
    assert rows["truth"] - rows["plain"] >= 34  # one more bar row (timeline._ROW + _GAP = 46 px)
    code, _, err = run(capsys, "segment", video, "--weights", model, "--truth", truth)
    assert code == 2 and "add --plot" in err
    truth.write_text("video,start,end,label\nelsewhere.mp4,0.5,1.5,pick\n")
    options = ("--plot", "--out", plain, "--truth", truth)
    code, _, err = run(capsys, "segment", video, "--weights", model, *options)
    assert code == 3 and "no ground truth for" in err
    assert TINY_CLASSES[0] == "background"  # frames no annotation covers are drawn as the background
