"""`build_dataset` / `actfusion dataset build` on small rendered clips: the MS-TCN layout it writes (loaded
with `MSTCNDataset`), frame labels at the features' centre times, folds, the dataset card, and every
bad-annotation case of issue 32 (message, exit code, no partial dataset).

The clips are extracted once per module with the tiny seeded extractor (tests/helpers.py; the tests using that
build are marked slow); later builds copy that dataset and rebuild it in place, which reuses its features
instead of decoding again. The bad-annotation cases fail before any extraction, so they are fast.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from pympi.Elan import Eaf

from actfusion_sdk.cli import main
from actfusion_sdk.data.builder import CARD_FILE, build_dataset, read_dataset_card
from actfusion_sdk.data.folds import assign_folds, untrained_classes
from actfusion_sdk.data.mstcn import MSTCNDataset, read_mapping
from actfusion_sdk.errors import DatasetError, VideoError

from .helpers import tiny_extractor, tiny_settings, write_moving_square

SECONDS = 3.2
# (video, start, end, label) in seconds; clip3's rows go to an ELAN file, the others to a CSV.
ROWS = [
    ("clip0", 0.0, 1.2, "reach"),
    ("clip0", 1.2, 2.4, "pour"),
    ("clip1", 0.4, 1.6, "reach"),
    ("clip1", 1.6, 3.0, "pour"),
    ("clip2", 0.0, 1.0, "pour"),
    ("clip2", 1.0, 2.0, "stir"),
    ("clip2", 2.0, 2.8, "Reach"),  # merged into "reach" with merge_case
    ("clip3", 0.5, 1.5, "stir"),
    ("clip3", 1.5, 2.5, "reach"),
    ("clip3", 2.0, 4.5, "pour"),  # overlaps reach (the later one wins) and runs 1.3 s past the end
]
FEATURE_PERIOD = 4 / 10.0  # tiny settings: one feature every 4 frames decoded at 10 fps


def write_annotations(folder: Path, rows=ROWS) -> list[Path]:
    table = folder / "labels.csv"
    table.write_text(
        "file,begin,end,action\n"
        + "".join(f"{v}.mp4,{s},{e},{label}\n" for v, s, e, label in rows if v != "clip3")
    )
    document = Eaf()
    document.add_linked_file("file:///somewhere/clip3.mp4", mimetype="video/mp4")
    document.add_tier("actions")
    for video, start, end, label in rows:
        if video == "clip3":
            document.add_annotation("actions", round(start * 1000), round(end * 1000), label)
    document.remove_tier("default")
    document.to_file(str(folder / "clip3.eaf"))
    return [table, folder / "clip3.eaf"]


def expected_labels(video: str, frames: int, rows=ROWS, duration: float = SECONDS) -> list[str]:
    """Each feature frame's class from its centre time: the covering row that starts last, else background."""
    names = []
    for k in range(frames):
        centre = (k + 0.5) * FEATURE_PERIOD
        covering = [
            (start, label)
            for v, start, end, label in rows
            if v == video and start <= centre < min(end, duration)
        ]
        label = max(covering)[1] if covering else "background"
        names.append("reach" if label == "Reach" else label)
    return names


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for index in range(4):
        write_moving_square(folder / f"clip{index}.mp4", SECONDS)
    return folder


@pytest.fixture(scope="module")
def built(clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    card = build_dataset(
        [clips],
        write_annotations(root),
        root / "DATA",
        extractor=tiny_extractor(),
        folds=2,
        overlap="later",
        merge_case=True,
        tier="actions",
    )
    return root / "DATA", card


def copy_of(built, tmp_path: Path) -> Path:
    """A copy of the built dataset, to rebuild in place (its features are reused)."""
    return Path(shutil.copytree(built[0], tmp_path / "DATA", copy_function=shutil.copy2))


@pytest.mark.slow  # the module's extraction (the `built` fixture)
def test_layout_loads_as_an_mstcn_dataset_with_labels_at_feature_centres(built):
    data, card = built
    assert sorted(p.name for p in data.iterdir() if not p.name.startswith(".")) == [
        CARD_FILE,
        "features",
        "groundTruth",
        "mapping.txt",
        "splits",
    ]
    assert read_mapping(data / "mapping.txt") == ("background", "pour", "reach", "stir") == card.classes
    for fold in (1, 2):
        train, test = MSTCNDataset(data, fold, "train"), MSTCNDataset(data, fold, "test")
        assert sorted(v.name for v in train.videos + test.videos) == ["clip0", "clip1", "clip2", "clip3"]
        assert train.feature_settings == tiny_settings().to_dict()
    for video in ("clip0", "clip1", "clip2", "clip3"):
        features = np.load(data / "features" / f"{video}.npy")
        sidecar = json.loads((data / "features" / f"{video}.json").read_text())
        frames = features.shape[1]
        assert features.shape[0] == 2048
        np.testing.assert_allclose(sidecar["timestamps"], (np.arange(frames) + 0.5) * FEATURE_PERIOD)
        labels = (data / "groundTruth" / f"{video}.txt").read_text().split("\n")[:-1]
        assert labels == expected_labels(video, frames, duration=sidecar["duration"])


@pytest.mark.slow  # the module's extraction (the `built` fixture)
def test_card_records_settings_classes_sources_and_warnings(built):
    data, card = built
    assert read_dataset_card(data) == card
    assert card.settings == tiny_settings()
    by_name = {video.name: video for video in card.videos}
    assert by_name["clip3"].annotations == (str(data.parent / "clip3.eaf"),)
    assert by_name["clip0"].annotations == (str(data.parent / "labels.csv"),)
    assert card.class_stats["stir"].segments == 2 and card.class_stats["stir"].seconds == pytest.approx(2.0)
    counted = {name: 0 for name in card.classes}
    for video in by_name:
        for label in (data / "groundTruth" / f"{video}.txt").read_text().split():
            counted[label] += 1
    assert {name: stats.frames for name, stats in card.class_stats.items()} == counted
    total = sum(counted.values())
    assert card.coverage == pytest.approx(1 - counted["background"] / total)
    warnings = "\n".join(card.warnings)
    assert "'Reach'" in warnings and "merged into 'reach'" in warnings
    assert "overlapping segment pair(s) resolved, the later segment wins" in warnings
    assert "clip3.eaf (tier 'actions', annotation" in warnings and "past the end of video 'clip3'" in warnings


@pytest.mark.slow  # the module's extraction (the `built` fixture)
def test_folds_are_deterministic_disjoint_and_train_every_class(built):
    data, card = built
    tests = [tuple(MSTCNDataset(data, k, "test").videos[i].name for i in range(2)) for k in (1, 2)]
    assert sorted(tests[0] + tests[1]) == ["clip0", "clip1", "clip2", "clip3"]
    for fold in (1, 2):
        trained = {label for v in MSTCNDataset(data, fold, "train").videos for label in v.labels.tolist()}
        assert trained >= set(range(len(card.classes)))
    classes = {"a": {"x"}, "b": {"x", "y"}, "c": {"y"}, "d": {"z"}, "e": {"x", "z"}, "f": {"y"}}
    first = assign_folds(classes, 3)
    assert first == assign_folds(dict(reversed(classes.items())), 3)
    assert sorted(name for test in first for name in test) == sorted(classes)
    assert untrained_classes(classes, first) == []


@pytest.mark.parametrize(("videos", "folds"), [(5, 4), (9, 4), (7, 3), (4, 4), (10, 5)])
def test_fold_sizes_stay_within_one_video_whatever_the_classes(videos, folds):
    classes = {f"v{i}": {"only"} for i in range(videos)}  # one class everywhere pulls videos together
    sizes = sorted(len(test) for test in assign_folds(classes, folds))
    assert sum(sizes) == videos and sizes[-1] - sizes[0] <= 1 and sizes[0] >= 1
    classes = {f"v{i}": {f"c{i % 3}"} for i in range(videos)}
    sizes = sorted(len(test) for test in assign_folds(classes, folds))
    assert sum(sizes) == videos and sizes[-1] - sizes[0] <= 1


def test_a_class_of_one_video_is_warned_for_its_fold():
    classes = {"a": {"x", "y"}, "b": {"x"}, "c": {"x"}}
    folds = assign_folds(classes, 3)
    (warning,) = untrained_classes(classes, folds)
    assert "class 'y' is in test videos ['a'] but in no training video" in warning


@pytest.mark.slow  # the module's extraction (the `built` fixture)
def test_rebuild_reuses_features_and_keeps_spellings_apart_unless_merged(built, clips, tmp_path):
    data = copy_of(built, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in (data / "features").iterdir()}
    card = build_dataset(
        [clips],
        write_annotations(tmp_path),
        data,
        extractor=tiny_extractor(),
        folds=2,
        overlap="longer",
        tier="actions",
    )
    assert card.classes == ("background", "pour", "Reach", "reach", "stir")
    assert {p.name: p.stat().st_mtime_ns for p in (data / "features").iterdir()} == before
    assert not (tmp_path / ".DATA.building").exists()
    assert "pass --merge-case" in "\n".join(card.warnings)
    # 'Reach' is only in clip2 now: the fold testing on clip2 cannot train it.
    assert "class 'Reach' is in test videos ['clip2'] but in no training video" in "\n".join(card.warnings)


@pytest.mark.slow  # the module's extraction (the `built` fixture)
def test_failed_extraction_leaves_the_dataset_as_it_was(built, clips, tmp_path):
    data = copy_of(built, tmp_path)
    card_text = (data / CARD_FILE).read_text()
    broken = tmp_path / "videos"
    broken.mkdir()
    (broken / "clip4.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows = [*ROWS, ("clip4", 0.0, 1.0, "pour")]
    with pytest.raises(VideoError, match=r"1 video\(s\) gave no features \(.*clip4.mp4"):
        build_dataset(
            [clips, broken], write_annotations(tmp_path, rows), data, extractor=tiny_extractor(), folds=2,
            overlap="later", tier="actions",
        )  # fmt: skip
    assert (data / CARD_FILE).read_text() == card_text
    assert (tmp_path / ".DATA.building" / "features" / "clip0.npy").is_file()  # kept for the next try


BAD_CASES = {
    "unknown video": (
        "video,start,end,label\nclip0,0,1,a\nclip1,0,1,a\nclip9,0,1,a\n",
        "labels.csv:4: video 'clip9'",
    ),
    "overlap": (
        "video,start,end,label\nclip0,0,2,a\nclip0,1,3,b\nclip1,0,1,a\n",
        r"labels.csv:2 \('a', 0-2 s\) overlaps .*labels.csv:3 \('b', 1-3 s\); fix one, or pass --overlap",
    ),
    "negative": (
        "video,start,end,label\nclip0,2,1,a\nclip1,0,1,a\n",
        r"labels.csv:2: the segment ends \(1 s\) before",
    ),
    "empty": ("video,start,end,label\nclip0,1,1,a\nclip1,0,1,a\n", "labels.csv:2: the segment is empty"),
    "no annotation": (
        "video,start,end,label\nclip0,0,1,a\n",
        "video 'clip1' has no annotation in .*labels.csv",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_annotations_exit_3_with_one_line_each_and_write_nothing(case, clips, tmp_path, capsys):
    text, message = BAD_CASES[case]
    (tmp_path / "labels.csv").write_text(text)
    videos = [str(clips / "clip0.mp4"), str(clips / "clip1.mp4")]
    out = tmp_path / "DATA"
    code = main(
        [
            "dataset",
            "build",
            *videos,
            "--annotations",
            str(tmp_path / "labels.csv"),
            "--out",
            str(out),
            "--folds",
            "2",
        ]
    )
    assert code == 3
    error = capsys.readouterr().err
    assert error.startswith("actfusion: DatasetError: ") and "Traceback" not in error
    assert len(error.strip().splitlines()) == 1
    assert re.search(message, error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]  # no DATA, no working folder


def test_usage_errors_exit_2(clips, tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("video,start,end,label\nclip0,0,1,a\n")
    args = ["--annotations", str(tmp_path / "labels.csv")]
    assert main(["dataset", "build", str(clips / "clip0.mp4"), *args, "--out", str(tmp_path / "DATA")]) == 2
    assert "folds must be an integer from 2 to the number of videos (1), got 1" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    videos = [str(clips / "clip0.mp4"), str(clips / "clip1.mp4")]
    assert main(["dataset", "build", *videos, *args, "--out", str(tmp_path / "taken")]) == 2
    assert "is not a dataset built by actfusion" in capsys.readouterr().err
    assert main(["dataset", "build", *videos, *args, "--out", str(tmp_path / "D"), "--gt-fps", "0"]) == 2


def test_a_missing_video_is_refused_before_any_work(clips, tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("video,start,end,label\nclip0,0,1,a\n")
    args = [
        str(clips / "clip0.mp4"),
        str(tmp_path / "gone.mp4"),
        "--annotations",
        str(tmp_path / "labels.csv"),
    ]
    assert main(["dataset", "build", *args, "--out", str(tmp_path / "DATA")]) == 3
    assert "video file(s) not found: " in capsys.readouterr().err
    assert not (tmp_path / "DATA").exists()


def test_two_videos_with_one_stem_are_refused(clips, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(clips / "clip0.mp4", other / "clip0.mp4")
    with pytest.raises(DatasetError, match="share the name 'clip0'"):
        build_dataset(
            [clips / "clip0.mp4", other / "clip0.mp4"], [], tmp_path / "DATA", extractor=tiny_extractor()
        )


@pytest.mark.slow
def test_cli_builds_with_settings_from_a_file(built, clips, tmp_path, capsys):
    data = copy_of(built, tmp_path)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(tiny_settings().to_dict()))
    annotations = [str(path) for path in write_annotations(tmp_path)]
    code = main(
        [
            "dataset",
            "build",
            str(clips),
            "--annotations",
            *annotations,
            "--out",
            str(data),
            "--settings",
            str(settings),
        ]
        + ["--folds", "2", "--overlap", "later", "--merge-case", "--tier", "actions"]
    )
    assert code == 0
    report = capsys.readouterr().err
    assert f"dataset {data}: 4 videos, 4 classes, 2 folds" in report
    warnings = [line for line in report.splitlines() if line.startswith("actfusion: warning: ")]
    assert any("ends 1.312 s past the end of video 'clip3'" in line for line in warnings)
    assert any("merged into 'reach'" in line for line in warnings)
    assert read_dataset_card(data).classes == built[1].classes


@pytest.mark.slow  # the module's extraction (the `built` fixture)
def test_extractor_options_reach_build_extractor(built, clips, tmp_path, monkeypatch):
    calls = []

    def spy(settings, weights, **options):
        calls.append((settings, weights, options))
        return tiny_extractor()

    monkeypatch.setattr("actfusion_sdk.data.builder.build_extractor", spy)
    data = copy_of(built, tmp_path)
    build_dataset(
        [clips], write_annotations(tmp_path), data, settings=tiny_settings(), i3d_weights=None,
        device="cpu", precision="fp32", batch_size=5, overlap="later", tier="actions", folds=2,
    )  # fmt: skip
    ((settings, weights, options),) = calls
    assert settings == tiny_settings() and weights is None
    assert options == {
        "flow_weights": None, "device": "cpu", "precision": "fp32", "batch_size": 5, "flow_cache": None,
    }  # fmt: skip


def test_a_weights_error_leaves_no_working_folder(clips, tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("video,start,end,label\nclip0,0,1,a\nclip1,0,1,a\n")
    videos = [str(clips / "clip0.mp4"), str(clips / "clip1.mp4")]
    args = ["--annotations", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "DATA")]
    assert main(["dataset", "build", *videos, *args, "--settings", "kinetics"]) == 4  # kinetics needs weights
    assert "WeightsError" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]
