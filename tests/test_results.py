"""Typed results: segments from frame labels, every export parsed back, the timeline PNG."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from actfusion_sdk.errors import ConfigError, InputError
from actfusion_sdk.results import (
    SCHEMA,
    AnticipationResult,
    Result,
    SegmentationResult,
    load_result,
)
from actfusion_sdk.results.timeline import class_colors

CLASSES = ("background", "cut", "mix", "pour")
FPS = 2.0


@pytest.fixture
def frames() -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat([0, 2, 1, 2, 3], [5, 7, 3, 8, 6])
    rng = np.random.default_rng(7)
    probs = rng.random((len(CLASSES), len(labels))).astype(np.float32)
    return labels, probs / probs.sum(axis=0)


def assert_covers(segments, labels, fps, duration, first=0, last=None):
    """Contiguous, in order, consistent with the frame labels, from frame `first` to `last`."""
    last = len(labels) if last is None else last
    assert segments[0].start_frame == first and segments[-1].end_frame == last
    assert segments[-1].end == pytest.approx(duration if last == len(labels) else last / fps)
    for previous, current in zip(segments, segments[1:], strict=False):
        assert previous.end_frame == current.start_frame and previous.end == current.start
        assert previous.label_id != current.label_id
    for segment in segments:
        assert segment.start == pytest.approx(segment.start_frame / fps)
        assert set(labels[segment.start_frame : segment.end_frame].tolist()) == {segment.label_id}
        assert segment.label == CLASSES[segment.label_id]


def test_segments_follow_the_frame_labels(frames):
    labels, probs = frames
    result = SegmentationResult.from_frames(labels, CLASSES, FPS, frame_probs=probs, duration=14.3)
    assert [s.label for s in result.segments] == ["background", "mix", "cut", "mix", "pour"]
    assert_covers(result.segments, labels, FPS, 14.3)
    assert result.segments[0].start == 0.0
    for segment in result.segments:
        frames_of = range(segment.start_frame, segment.end_frame)
        expected = sum(float(probs[segment.label_id, i]) for i in frames_of) / len(frames_of)
        assert segment.score == pytest.approx(expected, rel=1e-6)
    assert not result.frame_labels.flags.writeable


def test_default_duration_is_frames_over_fps(frames):
    labels, _ = frames
    result = SegmentationResult.from_frames(labels, CLASSES, FPS)
    assert result.duration == len(labels) / FPS
    assert result.segments[-1].score is None


def test_anticipation_splits_at_the_cut(frames):
    labels, probs = frames
    cut = 9  # inside the second segment (frames 5..12)
    result = AnticipationResult.from_frames(
        labels, CLASSES, FPS, cut, frame_probs=probs, observation_ratio=0.3, duration=14.5
    )
    assert result.cut_time == cut / FPS and result.horizon == pytest.approx(14.5 - cut / FPS)
    assert_covers(result.observed_segments, labels, FPS, 14.5, last=cut)
    assert_covers(result.anticipated_segments, labels, FPS, 14.5, first=cut)
    assert result.observed_segments[-1].label == result.anticipated_segments[0].label == "mix"
    assert result.observed_segments[-1].end == result.anticipated_segments[0].start == result.cut_time
    assert result.segments == result.observed_segments + result.anticipated_segments


@pytest.mark.parametrize("cut", [0, 29, -1])
def test_cut_must_leave_both_parts(frames, cut):
    with pytest.raises(ConfigError, match="cut_frame"):
        AnticipationResult.from_frames(frames[0], CLASSES, FPS, cut)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frame_labels": [0, 4]}, "class ids"),
        ({"frame_labels": []}, "at least one"),
        ({"fps": 0.0}, "fps"),
        ({"frame_probs": np.ones((3, 29))}, "frame_probs"),
        ({"duration": 13.9}, "too short"),
    ],
)
def test_invalid_frames_are_rejected(frames, kwargs, message):
    arguments = {"frame_labels": frames[0], "classes": CLASSES, "fps": FPS, **kwargs}
    with pytest.raises(ConfigError, match=message):
        SegmentationResult.from_frames(**arguments)


def test_json_round_trip_both_kinds(frames, tmp_path):
    labels, probs = frames
    timings = {"features": 1.5, "model": 0.25}
    segmentation = SegmentationResult.from_frames(
        labels, CLASSES, FPS, frame_probs=probs, video="/data/a.mp4", model="demo", timings=timings
    )
    document = json.loads(segmentation.to_json())
    assert document["schema"] == SCHEMA == "actfusion-sdk/result/2"
    assert document["kind"] == "segmentation" and document["frame_probs"] is None
    assert document["num_frames"] == len(labels) and document["timings"] == timings
    loaded = SegmentationResult.from_json(segmentation.to_json())
    assert loaded.segments == segmentation.segments and loaded.classes == CLASSES
    assert loaded.video == "/data/a.mp4" and loaded.model == "demo" and loaded.timings == timings
    np.testing.assert_array_equal(loaded.frame_labels, labels)
    assert loaded.frame_probs is None

    anticipation = AnticipationResult.from_frames(
        labels, CLASSES, FPS, 9, frame_probs=probs, observation_ratio=0.3
    )
    path = anticipation.save(tmp_path / "out" / "a.json")
    loaded = AnticipationResult.from_json(path)
    assert loaded.observed_segments == anticipation.observed_segments
    assert loaded.anticipated_segments == anticipation.anticipated_segments
    assert (loaded.cut_frame, loaded.cut_time, loaded.horizon, loaded.observation_ratio) == (
        9,
        4.5,
        10.0,
        0.3,
    )
    with_probs = load_result(anticipation.to_json(include_probs=True))
    np.testing.assert_array_equal(with_probs.frame_probs, probs)


def test_loading_rejects_other_documents(frames, tmp_path):
    segmentation = SegmentationResult.from_frames(frames[0], CLASSES, FPS)
    with pytest.raises(InputError, match="anticipation"):
        AnticipationResult.from_json(segmentation.to_json())
    assert isinstance(Result.from_json(segmentation.to_json()), SegmentationResult)
    with pytest.raises(InputError, match="unknown result kind 'other'"):
        load_result(segmentation.to_json().replace('"segmentation"', '"other"'))
    with pytest.raises(InputError, match="schema"):
        load_result('{"schema": "other/1"}')
    with pytest.raises(InputError, match="not valid JSON"):
        load_result("{broken")
    with pytest.raises(InputError, match="cannot read"):
        load_result(tmp_path / "missing.json")


def test_csv_parses_back_to_the_segments(frames, tmp_path):
    labels, probs = frames
    anticipation = AnticipationResult.from_frames(labels, CLASSES, FPS, 9, frame_probs=probs)
    rows = list(csv.DictReader(io.StringIO(anticipation.save(tmp_path / "a.csv").read_text())))
    assert [row["part"] for row in rows] == ["observed"] * 2 + ["anticipated"] * 4
    for row, segment in zip(rows, anticipation.segments, strict=True):
        assert row["label"] == segment.label and int(row["label_id"]) == segment.label_id
        assert float(row["start"]) == segment.start and float(row["end"]) == segment.end
        assert (int(row["start_frame"]), int(row["end_frame"])) == (segment.start_frame, segment.end_frame)
        assert float(row["score"]) == pytest.approx(segment.score)
    segmentation = SegmentationResult.from_frames(labels, CLASSES, FPS)
    header = segmentation.to_csv().splitlines()[0]
    assert header == "video,label,label_id,start,end,start_frame,end_frame,score"


def test_mstcn_is_one_label_per_frame(frames, tmp_path):
    labels, _ = frames
    path = SegmentationResult.from_frames(labels, CLASSES, FPS).save(tmp_path / "a.txt")
    text = path.read_text()
    assert text.endswith("\n")
    assert text.splitlines() == [CLASSES[i] for i in labels]


def test_activitynet_lists_segments_per_video(frames, tmp_path):
    labels, probs = frames
    result = SegmentationResult.from_frames(labels, CLASSES, FPS, frame_probs=probs, video="/v/clip 1.mp4")
    path = result.save(tmp_path / "a.anet.json", fmt="activitynet")
    document = json.loads(path.read_text())
    assert document["version"] == "VERSION 1.3"
    entries = document["results"]["clip 1"]
    assert [(e["label"], e["segment"], e["score"]) for e in entries] == [
        (s.label, [s.start, s.end], s.score) for s in result.segments
    ]


def test_save_needs_a_known_format(frames, tmp_path):
    result = SegmentationResult.from_frames(frames[0], CLASSES, FPS)
    with pytest.raises(ConfigError, match="suffix"):
        result.save(tmp_path / "a.xml")
    with pytest.raises(ConfigError, match="unknown export format"):
        result.export("xml")


def test_table_lists_every_segment(frames):
    labels, probs = frames
    result = AnticipationResult.from_frames(
        labels, CLASSES, FPS, 9, frame_probs=probs, video="a.mp4", timings={"model": 0.5}
    )
    table = str(result)
    assert "a.mp4" in table and "cut at 4.50 s" in table and "model 0.50 s" in table
    for segment in result.segments:
        assert f"{segment.start:.2f}s" in table and segment.label in table


def test_importing_results_loads_no_matplotlib():
    code = "import sys, actfusion_sdk.results\nassert 'matplotlib' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def _colors_in(path) -> set[tuple[int, int, int]]:
    image = np.asarray(Image.open(path).convert("RGB"))
    return {tuple(pixel) for pixel in image.reshape(-1, 3).tolist()}


def _rgb(color) -> tuple[int, int, int]:
    return tuple(round(channel * 255) for channel in color[:3])


def test_plot_writes_a_png_of_the_requested_width(frames, tmp_path):
    labels, probs = frames
    result = SegmentationResult.from_frames(labels, CLASSES, FPS, frame_probs=probs)
    path = result.plot(tmp_path / "timeline.png", ground_truth=[CLASSES[i] for i in labels[::-1]], width=900)
    image = Image.open(path)
    assert image.format == "PNG" and image.size[0] == 900 and 100 < image.size[1] < 400
    colors = _colors_in(path)
    assert all(_rgb(color) in colors for color in class_colors(CLASSES))
    assert result.save(tmp_path / "again.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="not classes"):
        result.plot(tmp_path / "x.png", ground_truth=["jump"] * len(labels))


def test_plot_draws_anticipated_bars_in_their_colour_with_a_light_hatch(tmp_path):
    # "cut" occurs only before the cut, "pour" only after it: both in their own colour, only "pour" hatched.
    labels = np.repeat([0, 1, 2, 3], [4, 4, 4, 4])
    result = AnticipationResult.from_frames(labels, CLASSES, FPS, 8)
    image = np.asarray(Image.open(result.plot(tmp_path / "a.png")).convert("RGB")).astype(int)
    palette = [np.array(_rgb(color)) for color in class_colors(CLASSES)]
    row = np.argmax((image == palette[1]).all(axis=2).sum(axis=1))
    cut_bar = (image[row] == palette[1]).all(axis=1)
    pour_bar = np.flatnonzero(np.abs(image[row] - palette[3]).sum(axis=1) < 8)
    assert cut_bar.sum() > 100 and len(pour_bar) > 20
    span = image[row, pour_bar.min() : pour_bar.max() + 1]
    lighter = (span > palette[3] + 40).all(axis=1)  # hatch lines: the same hue, lighter
    assert lighter.sum() > 5
    solid_span = image[row, np.flatnonzero(cut_bar).min() : np.flatnonzero(cut_bar).max() + 1]
    assert (solid_span == palette[1]).all(axis=1).mean() > 0.95  # observed bars carry no hatch


def test_timeline_colours_follow_colour_words_and_background_is_grey():
    classes = ("background", "red_disc", "blue_square", "yellow_bar", "purple_ring", "pick")
    colors = class_colors(classes)
    assert np.allclose(colors[0][:3], colors[0][0])  # grey: equal channels
    red, blue, yellow, purple = (np.array(c[:3]) for c in colors[1:5])
    assert red.argmax() == 0 and blue.argmax() == 2 and purple[[0, 2]].min() > purple[1]
    assert yellow[:2].min() > 0.6 and yellow[2] < 0.3
    assert len({tuple(c) for c in colors}) == len(classes)


def test_plot_marks_the_end_of_the_video_past_it(tmp_path):
    labels = np.repeat([0, 1, 2, 3], [4, 4, 4, 4])
    past = AnticipationResult.from_frames(labels, CLASSES, FPS, 8, video_duration=5 / FPS)
    within = AnticipationResult.from_frames(labels, CLASSES, FPS, 8, video_duration=16 / FPS)
    assert past.video_end == pytest.approx(5 / FPS) and within.video_end is None
    assert AnticipationResult.from_json(past.to_json()) == past
    assert past.plot(tmp_path / "p.png").read_bytes() != within.plot(tmp_path / "w.png").read_bytes()


def test_two_loads_of_one_file_compare_equal(frames, tmp_path):
    labels, probs = frames
    result = SegmentationResult.from_frames(labels, CLASSES, FPS, frame_probs=probs)
    path = result.save(tmp_path / "r.json", "json")
    assert SegmentationResult.from_json(path) == SegmentationResult.from_json(path)
    other = SegmentationResult.from_frames(labels[::-1].copy(), CLASSES, FPS)
    assert SegmentationResult.from_json(path) != other
