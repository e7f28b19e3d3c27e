"""Exports back into annotation tools: ELAN .eaf, Label Studio predictions, CSV; and every format's round trip
(export, import as annotations, label the feature frames again) giving the same frame labels."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from pympi.Elan import Eaf

from actfusion_sdk.data.annotation_checks import check_annotations
from actfusion_sdk.data.annotations import read_annotations
from actfusion_sdk.data.builder import frame_labels
from actfusion_sdk.results import FORMATS, AnticipationResult, SegmentationResult
from actfusion_sdk.results.exporters import to_csv
from actfusion_sdk.results.labelstudio import labelstudio_tasks

CLASSES = ("background", "pour", "stir", "whisk")
FPS = 2.0
# 13 feature frames at 2 per second; the video is 6.3 s long (the last frame is cut short).
LABELS = np.array([0, 1, 1, 1, 2, 2, 0, 0, 3, 3, 3, 2, 2])
DURATION = 6.3
SUFFIX = {
    "json": ".json",
    "csv": ".csv",
    "mstcn": ".txt",
    "activitynet": ".json",
    "eaf": ".eaf",
    "labelstudio": ".json",
}


@pytest.fixture
def segmentation() -> SegmentationResult:
    probs = np.full((len(CLASSES), len(LABELS)), 0.25, np.float32)
    return SegmentationResult.from_frames(
        LABELS, CLASSES, FPS, frame_probs=probs, duration=DURATION, video="/clips/take7.mp4", model="mine"
    )


def reimported_labels(path, frame_rate=None, tier=None) -> list[str]:
    """The class name of each feature frame when `path` is read back as annotations of video take7."""
    annotations = read_annotations(path, frame_rate=frame_rate, tier=tier)
    checked = check_annotations(annotations, ["take7"])
    centres = (np.arange(len(LABELS)) + 0.5) / FPS  # feature frame i covers [i, i + 1) / FPS
    index = {name: i for i, name in enumerate(checked.classes)}
    return [checked.classes[k] for k in frame_labels(checked.by_video["take7"], centres, index, 0)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_gives_the_same_frame_labels(fmt, segmentation, tmp_path):
    path = tmp_path / f"take7{SUFFIX[fmt]}"
    path.write_text(segmentation.export(fmt))
    frame_rate = FPS if fmt == "mstcn" else None
    assert reimported_labels(path, frame_rate) == [CLASSES[k] for k in LABELS]


def test_anticipation_round_trip_through_both_eaf_tiers(tmp_path):
    result = AnticipationResult.from_frames(
        LABELS, CLASSES, FPS, cut_frame=5, duration=DURATION, video="take7.mp4"
    )
    path = tmp_path / "take7.eaf"
    path.write_text(result.export("eaf"))
    document = Eaf(str(path))
    assert set(document.get_tier_names()) == {"observed", "anticipated"}
    observed = reimported_labels(path, tier="observed")
    anticipated = reimported_labels(path, tier="anticipated")
    combined = observed[:5] + anticipated[5:]
    assert combined == [CLASSES[k] for k in LABELS]
    assert set(anticipated[:5]) == {"background"}  # the anticipated tier starts at the cut (2.5 s)


def test_eaf_opens_with_pympi_with_the_right_tier_times_and_media(segmentation, tmp_path):
    path = tmp_path / "take7.eaf"
    segmentation.save(path)  # the suffix picks the format
    document = Eaf(str(path))
    assert list(document.get_tier_names()) == ["prediction"]
    rows = sorted(document.get_annotation_data_for_tier("prediction"))
    # Non-background runs of LABELS, in ms: frames 1-3 pour, 4-5 stir, 8-10 whisk, 11-12 stir (to 6.3 s).
    assert rows == [(500, 2000, "pour"), (2000, 3000, "stir"), (4000, 5500, "whisk"), (5500, 6300, "stir")]
    assert document.media_descriptors[0]["MEDIA_URL"] == "file:///clips/take7.mp4"
    assert document.media_descriptors[0]["RELATIVE_MEDIA_URL"] == "./take7.mp4"
    assert document.properties == [("lastUsedAnnotationId", "4")]


def test_eaf_keeps_background_when_asked(segmentation):
    from actfusion_sdk.results.elan import to_eaf

    assert to_eaf(segmentation, exclude=()).count("<ANNOTATION_VALUE>background<") == 2
    assert segmentation.to_eaf(exclude=()).count("<ANNOTATION_VALUE>background<") == 2
    assert "background" not in to_eaf(segmentation)


def test_labelstudio_predictions_have_the_documented_shape(segmentation):
    tasks = json.loads(segmentation.export("labelstudio"))
    assert isinstance(tasks, list) and len(tasks) == 1
    task = tasks[0]
    assert set(task) == {"data", "predictions"}
    assert task["data"] == {"video": "/clips/take7.mp4", "fps": 24.0}
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "mine" and prediction["score"] == pytest.approx(0.25)
    for region in prediction["result"]:
        assert {"from_name", "to_name", "type", "value"} <= set(region)
        assert region["type"] == "timelinelabels" and region["to_name"] == "video"
        assert set(region["value"]) == {"ranges", "timelinelabels"}
        (frames,) = region["value"]["ranges"]
        assert all(isinstance(frames[key], int) for key in ("start", "end"))
    ranges = [
        (r["value"]["ranges"][0]["start"], r["value"]["ranges"][0]["end"], r["value"]["timelinelabels"][0])
        for r in prediction["result"]
    ]
    # 1-based frames at 24 fps, both ends included: 0.5-2.0 s is frames 13..48.
    assert ranges == [(13, 48, "pour"), (49, 72, "stir"), (97, 132, "whisk"), (133, 151, "stir")]


def test_labelstudio_frame_rate_and_tag_names_are_options(segmentation):
    (task,) = labelstudio_tasks([segmentation], frame_rate=10.0, from_name="actions", to_name="clip")
    region = task["predictions"][0]["result"][0]
    assert (region["from_name"], region["to_name"]) == ("actions", "clip")
    assert region["value"]["ranges"] == [{"start": 6, "end": 20}] and task["data"]["fps"] == 10.0
    assert json.loads(segmentation.to_labelstudio(frame_rate=10.0, from_name="actions", to_name="clip")) == [
        task
    ]


def test_csv_has_a_video_column_and_can_leave_out_background(segmentation):
    rows = list(csv.DictReader(io.StringIO(segmentation.to_csv())))
    assert {row["video"] for row in rows} == {"take7"} and len(rows) == 6  # 6 runs in LABELS
    kept = list(csv.DictReader(io.StringIO(to_csv(segmentation, exclude=("background",)))))
    assert [row["label"] for row in kept] == ["pour", "stir", "whisk", "stir"]


def test_segment_cli_formats_include_eaf_and_labelstudio():
    from actfusion_sdk.cli import build_parser

    args = build_parser().parse_args(["segment", "a.mp4", "--format", "eaf"])
    assert args.format == "eaf"
    args = build_parser().parse_args(["segment", "a.mp4", "--format", "labelstudio"])
    assert args.format == "labelstudio"


def test_labelstudio_predictions_validate_with_label_studio_sdk(segmentation):
    """Label Studio's own SDK (label-studio-sdk, not a dependency here: skipped when absent) accepts them."""
    interface = pytest.importorskip("label_studio_sdk.label_interface").LabelInterface(
        '<View><Video name="video" value="$video" frameRate="$fps"/>'
        '<TimelineLabels name="label" toName="video">'
        + "".join(f'<Label value="{name}"/>' for name in CLASSES)
        + "</TimelineLabels></View>"
    )
    (task,) = json.loads(segmentation.export("labelstudio"))
    assert interface.validate_prediction(task["predictions"][0], return_errors=True) == []
    task["predictions"][0]["result"][0]["value"]["timelinelabels"] = ["juggle"]
    assert interface.validate_prediction(task["predictions"][0], return_errors=True) != []
