"""Issue 34's validation rows, each by its reproduction: model cards (rows 4-6), live parameters and
timestamps (11-13), anticipation options and seeds (14), timeline images (15), result JSON (16)."""

from __future__ import annotations

import json
import logging
import math
import os
import resource
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_sdk.cli import main
from actfusion_sdk.errors import ConfigError, InputError, VideoError, WeightsError
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.checkpoint import load_card, load_model
from actfusion_sdk.model.config import preset
from actfusion_sdk.pipeline import Pipeline
from actfusion_sdk.predictor import AnticipationWindow
from actfusion_sdk.results import AnticipationResult, SegmentationResult
from actfusion_sdk.video.decode import VideoDecoder
from actfusion_sdk.video.live import LiveSource

from .helpers import write_level_video, write_small_model
from .test_live import write_ts

pytestmark = pytest.mark.usefixtures("single_thread", "fast_seeded_weights")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("validation")
    return {
        "root": root,
        "model": write_small_model(root / "model"),
        "video": write_level_video(root / "clip.mp4", 1.0),
    }


def run(capsys, *argv: object) -> tuple[int, str]:
    """The CLI's exit code and its one error line (asserted: exactly one, no traceback)."""
    code = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("actfusion:")]
    assert len(lines) == 1, err
    return code, lines[0]


# ---- rows 4, 5, 6: the model card's schema ------------------------------------------------------------


def card_with(model: Path, directory: Path, change) -> Path:
    """`model`'s card changed by `change` (in place, or its return value), alone in `directory`."""
    card = json.loads((model / "model.json").read_text())
    changed = change(card)
    directory.mkdir()
    (directory / "model.json").write_text(json.dumps(card if changed is None else changed))
    return directory


def setter(path: str, value):
    def change(card):
        *sections, leaf = path.split(".")
        owner = card
        for section in sections:
            owner = owner[section]
        owner[leaf] = value

    return change


BAD_CARDS = [
    (lambda card: [], "a model card is [] (a list of 0); expected an object"),
    (setter("classes", 5), "classes is 5 (an integer); expected a non-empty list"),
    (setter("classes", "abcd"), "classes is 'abcd' (a string); expected a non-empty list"),
    (setter("classes", [1, None, {}, []]), "classes[0] is 1 (an integer); expected a string"),
    (setter("classes", ["a", None, "c"]), "classes[1] is null (null); expected a string"),
    (setter("classes", []), "classes is [] (a list of 0); expected a non-empty list"),
    (setter("classes", ["a", "a", "c"]), "unique"),
    (setter("classes", ["a", " ", "c"]), "non-empty class names"),
    (setter("sha256", None), "sha256 is null (null); expected 64 lowercase hexadecimal digits"),
    (setter("sha256", "12ab"), "sha256 is '12ab' (a string); expected 64 lowercase hexadecimal digits"),
    (setter("format_version", "1"), "format_version is '1' (a string); expected the integer 1"),
    (setter("format_version", 2), "format_version 2 is not supported (this SDK reads 1)"),
    (
        setter("config.decoder.width", 200000),
        "config.decoder.width is 200000 (an integer); expected an integer in",
    ),
    (setter("config.encoder.num_layers", 10**30), "config.encoder.num_layers is 1000000"),
    (setter("config.encoder.width", 8.5), "config.encoder.width is 8.5 (a number); expected an integer"),
    (setter("config.diffusion.snr_scale", float("nan")), "config.diffusion.snr_scale is nan"),
    (setter("config.pos", "abs"), "config.pos is 'abs' (a string); expected one of 'rel', 'none'"),
    (setter("config.temporal_aug", "yes"), "config.temporal_aug is 'yes' (a string); expected true or false"),
    (setter("config.encoder.extra", 1), "config.encoder has the unknown key 'extra'"),
    (setter("fps", -2), "fps is -2 (an integer); expected a number in"),
    (setter("features", [1]), "features is [1] (a list of 1); expected an object"),
    (setter("description", 7), "description is 7 (an integer); expected a string"),
    (lambda card: card.pop("config") and None, "config is missing"),
    (lambda card: card.pop("sha256") and None, "sha256 is missing; expected 64 lowercase hexadecimal"),
    (setter("config.training.learning_rate", -1), "config.training.learning_rate is -1 (an integer)"),
    (setter("config.training.loss_weights.decoder_ce", 1e300), "loss_weights.decoder_ce is 1e+300"),
]


@pytest.mark.parametrize(("change", "message"), BAD_CARDS)
def test_card_schema_names_field_value_and_expectation(files, tmp_path, change, message) -> None:
    directory = card_with(files["model"], tmp_path / "bad", change)
    with pytest.raises(WeightsError) as raised:
        load_card(directory)
    assert str(directory / "model.json") in str(raised.value) and message in str(raised.value)


def test_card_with_a_huge_decoder_is_refused_on_the_command_line(files, tmp_path, capsys) -> None:
    model = tmp_path / "huge"
    model.mkdir()
    (model / "model.safetensors").write_bytes((files["model"] / "model.safetensors").read_bytes())
    card_with(files["model"], tmp_path / "card", setter("config.decoder.width", 200000))
    (model / "model.json").write_text((tmp_path / "card" / "model.json").read_text())
    code, line = run(capsys, "segment", files["video"], "--weights", model)
    assert code == 4 and "config.decoder.width is 200000" in line


def test_card_larger_than_its_weights_is_refused_without_building_the_model(files, tmp_path) -> None:
    # Within the schema's bounds, but 4096-wide and 32 layers deep: billions of parameters, were it built.
    model = tmp_path / "wide"
    model.mkdir()
    (model / "model.safetensors").write_bytes((files["model"] / "model.safetensors").read_bytes())
    card = json.loads((files["model"] / "model.json").read_text())
    card["config"]["decoder"].update(width=4096, num_layers=32)
    card["config"]["encoder"].update(width=4096, num_layers=32)
    (model / "model.json").write_text(json.dumps(card))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(WeightsError, match="does not match preset 'tiny'"):
        load_model(model)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < 1024**2  # under 1 GiB: building it would take tens of GiB


def test_weights_path_that_is_a_device_says_so(files, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ACTFUSION_WEIGHTS", "/dev/null")
    code, line = run(capsys, "segment", files["video"])
    assert code == 4 and "/dev/null" in line and "device, FIFO or socket" in line
    assert "does not exist" not in line


def test_official_checkpoint_as_weights_says_how_to_convert(files, tmp_path, capsys) -> None:
    official = tmp_path / "official.pt"
    torch.save(ActFusion(preset("gtea"), 11).state_dict(), official)
    code, line = run(capsys, "segment", files["video"], "--weights", official)
    assert code == 4 and "convert it first" in line and "fits preset 'gtea'" in line
    assert "preset=;" not in line
    with pytest.raises(WeightsError, match="convert it first"):
        load_model(official)


# ---- row 11: live options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--horizon", "1e12"], "horizon must be positive seconds"),
        (["--horizon", "inf"], "horizon must be positive seconds"),
        (["--every", "nan"], "every must be positive seconds"),
        (["--context", "-3"], "context must be positive seconds"),
        (["--stall", "0"], "--stall must be positive seconds"),
        (["--stall", "-1"], "--stall must be positive seconds"),
        (["--threads", "0"], "threads must be an integer from 1"),
        (["--seed", "-1"], "seed must be an integer from 0"),
        (["--every", "1e-6"], "shorter than one feature frame"),
        (["--horizon", "100000"], "more than the 200000 it answers at once"),  # a day: 250,000 frames
    ],
)
def test_live_options_out_of_range_are_usage_errors_before_the_source_opens(
    files, capsys, options, fragment
) -> None:
    # The source does not exist: an error from opening it (exit 3) would mean the option was checked late.
    missing = files["root"] / "missing.ts"
    code, line = run(capsys, "live", missing, "--weights", files["model"], *options)
    assert code == 2 and fragment in line


@pytest.mark.parametrize(
    ("target", "fragment"),
    [(".", "is a folder"), ("missing/dir/x.jsonl", "does not exist"), ("/sys/x.jsonl", "cannot be written")],
)
def test_live_jsonl_that_cannot_be_written_is_a_usage_error(files, capsys, monkeypatch, target, fragment):
    monkeypatch.chdir(files["root"])
    code, line = run(capsys, "live", "missing.ts", "--weights", "model", "--jsonl", target)
    assert code == 2 and fragment in line


def test_live_jsonl_fifo_without_reader_and_bad_name_are_usage_errors(files, tmp_path, capsys) -> None:
    fifo = tmp_path / "updates.fifo"
    os.mkfifo(fifo)
    live = ["live", files["root"] / "missing.ts", "--weights", files["model"]]
    code, line = run(capsys, *live, "--jsonl", fifo)  # would block forever in open() without a reader
    assert code == 2 and "a FIFO that nobody reads" in line
    code, line = run(capsys, *live, "--jsonl", str(tmp_path / "a\0b.jsonl"))
    assert code == 2 and "not a usable file name" in line


# ---- row 13: pushed frames and their timestamps ------------------------------------------------------


def pushed(times, size=(24, 24)):
    return [(t, np.full((*size, 3), 90, np.uint8)) for t in times]


@pytest.mark.parametrize(
    ("frames", "fragment"),
    [
        (pushed([0.0, 0.1, math.nan]), "frame 2: timestamp nan is not a finite number"),
        (pushed([0.0, math.inf]), "frame 1: timestamp inf is not a finite number"),
        (pushed([-math.inf]), "frame 0: timestamp -inf"),
        (pushed([0.0, 1e300]), "more than a week"),
        (pushed([0.0, 0.1], size=(0, 0)), "frame 0 has no pixels"),
        ([(0.0, np.zeros((0, 24, 3), np.uint8))], "has no pixels"),
        ([("now", np.zeros((8, 8, 3), np.uint8))], "timestamp 'now' is not a finite number"),
        ([np.zeros((8, 8, 3), np.uint8)], "not a (timestamp seconds, image) pair"),
    ],
)
def test_unusable_pushed_frames_are_video_errors(frames, fragment) -> None:
    with pytest.raises(VideoError) as raised:
        list(LiveSource(frames, fps=10.0).frames())
    assert fragment in str(raised.value)


def test_timestamps_that_go_back_are_dropped_counted_and_warned(caplog) -> None:
    # 10 frames at 10 fps, then a clock reset to 0 for 5 frames, then time resumes past the latest (0.9 s).
    times = [i / 10 for i in range(10)] + [i / 10 for i in range(5)] + [1.0, 1.1]
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video.live"):
        source = LiveSource(pushed(times), fps=10.0)
        frames = list(source.frames())
    assert len(frames) == 12  # 0.0 .. 1.1 s: the five reset frames are dropped, none of the others
    assert source.timeline.out_of_order == 5
    messages = [record.getMessage() for record in caplog.records]
    assert any("(0.000 s) does not follow the latest one (0.900 s)" in m for m in messages), messages
    assert any(m.endswith("5 out-of-order or repeated timestamps skipped") for m in messages), messages


@pytest.mark.slow
def test_pipeline_stream_through_a_clock_reset_answers_and_warns(files, caplog) -> None:
    # 3 s at 10 frames/s, the clock reset to 0 for a second, then on from 3 s: the reset frames are dropped.
    times = [i / 10 for i in range(30)] + [i / 10 for i in range(10)] + [3 + i / 10 for i in range(20)]
    images = [np.full((40, 40, 3), 40 + 3 * i, np.uint8) for i in range(len(times))]
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.video.live"):
        updates = list(
            Pipeline.stream(zip(times, images, strict=True), every=1.0, horizon=2.0, weights=files["model"])
        )
    assert updates and updates[-1].final and updates[-1].end == "end"
    assert [u.time for u in updates[:-1]] == [1.0, 2.0, 3.0, 4.0, 5.0]  # on past the reset, to 5 s
    assert any("10 out-of-order or repeated timestamps skipped" in r.getMessage() for r in caplog.records)


def test_pipeline_stream_with_a_nan_timestamp_is_a_video_error(files) -> None:
    frames = pushed([0.0, 0.1, math.nan], size=(40, 40))
    with pytest.raises(VideoError, match="timestamp nan"):
        list(Pipeline.stream(frames, weights=files["model"], device="cpu"))


# ---- row 12: damaged MPEG-TS live is reported as offline ---------------------------------------------


def findings(caplog, logger: str) -> list[str]:
    """The counts part of each end-of-stream warning line of `logger`."""
    return [
        r.getMessage().split("': ", 1)[1]
        for r in caplog.records
        if r.name == logger and "skipped" in r.getMessage()
    ]


def test_live_reports_spliced_and_joined_mpegts_like_the_file_decoder(tmp_path, caplog) -> None:
    first, second = write_ts(tmp_path / "a.ts", 9.0), write_ts(tmp_path / "b.ts", 2.0)
    data = first.read_bytes()
    joined = tmp_path / "joined.ts"
    joined.write_bytes(data + second.read_bytes())
    spliced = tmp_path / "spliced.ts"  # 40 KB of earlier packets and random bytes spliced in
    garbage = (
        data[188 * 100 : 188 * 313] + np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes()
    )
    spliced.write_bytes(data[: 188 * 600] + garbage + data[188 * 600 :])
    for path in (joined, spliced):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            offline = sum(1 for _ in VideoDecoder(path, 16.0))
            live = LiveSource(str(path), 16.0, format="mpegts")
            assert sum(1 for _ in live.frames()) == offline
        said_offline = findings(caplog, "actfusion_sdk.video.decode")
        said_live = findings(caplog, "actfusion_sdk.video.live")
        assert said_offline and said_live == said_offline, caplog.text
        assert live.timeline.out_of_order > 0


# ---- row 14: anticipation options and seeds ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--observed", "0.1", "--horizon", "5"], "less than one feature frame"),
        (["--observed", "1", "--horizon", "inf"], "horizon must be positive seconds"),
        (["--observed", "1", "--horizon", "nan"], "horizon must be positive seconds"),
        (["--observed", "1", "--horizon", "1e12"], "horizon must be positive seconds"),
        (["--observed", "1", "--horizon", "100000"], "more than the 200000 it answers at once"),
        (["--observed", "-1", "--horizon", "2"], "observed must be positive seconds"),
        (["--ratio", "nan"], "ratio must be in (0, 1)"),
        (["--seed", "99999999999999999999"], "seed must be an integer from 0"),
        (["--seed", "-5"], "seed must be an integer from 0"),
    ],
)
def test_anticipate_options_out_of_range_exit_2_before_any_work(files, capsys, options, fragment) -> None:
    missing = files["root"] / "missing.mp4"  # decoding it would be exit 3: the check must come first
    code, line = run(capsys, "anticipate", missing, "--weights", files["model"], *options)
    assert code == 2 and fragment in line


def test_segment_seed_out_of_range_exits_2_before_any_work(files, capsys) -> None:
    code, line = run(capsys, "segment", files["root"] / "missing.mp4", "--seed", str(2**64))
    assert code == 2 and "seed must be an integer from 0" in line


def test_python_api_refuses_the_same_values_before_extracting(files, monkeypatch) -> None:
    for observed, horizon in ((1.0, math.inf), (math.nan, 1.0), (1.0, 1e12), ("1", 2.0)):
        with pytest.raises(ConfigError):
            AnticipationWindow(observed=observed, horizon=horizon)
    pipeline = Pipeline(files["video"], weights=files["model"], device="cpu", progress=False)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the video was decoded before the request was checked")

    monkeypatch.setattr(pipeline.predictor.extractor, "extract", no_decoding)
    with pytest.raises(ConfigError, match="less than one feature frame"):
        pipeline.anticipate(observed=0.1, horizon=5)
    with pytest.raises(ConfigError, match="seed must be"):
        pipeline.segment(seed=99999999999999999999)
    with pytest.raises(ConfigError, match="seed must be"):
        pipeline.anticipate(seed=-1)


# ---- row 15: timeline images -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def result() -> SegmentationResult:
    return SegmentationResult.from_frames([0, 0, 1, 1, 2, 2], ["idle", "cut", "serve"], 2.0)


def test_plot_writes_the_format_its_suffix_names(result, tmp_path) -> None:
    from PIL import Image

    for name, kind in (("x.jpg", "JPEG"), ("x.JPEG", "JPEG"), ("x.png", "PNG")):
        with Image.open(result.plot(tmp_path / name)) as image:
            assert image.format == kind and image.size[0] == 1200
    with Image.open(result.plot(tmp_path / "narrow.png", width=800.0)) as image:
        assert image.size[0] == 800
    assert (result.plot(tmp_path / "x.pdf")).read_bytes().startswith(b"%PDF")
    assert b"<svg" in (result.plot(tmp_path / "x.svg")).read_bytes()[:400]
    with pytest.raises(ConfigError, match=r"image format of .*x\.gif.*\.png, \.jpg"):
        result.plot(tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize("width", [0, -1, math.nan, math.inf, 10**9, 2.5, True, "800"])
def test_plot_width_out_of_range_is_a_config_error(result, tmp_path, width) -> None:
    with pytest.raises(ConfigError, match="width must be an integer from"):
        result.plot(tmp_path / "x.png", width=width)
    assert not (tmp_path / "x.png").exists()


# ---- row 16: result JSON is checked on load ----------------------------------------------------------


def tampered(result, change) -> dict:
    document = json.loads(result.to_json(include_probs=True))
    change(document)
    return document


def put(key, value):
    def change(document):
        document[key] = value

    return change


def remove(key):
    return lambda document: document.pop(key)


def last_label(value):
    return lambda document: document["frame_labels"].__setitem__(-1, value)


def shift_first_segment(document):
    document["segments"][0]["end_frame"] += 1


SEGMENTATION_CASES = [
    (last_label(99), "frame_labels holds 99, which is not a class id in [0, 3)"),
    (last_label(-1), "frame_labels holds -1"),
    (last_label(0), "segments holds 3 segments but frame_labels give 4"),
    (
        shift_first_segment,
        "segments[0] (idle frames 0-3) contradicts frame_labels, which give idle frames 0-2",
    ),
    (put("fps", 0), "fps is 0; expected a positive, finite number"),
    (put("fps", "2"), "fps is '2'; expected a positive, finite number"),
    (put("duration", -1), "duration is -1; expected a positive, finite number"),
    (put("duration", 0.5), "duration 0.5 s is too short for 6 frames"),
    (put("classes", []), "classes is []; expected a non-empty list"),
    (put("classes", ["idle", "idle", "serve"]), "unique"),
    (put("classes", ["idle", "cut"]), "frame_labels holds 2, which is not a class id in [0, 2)"),
    (remove("fps"), "lacks the field 'fps'"),
    (remove("segments"), "lacks the field 'segments'"),
    (put("segments", None), "segments is null; expected a list of segments"),
    (put("frame_labels", None), "frame_labels is null; expected a non-empty list of integer class ids"),
    (put("frame_labels", [0.5, 1]), "frame_labels is [0.5, 1]"),
    (put("frame_probs", [[0.5], [0.5, 0.5]]), "frame_probs is"),
    (put("frame_probs", [[0.5] * 6] * 2), "frame_probs must have shape"),
    (put("timings", {"model": "fast"}), "timings is"),
    (put("num_frames", 7), "num_frames is 7 but frame_labels has 6"),
    (put("video", 3), "video is 3; expected a string or null"),
]


@pytest.mark.parametrize(("change", "message"), SEGMENTATION_CASES)
def test_tampered_segmentation_json_is_an_input_error_naming_file_and_field(
    result, tmp_path, change, message
):
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(tampered(result, change)))
    with pytest.raises(InputError) as raised:
        SegmentationResult.from_json(path)
    assert repr(str(path)) in str(raised.value) and message in str(raised.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (put("cut_frame", 0), "cut_frame must be in (0, 6)"),
        (put("cut_frame", "3"), "cut_frame is '3'; expected an integer"),
        (put("cut_time", 0.2), "cut_time is 0.2 but cut_frame 3 starts at 1.5"),
        (put("observation_ratio", 2), "observation_ratio is 2; expected a number in (0, 1) or null"),
        (put("video_end", -1.0), "video_end is -1.0"),
        (remove("anticipated_segments"), "lacks the field 'anticipated_segments'"),
        (lambda document: document["anticipated_segments"].pop(), "anticipated holds 1 segments but"),
    ],
)
def test_tampered_anticipation_json_is_an_input_error(change, message) -> None:
    result = AnticipationResult.from_frames([0, 0, 1, 1, 2, 2], ["idle", "cut", "serve"], 2.0, 3)
    with pytest.raises(InputError) as raised:
        AnticipationResult.from_json(json.dumps(tampered(result, change)))
    assert "result JSON text" in str(raised.value) and message in str(raised.value)


def test_untouched_results_still_load(result) -> None:
    anticipation = AnticipationResult.from_frames([0, 0, 1, 1, 2, 2], ["idle", "cut", "serve"], 2.0, 3)
    assert SegmentationResult.from_json(result.to_json()) == result
    assert AnticipationResult.from_json(anticipation.to_json(include_probs=True)) == anticipation
