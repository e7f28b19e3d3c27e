"""The README's "Train on your own videos", command by command: a folder of videos and a CSV of annotations
-> `actfusion dataset build` -> `actfusion train` (also `--init demo`) -> `actfusion evaluate` -> `actfusion
segment` a held-out video -> `--format eaf` -> back into the dataset as annotations.

The videos are procedural (actfusion_sdk.demo) with short steps, and the features use 32 px crops
(`--settings tiny.json`) so that the whole guide runs in about a minute; the README's commands are otherwise
the same. The durations of the build, train and evaluate commands are printed (pytest -s shows them).
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import pytest

from actfusion_sdk.cli import main
from actfusion_sdk.data.annotations import read_annotations
from actfusion_sdk.data.builder import read_dataset_card
from actfusion_sdk.data.truth import truth_labels
from actfusion_sdk.demo.benchmark import generate_benchmark
from actfusion_sdk.demo.grammar import Pacing
from actfusion_sdk.model.checkpoint import load_card
from actfusion_sdk.results import SegmentationResult

from .helpers import TINY_SETTINGS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fast_seeded_weights", "single_thread")]

SHORT = Pacing(step_seconds=(1.5, 2.5), gap_seconds=(0.5, 1.0), gap_probability=0.3, lead_seconds=(0.5, 1.0))
TRAINING_VIDEOS = 8


def cli(capsys, *argv) -> tuple[str, str, float]:
    """Run one `actfusion` command in-process; its stdout, stderr and seconds (a failure shows stderr)."""
    started = time.perf_counter()
    code = main([str(arg) for arg in argv])
    seconds = time.perf_counter() - started
    captured = capsys.readouterr()
    assert code == 0, f"actfusion {' '.join(map(str, argv))} exited {code}: {captured.err}"
    return captured.out, captured.err, seconds


@pytest.fixture(scope="module")
def own_videos(tmp_path_factory) -> tuple[Path, Path, Path]:
    """videos/ with 8 rendered videos, annotations.csv (seconds, actions only) and one held-out video."""
    root = tmp_path_factory.mktemp("own")
    rendered = generate_benchmark(
        root / "rendered", num_videos=TRAINING_VIDEOS + 1, seed=7, size=64, fps=8, pacing=SHORT
    )
    videos = root / "videos"
    videos.mkdir()
    rows = []
    for index, (name, spec) in enumerate(rendered.videos.items()):
        source = rendered.root / "videos" / f"{name}.mp4"
        if index == TRAINING_VIDEOS:
            heldout = shutil.copy(source, root / f"{name}.mp4")
            continue
        shutil.copy(source, videos / f"{name}.mp4")
        rows += [
            (f"{name}.mp4", span.start_frame / spec.fps, span.end_frame / spec.fps, span.label)
            for span in spec.spans
            if span.label != "background"
        ]
    annotations = root / "annotations.csv"
    with annotations.open("w", newline="") as handle:
        csv.writer(handle).writerows([("video", "start", "end", "label"), *rows])
    return videos, annotations, Path(heldout)


def test_the_guide_from_videos_and_a_csv_to_predictions_and_back(own_videos, tmp_path, capsys):
    videos, annotations, heldout = own_videos
    settings = tmp_path / "tiny.json"
    settings.write_text(json.dumps(TINY_SETTINGS.to_dict()))
    data, runs = tmp_path / "data", tmp_path / "runs"
    seconds = {}

    _, _, seconds["build"] = cli(
        capsys, "dataset", "build", videos, "--annotations", annotations, "--out", data,
        "--settings", settings, "--quiet",
    )  # fmt: skip
    card = read_dataset_card(data)
    assert len(card.videos) == TRAINING_VIDEOS and card.classes[0] == "background"
    assert (data / "splits" / "train.split1.bundle").is_file()

    out, _, seconds["train"] = cli(
        capsys, "train", "--data", data, "--out", runs / "mine", "--epochs", "3", "--threads", "1", "--quiet"
    )
    model = runs / "mine" / "model"
    trained = load_card(model)
    assert "model 'mine'" in out and trained.config.name == "mine"
    assert trained.classes == card.classes and trained.features == card.settings.to_dict()

    _, err, _ = cli(
        capsys, "train", "--data", data, "--out", runs / "from-demo", "--init", "demo", "--epochs", "2",
        "--eval-every", "1", "--val-fraction", "0", "--threads", "1", "--quiet",
    )  # fmt: skip
    assert "initialised from" in err and "re-initialised" in err

    scores, _, seconds["evaluate"] = cli(
        capsys, "evaluate", "--data", data, "--weights", model, "--json", "--quiet", "--threads", "1"
    )
    assert 0 <= json.loads(scores)["tas"]["acc"] <= 100

    predictions = tmp_path / "predictions"
    cli(capsys, "segment", heldout, "--weights", model, "--plot", "--format", "eaf", "--out", predictions)
    (eaf,) = predictions.glob("*.eaf")
    # A second format reads the features cached by the first run; the .eaf gives back the same frame labels.
    out, _, _ = cli(capsys, "segment", heldout, "--weights", model, "--format", "json", "--quiet")
    result = SegmentationResult.from_json(out)
    assert {span.video for span in read_annotations(eaf)} == {heldout.stem}
    back = truth_labels([eaf], heldout, result.classes, result.fps, result.num_frames)
    assert back == [result.classes[i] for i in result.frame_labels]

    # The corrected prediction goes back into the dataset as the held-out video's annotations.
    cli(
        capsys, "dataset", "build", videos, heldout, "--annotations", annotations, eaf, "--out", data,
        "--settings", settings, "--quiet",
    )  # fmt: skip
    assert len(read_dataset_card(data).videos) == TRAINING_VIDEOS + 1
    print("\nown-data guide on", TRAINING_VIDEOS, "videos:", {k: f"{v:.1f} s" for k, v in seconds.items()})
