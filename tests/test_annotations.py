"""Annotation readers on real files written here (CSV/TSV, ELAN .eaf written with pympi-ling, Label Studio
JSON exports, ActivityNet JSON, the SDK's result JSON, MS-TCN ground truth) and the checks a dataset needs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pympi.Elan import Eaf

from actfusion_sdk.data.annotation_checks import check_annotations, clip_to_durations
from actfusion_sdk.data.annotations import Annotation, read_annotations, video_name
from actfusion_sdk.errors import DatasetError
from actfusion_sdk.results import SegmentationResult


def spans(annotations: list[Annotation]) -> list[tuple[str, float, float, str]]:
    return [(item.video, item.start, item.end, item.label) for item in annotations]


# ---- CSV / TSV -------------------------------------------------------------------------------------


def test_csv_with_header_reads_seconds_and_names_its_lines(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("video,start,end,label\nclip01.mp4,0.5,2.25,reach\nclip01,2.25,00:03.5,pour\n")
    found = read_annotations(path)
    assert spans(found) == [("clip01", 0.5, 2.25, "reach"), ("clip01", 2.25, 3.5, "pour")]
    assert [item.where for item in found] == [f"{path}:2", f"{path}:3"]


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("File;Begin;Stop;Action", ";"),
        ("filename,start_time,end_time,class", ","),
        ("label,name,from,to", ","),  # column order follows the header
    ],
)
def test_csv_accepts_common_column_spellings(tmp_path, header, delimiter):
    names = header.lower().split(delimiter)
    values = {"file": "v", "filename": "v", "name": "v", "begin": "1", "start_time": "1", "from": "1"}
    values |= {"stop": "2", "end_time": "2", "to": "2", "action": "cut", "class": "cut", "label": "cut"}
    row = delimiter.join(values[name] for name in names)
    path = tmp_path / "a.csv"
    path.write_text(f"{header}\n{row}\n")
    assert spans(read_annotations(path)) == [("v", 1.0, 2.0, "cut")]


def test_tsv_and_headerless_rows(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("videos/v1.mp4\t1:00\t1:02.5\tpour milk\n")
    assert spans(read_annotations(path)) == [("v1", 60.0, 62.5, "pour milk")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("video,start,end,label\nv,1,abc,cut\n", "a.csv:2: time 'abc' is not a number"),
        ("video,start,label\nv,1,cut\n", "a.csv:1: the header"),
        ("video,start,end,label\nv,1\n", "a.csv:2: expected 4 columns"),
        ("video,start,end,label\nv,1,2,\n", "a.csv:2: the video and the label must not be empty"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "a.csv"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_annotations(path)


def test_video_names_are_stems_of_paths_and_urls():
    assert video_name("/data/upload/3/clip 7.mp4?d=x") == "clip 7"
    assert video_name("C:\\videos\\take1.MOV") == "take1"
    assert video_name("take1") == "take1"
    assert video_name("take.v2") == "take.v2" and video_name("take.v2.mkv") == "take.v2"


# ---- ELAN ------------------------------------------------------------------------------------------


def write_eaf(path: Path, tiers: dict[str, list[tuple[int, int, str]]], media: str | None = None) -> Path:
    document = Eaf()
    document.remove_tier("default")
    if media:
        document.add_linked_file(media, mimetype="video/mp4")
    for tier, rows in tiers.items():
        document.add_tier(tier)
        for start, end, value in rows:
            document.add_annotation(tier, start, end, value)
    document.to_file(str(path))
    return path


def test_eaf_tier_times_in_ms_and_linked_video(tmp_path):
    path = write_eaf(
        tmp_path / "session.eaf",
        {"actions": [(500, 1750, "reach"), (1750, 4000, "pour")], "gaze": [(0, 100, "left")]},
        media="file:///videos/take3.mp4",
    )
    found = read_annotations(path, tier="actions")
    assert spans(found) == [("take3", 0.5, 1.75, "reach"), ("take3", 1.75, 4.0, "pour")]
    assert "tier 'actions', annotation a" in found[0].where
    with pytest.raises(DatasetError, match=r"has tiers \['actions', 'gaze'\]; choose one with --tier"):
        read_annotations(path)
    with pytest.raises(DatasetError, match="has no tier 'hands'"):
        read_annotations(path, tier="hands")


def test_eaf_single_tier_needs_no_choice_and_names_the_video_by_stem(tmp_path):
    path = write_eaf(tmp_path / "take9.eaf", {"actions": [(0, 1000, "cut")]})
    assert spans(read_annotations(path)) == [("take9", 0.0, 1.0, "cut")]


def test_broken_eaf_is_a_dataset_error(tmp_path):
    path = tmp_path / "bad.eaf"
    path.write_text("<ANNOTATION_DOCUMENT><TIME_ORDER>")
    with pytest.raises(DatasetError, match="not a readable ELAN file"):
        read_annotations(path)


# ---- Label Studio ----------------------------------------------------------------------------------


def label_studio_task(video: str, regions: list[tuple[int, int, str]], data: dict | None = None) -> dict:
    return {
        "id": 7,
        "data": {"video": video, **(data or {})},
        "annotations": [
            {
                "id": 1,
                "result": [
                    {
                        "id": f"r{index}",
                        "from_name": "label",
                        "to_name": "video",
                        "type": "timelinelabels",
                        "value": {"ranges": [{"start": start, "end": end}], "timelinelabels": [label]},
                    }
                    for index, (start, end, label) in enumerate(regions)
                ],
            }
        ],
    }


def test_label_studio_frames_are_one_based_inclusive_at_the_task_rate(tmp_path):
    path = tmp_path / "export.json"
    task = label_studio_task(
        "/data/upload/1/abc-take2.mp4", [(1, 25, "reach"), (26, 60, "pour")], {"fps": 25}
    )
    path.write_text(json.dumps([task]))
    found = read_annotations(path)
    assert spans(found) == [("abc-take2", 0.0, 1.0, "reach"), ("abc-take2", 1.0, 2.4, "pour")]
    assert found[1].where.endswith("(task 7, annotations[0].result[1])")


def test_label_studio_rate_from_option_else_the_video_tag_default(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([label_studio_task("take2.mp4", [(13, 24, "cut")])]))
    assert spans(read_annotations(path)) == [("take2", 0.5, 1.0, "cut")]  # 24 fps
    assert spans(read_annotations(path, frame_rate=12.0)) == [("take2", 1.0, 2.0, "cut")]


def test_label_studio_json_min_export(tmp_path):
    path = tmp_path / "export-min.json"
    item = {
        "video": "/data/upload/2/take8.mp4",
        "id": 3,
        "fps": 10,
        "label": [
            {"ranges": [{"start": 1, "end": 10}], "timelinelabels": ["reach"]},
            {"ranges": [{"start": 11, "end": 15}], "timelinelabels": ["pour"]},
        ],
        "annotator": 1,
    }
    path.write_text(json.dumps([item]))
    found = read_annotations(path)
    assert spans(found) == [("take8", 0.0, 1.0, "reach"), ("take8", 1.0, 1.5, "pour")]
    assert found[1].where.endswith("(task 3, label[1])")


def test_label_studio_without_timeline_regions_is_an_error(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps([{"data": {"video": "a.mp4"}, "annotations": [{"result": []}]}]))
    with pytest.raises(DatasetError, match="holds no timelinelabels regions"):
        read_annotations(path)


# ---- ActivityNet, result JSON, MS-TCN --------------------------------------------------------------


def test_activitynet_database_and_results(tmp_path):
    database = tmp_path / "gt.json"
    database.write_text(
        json.dumps(
            {
                "version": "1.3",
                "database": {
                    "v_a": {"duration": 9.0, "annotations": [{"segment": [1.5, 4.0], "label": "jump"}]},
                    "v_b": {"annotations": [{"segment": [0, 2], "label": "run"}]},
                },
            }
        )
    )
    assert spans(read_annotations(database)) == [("v_a", 1.5, 4.0, "jump"), ("v_b", 0.0, 2.0, "run")]
    results = tmp_path / "det.json"
    results.write_text(json.dumps({"results": {"v_a": [{"label": "jump", "score": 0.9, "segment": [1, 2]}]}}))
    assert spans(read_annotations(results)) == [("v_a", 1.0, 2.0, "jump")]
    results.write_text(json.dumps({"results": {"v_a": [{"label": "jump", "segment": [1]}]}}))
    with pytest.raises(DatasetError, match=r"results/v_a\[0\]\): expected"):
        read_annotations(results)


def test_result_json_comes_back_as_its_segments(tmp_path):
    result = SegmentationResult.from_frames([0, 1, 1, 2], ("bg", "a", "b"), 2.0, video="/x/take5.mp4")
    path = result.save(tmp_path / "take5.segmentation.json")
    assert spans(read_annotations(path)) == [
        ("take5", 0.0, 0.5, "bg"),
        ("take5", 0.5, 1.5, "a"),
        ("take5", 1.5, 2.0, "b"),
    ]


def test_mstcn_ground_truth_runs_at_the_stated_rate(tmp_path):
    path = tmp_path / "take4.txt"
    path.write_text("background\ncut\ncut\ncut\nbackground\n")
    assert spans(read_annotations(path, frame_rate=2.0)) == [
        ("take4", 0.0, 0.5, "background"),
        ("take4", 0.5, 2.0, "cut"),
        ("take4", 2.0, 2.5, "background"),
    ]
    with pytest.raises(DatasetError, match="needs its frame rate: pass --gt-fps"):
        read_annotations(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_annotations(tmp_path / "none.csv")
    (tmp_path / "a.xml").write_text("<a/>")
    with pytest.raises(DatasetError, match="cannot tell the annotation format"):
        read_annotations(tmp_path / "a.xml")


# ---- checks ----------------------------------------------------------------------------------------


def annotation(video, start, end, label, line=1):
    return Annotation(video, start, end, label, Path("a.csv"), line)


def test_checks_order_classes_background_first_then_sorted():
    checked = check_annotations(
        [annotation("v", 0, 1, "stir"), annotation("v", 1, 2, "Pour", 2), annotation("v", 2, 3, "add", 3)],
        ["v"],
    )
    assert checked.classes == ("background", "add", "Pour", "stir") and checked.warnings == ()


def test_overlap_is_an_error_naming_both_rows_unless_resolved():
    rows = [annotation("v", 0, 2, "a", 2), annotation("v", 1, 3, "b", 3), annotation("v", 1.5, 1.8, "c", 4)]
    with pytest.raises(DatasetError, match=r"a.csv:2 \('a', 0-2 s\) overlaps a.csv:3 \('b', 1-3 s\)"):
        check_annotations(rows, ["v"])
    later = check_annotations(rows, ["v"], overlap="later")
    assert [item.label for item in later.by_video["v"]] == ["a", "b", "c"]  # painted in turn: c wins 1.5-1.8
    longer = check_annotations(rows, ["v"], overlap="longer")
    assert [item.label for item in longer.by_video["v"]] == ["c", "a", "b"]
    assert "overlapping segment pair(s) resolved" in later.warnings[0]


def test_same_label_overlaps_are_not_conflicts():
    checked = check_annotations([annotation("v", 0, 2, "a"), annotation("v", 1, 3, "a", 2)], ["v"])
    assert checked.warnings == ()


def test_spellings_warned_and_merged_only_when_asked(caplog):
    rows = [
        annotation("v", 0, 1, "Red_Disc_Bounce", 2),
        annotation("v", 1, 2, "red disc  bounce", 3),
        annotation("v", 2, 3, "red disc  bounce", 4),
        annotation("v", 3, 4, "Background", 5),
    ]
    with caplog.at_level(logging.WARNING):
        kept = check_annotations(rows, ["v"])
    assert kept.classes == ("background", "Background", "red disc  bounce", "Red_Disc_Bounce")
    assert "'Red_Disc_Bounce' (a.csv:2), 'red disc  bounce' (a.csv:3) differ only in case" in kept.warnings[0]
    assert "'Background' (a.csv:5) and the background class 'background' differ only" in kept.warnings[1]
    assert "--merge-case" in caplog.text
    merged = check_annotations(rows, ["v"], merge_case=True)
    assert merged.classes == (
        "background",
        "red disc  bounce",
    )  # the most frequent spelling; background's own
    assert [item.label for item in merged.by_video["v"]] == ["red disc  bounce"] * 3 + ["background"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (annotation("w", 0, 1, "a", 5), "a.csv:5: video 'w' is not among the input videos"),
        (annotation("v", 2, 1, "a", 5), r"a.csv:5: the segment ends \(1 s\) before it starts \(2 s\)"),
        (annotation("v", 1, 1, "a", 5), r"a.csv:5: the segment is empty"),
        (annotation("v", -1, 1, "a", 5), r"a.csv:5: the segment starts at -1 s"),
    ],
)
def test_bad_rows_are_errors_with_file_and_line(row, message):
    with pytest.raises(DatasetError, match=message):
        check_annotations([annotation("v", 0, 1, "ok"), row], ["v"])


def test_a_video_without_annotation_is_an_error():
    with pytest.raises(DatasetError, match="video 'u' has no annotation in a.csv"):
        check_annotations([annotation("v", 0, 1, "ok")], ["v", "u"])


def test_clipping_at_the_end_warns_with_the_amount():
    checked = check_annotations([annotation("v", 0, 1, "a"), annotation("v", 1, 6.5, "b", 2)], ["v"])
    clipped = clip_to_durations(checked, {"v": 4.0}, {"v": 0.05})
    assert [item.end for item in clipped.by_video["v"]] == [1, 4.0]
    assert "a.csv:2: the segment ends 2.500 s past the end of video 'v'" in clipped.warnings[-1]
    quiet = clip_to_durations(checked, {"v": 6.48}, {"v": 0.05})
    assert quiet.warnings == () and quiet.by_video["v"][-1].end == 6.48
