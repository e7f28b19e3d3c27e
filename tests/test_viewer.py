"""The viewer pages without a browser: the segment-element contract, colours, self-containment, the index,
the live replay, the `view` command and `--html`, and the per-frame confidence in the result JSON."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from matplotlib.colors import to_hex

from actfusion_sdk.cli import main
from actfusion_sdk.errors import ConfigError, InputError
from actfusion_sdk.live import LiveUpdate
from actfusion_sdk.live.replay import read_updates, what_happened, write_replay_page
from actfusion_sdk.results import AnticipationResult, Segment, SegmentationResult, load_result
from actfusion_sdk.results.timeline import class_colors

CLASSES = ("background", "red_disc_bounce", "green_square_slide", "pour")
FPS = 2.0
RUNS = [(0, 5), (1, 8), (2, 6), (3, 7), (1, 4), (0, 3)]  # (class id, frames)


class Elements(HTMLParser):
    """Every start tag's attributes, and the text of the <style> element."""

    def __init__(self, document: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.style = ""
        self._in_style = False
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data

    def with_class(self, name: str) -> list[dict[str, str]]:
        return [attrs for _, attrs in self.tags if name in attrs.get("class", "").split()]

    def lane(self, source: str) -> list[dict[str, str]]:
        """The segment elements of the lane `source`, in document order."""
        found, inside = [], False
        for _, attrs in self.tags:
            if "lane" in attrs.get("class", "").split():
                inside = attrs.get("data-source") == source
            elif inside and "seg" in attrs.get("class", "").split():
                found.append(attrs)
        return found

    def colour_of(self, attrs: dict[str, str]) -> str:
        """The background colour the page's style gives a segment (its colour class)."""
        rules = dict(re.findall(r"\.(k\d+)\{background-color:(#[0-9a-f]{6})\}", self.style))
        (colour,) = [rules[name] for name in attrs["class"].split() if name in rules]
        return colour


def frame_labels() -> np.ndarray:
    return np.repeat([label for label, _ in RUNS], [count for _, count in RUNS])


def probabilities(num_frames: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = rng.random((len(CLASSES), num_frames)).astype(np.float32)
    return probs / probs.sum(axis=0)


def expected_spans(runs: list[tuple[int, int]], first_frame: int = 0) -> list[tuple[str, float, float]]:
    """(label, start, end) of runs of frames at FPS, counted by hand."""
    spans, frame = [], first_frame
    for label, count in runs:
        spans.append((CLASSES[label], frame / FPS, (frame + count) / FPS))
        frame += count
    return spans


def spans_of(elements: list[dict[str, str]]) -> list[tuple[str, float, float]]:
    return [(e["data-label"], float(e["data-start"]), float(e["data-end"])) for e in elements]


@pytest.fixture
def segmentation() -> SegmentationResult:
    labels = frame_labels()
    return SegmentationResult.from_frames(
        labels, CLASSES, FPS, frame_probs=probabilities(len(labels)), video="clip.webm", model="demo"
    )


def test_segmentation_page_contract_colours_and_legend(segmentation, tmp_path):
    truth_runs = [(0, 7), (1, 8), (2, 6), (3, 7), (1, 5)]  # 33 frames, one more than the prediction
    truth = [CLASSES[label] for label, count in truth_runs for _ in range(count)]
    page = segmentation.to_html(tmp_path / "page.html", truth=truth)
    elements = Elements(page.read_text())

    assert spans_of(elements.lane("prediction")) == expected_spans(RUNS)
    assert spans_of(elements.lane("ground truth")) == expected_spans(truth_runs)
    assert [e.get("data-part") for e in elements.lane("prediction")] == [None] * len(RUNS)
    scores = [float(e["data-score"]) for e in elements.lane("prediction")]
    np.testing.assert_allclose(scores, [s.score for s in segmentation.segments], rtol=1e-3)
    # The colours of the PNG timeline, per class.
    for attrs in elements.lane("prediction") + elements.lane("ground truth"):
        label_id = CLASSES.index(attrs["data-label"])
        assert elements.colour_of(attrs) == to_hex(class_colors(CLASSES)[label_id])
    assert elements.colour_of(elements.lane("prediction")[1]) == to_hex("tab:red")
    # The legend: each class with its total predicted time, counted from the runs.
    totals = {}
    for label, count in RUNS:
        totals[CLASSES[label]] = totals.get(CLASSES[label], 0) + count / FPS
    legend = {e["data-label"]: float(e["data-total"]) for e in elements.with_class("legend-entry")}
    assert legend == pytest.approx(totals)
    # The timeline's end is the longer of prediction and truth.
    (timeline,) = [attrs for _, attrs in elements.tags if attrs.get("id") == "timeline"]
    assert float(timeline["data-end"]) == 33 / FPS
    assert len(elements.with_class("confidence")) == 1


def test_page_is_self_contained_and_refers_to_the_video_relatively(segmentation, tmp_path):
    video = tmp_path / "videos" / "clip one.webm"
    video.parent.mkdir()
    video.write_bytes(b"not really a video")
    page = segmentation.to_html(tmp_path / "pages" / "clip.html", video=video)
    text = page.read_text()
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and not re.search(r"<script[^>]*\bsrc=", text)
    (source,) = [attrs["src"] for tag, attrs in Elements(text).tags if tag == "video"]
    assert (page.parent / unquote(source)).resolve() == video.resolve()

    embedded = segmentation.to_html(tmp_path / "embedded.html", video=video, embed_video=True)
    (source,) = [attrs["src"] for tag, attrs in Elements(embedded.read_text()).tags if tag == "video"]
    prefix = "data:video/webm;base64,"
    assert source.startswith(prefix) and base64.b64decode(source[len(prefix) :]) == video.read_bytes()

    bare = SegmentationResult.from_frames(frame_labels(), CLASSES, FPS)
    assert "<video" not in bare.to_html(tmp_path / "bare.html").read_text()
    streamed = SegmentationResult.from_frames(frame_labels(), CLASSES, FPS, video="rtsp://camera/stream")
    assert "<video" not in streamed.to_html(tmp_path / "stream.html").read_text()  # nothing fetched


def test_anticipation_page_parts_cut_and_end_of_video(tmp_path):
    labels = frame_labels()
    result = AnticipationResult.from_frames(
        labels, CLASSES, FPS, 12, frame_probs=probabilities(len(labels)), video_duration=15.0
    )
    elements = Elements(result.to_html(tmp_path / "a.html").read_text())
    segments = elements.lane("prediction")
    # Frames 0-11 observed: runs (0, 5), (1, 7); then anticipated (1, 1), (2, 6), (3, 7), (1, 4), (0, 3).
    observed = expected_spans([(0, 5), (1, 7)])
    anticipated = expected_spans([(1, 1), (2, 6), (3, 7), (1, 4), (0, 3)], first_frame=12)
    assert spans_of(segments) == observed + anticipated
    assert [e["data-part"] for e in segments] == ["observed"] * 2 + ["anticipated"] * 5
    assert all("anticipated" in e["class"].split() for e in segments[2:])
    (cut,) = elements.with_class("cut")
    assert float(cut["data-time"]) == 6.0
    (end,) = elements.with_class("video-end")
    assert float(end["data-time"]) == 15.0


def test_truth_from_a_result_and_from_spans(segmentation, tmp_path):
    other = SegmentationResult.from_frames(np.repeat([0, 3], [10, 23]), CLASSES, FPS)
    elements = Elements(segmentation.to_html(tmp_path / "a.html", truth=other).read_text())
    assert spans_of(elements.lane("ground truth")) == expected_spans([(0, 10), (3, 23)])
    spans = [Segment("pour", 3, 1.0, 4.5, 2, 9)]
    elements = Elements(segmentation.to_html(tmp_path / "b.html", truth=spans).read_text())
    assert spans_of(elements.lane("ground truth")) == [("pour", 1.0, 4.5)]
    with pytest.raises(ConfigError, match="'jump'"):
        segmentation.to_html(tmp_path / "c.html", truth=["jump"] * 33)


def test_frame_confidence_in_json_and_old_schema_still_loads(segmentation):
    probs = probabilities(segmentation.num_frames)
    np.testing.assert_array_equal(segmentation.frame_confidence, probs.max(axis=0))
    document = json.loads(segmentation.to_json())
    assert document["schema"] == "actfusion-sdk/result/2" and document["frame_probs"] is None
    loaded = load_result(segmentation.to_json())  # without its probabilities, the confidence stays
    np.testing.assert_array_equal(loaded.frame_confidence, probs.max(axis=0))

    old = {**document, "schema": "actfusion-sdk/result/1"}
    del old["frame_confidence"]
    loaded = load_result(json.dumps(old))
    assert loaded.frame_confidence is None and loaded.segments == segmentation.segments
    with pytest.raises(InputError, match="frame_confidence"):
        load_result(json.dumps({**document, "frame_confidence": [0.5]}))


def test_large_result_page_size_and_time(tmp_path):
    """A 2-hour result with 5,000 segments: the page is written quickly and stays small."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 5, size=5000)
    labels = np.repeat(np.arange(5000) % len(CLASSES), lengths)
    fps = len(labels) / 7200.0
    result = SegmentationResult.from_frames(labels, CLASSES, fps, frame_probs=probabilities(len(labels)))
    started = time.perf_counter()
    page = result.to_html(tmp_path / "big.html")
    seconds = time.perf_counter() - started
    elements = Elements(page.read_text())
    assert len(elements.lane("prediction")) == 5000
    assert page.stat().st_size < 3_000_000, page.stat().st_size
    assert seconds < 5.0


def write_results_folder(folder: Path) -> list[SegmentationResult]:
    results = []
    for seed, name in enumerate(("alpha", "beta")):
        labels = np.repeat([0, 1, 3], [4 + seed, 6, 5])
        result = SegmentationResult.from_frames(labels, CLASSES, FPS, video=f"{name}.mp4")
        result.save(folder / f"{name}.segmentation.json")
        results.append(result)
    (folder / "failures.json").write_text(json.dumps([{"video": "broken.mp4", "error": "VideoError: bad"}]))
    (folder / "alpha.segmentation.record.json").write_text("{}")  # records are not results
    return results


def test_view_folder_writes_pages_and_an_index(tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    results = write_results_folder(folder)
    assert main(["view", str(folder)]) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index == folder / "index.html"
    elements = Elements(index.read_text())
    links = [attrs["href"] for tag, attrs in elements.tags if tag == "a"]
    assert links == ["alpha.segmentation.html", "beta.segmentation.html"]
    for link, result in zip(links, results, strict=True):
        page = Elements((folder / link).read_text())
        assert spans_of(page.lane("prediction")) == [(s.label, s.start, s.end) for s in result.segments]
        assert spans_of(elements.lane(result.video_id)) == spans_of(page.lane("prediction"))
    (failure,) = [attrs for tag, attrs in elements.tags if tag == "li"]
    assert failure["data-video"] == "broken.mp4" and "VideoError: bad" in index.read_text()


def test_view_command_single_result_truth_and_usage_errors(segmentation, tmp_path, capsys):
    source = tmp_path / "clip.segmentation.json"
    segmentation.save(source)
    truth = tmp_path / "clip.txt"
    truth.write_text("".join(f"{CLASSES[label]}\n" for label, count in RUNS[:3] for _ in range(count)))
    assert main(["view", str(source), "--truth", str(truth)]) == 0
    page = Path(capsys.readouterr().out.strip())
    assert page == tmp_path / "clip.segmentation.html"
    assert spans_of(Elements(page.read_text()).lane("ground truth")) == expected_spans(RUNS[:3])

    assert main(["view", str(source), str(source)]) == 2  # several results need --out
    assert main(["view", str(source), str(source), "--truth", str(truth), "--out", str(tmp_path)]) == 2
    assert main(["view", str(tmp_path / "missing.json")]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--out DIR" in err and "missing.json" in err


def test_view_truth_from_an_annotation_table_of_several_videos(segmentation, tmp_path, capsys):
    """--truth reads the annotation formats of `dataset build`; a table of several videos gives this one's."""
    source = tmp_path / "clip.segmentation.json"
    segmentation.save(source)  # its video is clip.webm: video id "clip"
    table = tmp_path / "annotations.csv"
    table.write_text(
        "video,start,end,label\nother.mp4,0,5,pour\nclip.mp4,0.5,4,pour\nclip.mp4,4,9.5,background\n"
    )
    assert main(["view", str(source), "--truth", str(table), "--out", str(tmp_path / "page.html")]) == 0
    page = Elements((tmp_path / "page.html").read_text())
    assert spans_of(page.lane("ground truth")) == [("pour", 0.5, 4.0), ("background", 4.0, 9.5)]
    capsys.readouterr()
    table.write_text("video,start,end,label\nother.mp4,0,5,pour\nthird.mp4,0,5,pour\n")
    assert main(["view", str(source), "--truth", str(table)]) == 3
    assert "no annotations of video 'clip'" in capsys.readouterr().err


def live_update(index: int, time_s: float, final: bool = False) -> LiveUpdate:
    observed_frames = int(time_s * FPS)
    observed = (Segment("background", 0, 0.0, time_s, 0, observed_frames, 0.9),)
    anticipated = (Segment("pour", 3, time_s, time_s + 4.0, observed_frames, observed_frames + 8, 0.5),)
    return LiveUpdate(
        index=index,
        time=time_s,
        observed_frames=observed_frames,
        context_start=0.0,
        horizon=4.0,
        fps=FPS,
        latency=0.1,
        lag=0.0,
        skipped=0,
        final=final,
        end="end" if final else None,
        observed_segments=observed,
        anticipated_segments=anticipated,
    )


def test_live_replay_page(tmp_path, capsys):
    jsonl = tmp_path / "live.jsonl"
    updates = [live_update(0, 2.0), live_update(1, 4.0), live_update(2, 6.0, final=True)]
    jsonl.write_text("".join(update.to_json() + "\n" for update in updates))
    assert main(["view", str(jsonl)]) == 0
    page = Path(capsys.readouterr().out.strip())
    elements = Elements(page.read_text())
    assert spans_of(elements.lane("what happened")) == [("background", 0.0, 6.0)]
    legend = {e["data-label"]: e.get("data-total") for e in elements.with_class("legend-entry")}
    assert legend == {"background": "6.0", "anticipated": None}
    rows = [attrs for attrs in elements.with_class("update") if "lane" in attrs["class"].split()]
    assert [float(row["data-time"]) for row in rows] == [2.0, 4.0, 6.0]
    for update in updates:
        segments = elements.lane(f"#{update.index} at {update.time:.1f} s")
        assert spans_of(segments) == [
            ("background", 0.0, update.time),
            ("pour", update.time, update.time + 4),
        ]
        assert [s["data-part"] for s in segments] == ["observed", "anticipated"]

    jsonl.write_text(updates[0].to_json() + "\n{not json\n")
    with pytest.raises(InputError, match=r"live.jsonl:2"):
        read_updates(jsonl)
    assert write_replay_page(updates, tmp_path / "r.html").is_file()


def test_what_happened_in_a_live_run_with_context():
    """With --context each update observed only its last seconds: earlier times come from earlier updates."""
    background, pour = ("background", 0), ("pour", 3)

    def update(index, time_s, context_start, spans):
        segments = tuple(
            Segment(label, i, a, b, int(a * FPS), int(b * FPS), 0.5) for (label, i), a, b in spans
        )
        return replace(live_update(index, time_s), context_start=context_start, observed_segments=segments)

    updates = [
        update(0, 4.0, 0.0, [(background, 0.0, 4.0)]),
        update(1, 8.0, 2.0, [(background, 2.0, 6.0), (pour, 6.0, 8.0)]),
        update(2, 10.0, 6.0, [(pour, 6.0, 10.0)]),
    ]
    happened = [(s.label, s.start, s.end, s.start_frame, s.end_frame) for s in what_happened(updates)]
    assert happened == [("background", 0.0, 6.0, 0, 12), ("pour", 6.0, 10.0, 12, 20)]
    assert what_happened(updates[:1]) == list(updates[0].observed_segments)


def test_html_output_of_segment_and_anticipate_is_written_with_its_record(segmentation, tmp_path):
    """`--html` (segment/anticipate): the page is one of the result's files, listed in its record, and the
    video is referred to from the output folder."""
    from actfusion_sdk.cli import build_parser
    from actfusion_sdk.outputs import InputIdentity
    from actfusion_sdk.result_outputs import save_result

    video = tmp_path / "clip.webm"
    video.write_bytes(b"a video")
    result = SegmentationResult.from_frames(frame_labels(), CLASSES, FPS, video=str(video))
    out = tmp_path / "out"
    written = save_result(result, out, "clip", "json", False, InputIdentity.of(video), {"seed": 0}, html=True)
    assert sorted(path.name for path in written) == ["clip.segmentation.html", "clip.segmentation.json"]
    page = Elements((out / "clip.segmentation.html").read_text())
    assert spans_of(page.lane("prediction")) == expected_spans(RUNS)
    (source,) = [attrs["src"] for tag, attrs in page.tags if tag == "video"]
    assert (out / unquote(source)).resolve() == video.resolve()
    record = json.loads((out / "clip.segmentation.record.json").read_text())
    assert "clip.segmentation.html" in json.dumps(record["outputs"])
    for command in ("segment", "anticipate"):
        assert build_parser().parse_args([command, "v.mp4", "--html"]).html is True


def test_html_output_draws_the_truth_of_segment_truth(tmp_path, capsys):
    """`segment --html --truth LABELS`: the page has the ground-truth row; --truth alone is a usage error."""
    from actfusion_sdk.outputs import InputIdentity
    from actfusion_sdk.result_outputs import save_result

    video = tmp_path / "clip.webm"
    video.write_bytes(b"a video")
    result = SegmentationResult.from_frames(frame_labels(), CLASSES, FPS, video=str(video))
    truth = [CLASSES[label] for label, count in RUNS[:2] for _ in range(count)]
    save_result(result, tmp_path, "clip", None, False, InputIdentity.of(video), {}, html=True, truth=truth)
    page = Elements((tmp_path / "clip.segmentation.html").read_text())
    assert spans_of(page.lane("ground truth")) == expected_spans(RUNS[:2])
    assert main(["segment", str(video), "--truth", str(tmp_path / "t.csv")]) == 2
    assert "add --plot or --html" in capsys.readouterr().err


def test_batch_html_writes_the_page_as_one_of_its_outputs(tmp_path):
    """`batch segment --html`: the page is one of the outputs a re-run expects, written with the others."""
    from actfusion_sdk.batch.job import BatchJob
    from actfusion_sdk.cli import build_parser
    from actfusion_sdk.cli.batch import job_from_arguments
    from actfusion_sdk.outputs import InputIdentity

    arguments = build_parser().parse_args(["batch", "segment", "v.mp4", "--out", str(tmp_path), "--html"])
    assert job_from_arguments(arguments).html is True
    video = tmp_path / "clip.webm"
    video.write_bytes(b"a video")
    job = BatchJob("segment", tmp_path / "out", html=True)
    assert [path.name for path in job.outputs("clip")] == ["clip.segmentation.json", "clip.segmentation.html"]
    result = SegmentationResult.from_frames(frame_labels(), CLASSES, FPS, video=str(video))
    identity, settings = InputIdentity.of(video), job.settings("0" * 64)
    job.write(result, "clip", identity, settings)
    assert job.is_finished("clip", identity, settings)
    page = Elements((tmp_path / "out" / "clip.segmentation.html").read_text())
    assert spans_of(page.lane("prediction")) == expected_spans(RUNS)
