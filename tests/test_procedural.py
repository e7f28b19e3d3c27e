"""actfusion_sdk.demo: grammar, timelines, labels, rendering, encoding, benchmark layout and CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from actfusion_sdk.cli import main
from actfusion_sdk.demo import encode
from actfusion_sdk.demo.benchmark import generate_benchmark
from actfusion_sdk.demo.events import STEP_EVENTS
from actfusion_sdk.demo.grammar import (
    ACTIVITIES,
    CLASSES,
    ActivitySpec,
    GrammarSlot,
    Pacing,
    StepSpan,
    sample_activity,
    sample_steps,
)
from actfusion_sdk.demo.render import render_frames, render_video
from actfusion_sdk.errors import ConfigError

SHORT = Pacing(step_seconds=(1.0, 2.0), gap_seconds=(0.5, 1.0), lead_seconds=(0.5, 1.0))
BG, RED = "background", "red_disc_bounce"


def parse_steps(steps: list[str], slots: tuple[GrammarSlot, ...]) -> list[tuple[int, bool]]:
    """Match a step sequence against a grammar, slot by slot; returns (slot index, swapped) for every used
    slot, or raises AssertionError when the sequence is not in the grammar's language."""
    used, position = [], 0
    for index, slot in enumerate(slots):
        width = len(slot.steps)
        window = tuple(steps[position : position + width])
        if window == slot.steps or (width == 2 and window == slot.steps[::-1]):
            used.append((index, width == 2 and window != slot.steps))
            position += width
        else:
            assert slot.optional, f"required slot {slot.steps} missing from {steps}"
    assert position == len(steps), f"{steps[position:]} left over after parsing {steps}"
    return used


def all_frames(spec: ActivitySpec) -> np.ndarray:
    timeline = [(span.label, span.start_frame, span.end_frame) for span in spec.spans]
    return np.concatenate(list(render_frames(timeline, size=spec.size, fps=spec.fps, seed=spec.seed)))


def decode(path: Path) -> tuple[np.ndarray, av.video.stream.VideoStream]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        return frames, stream


def test_classes_background_first_and_every_step_has_a_renderer():
    assert CLASSES[0] == "background"
    assert set(CLASSES[1:]) == set(STEP_EVENTS)
    assert len(CLASSES) == len(set(CLASSES)) == 11


def test_grammar_is_balanced_each_class_required_twice_and_optional_twice():
    required, optional = Counter(), Counter()
    for slots in ACTIVITIES.values():
        for slot in slots:
            (optional if slot.optional else required).update(slot.steps)
    assert required == {name: 2 for name in STEP_EVENTS}
    assert optional == {name: 2 for name in STEP_EVENTS}


def test_sampled_steps_follow_the_grammar_and_use_its_freedom():
    rng = np.random.default_rng(7)
    for activity, slots in ACTIVITIES.items():
        seen_used, seen_swapped, lengths = Counter(), Counter(), set()
        for _ in range(60):
            steps = sample_steps(rng, activity)
            assert 4 <= len(steps) <= 8
            assert len(set(steps)) == len(steps)
            lengths.add(len(steps))
            for index, swapped in parse_steps(steps, slots):
                seen_used[index] += 1
                seen_swapped[index] += swapped
        for index, slot in enumerate(slots):
            if slot.optional:
                assert 0 < seen_used[index] < 60, f"{activity} optional {slot.steps} never varies"
            else:
                assert seen_used[index] == 60
            if len(slot.steps) == 2:
                assert 0 < seen_swapped[index] < 60, f"{activity} pair {slot.steps} never reorders"
        assert len(lengths) > 2


def test_step_frequencies_are_balanced_over_many_scripts():
    rng = np.random.default_rng(3)
    names = list(ACTIVITIES)
    counts = Counter(step for i in range(1000) for step in sample_steps(rng, names[i % len(names)]))
    # each class: required in 2 of 5 types, optional (p = 0.5) in 2 more -> 3/5 per script -> 600 expected
    assert set(counts) == set(STEP_EVENTS)
    assert all(abs(count - 600) < 75 for count in counts.values()), counts


def test_sample_activity_timeline():
    pacing = Pacing()
    for seed in range(20):
        spec = sample_activity(np.random.default_rng(seed), size=64, fps=15)
        parse_steps(list(spec.steps), ACTIVITIES[spec.activity])
        assert spec.spans[0].label == spec.spans[-1].label == BG
        assert spec.num_frames % spec.fps == 0  # whole seconds
        labels = [span.label for span in spec.spans]
        assert all(
            a != b for a, b in zip(labels, labels[1:], strict=False)
        )  # gaps separate, never merge steps
        for span in spec.spans[1:-1]:
            seconds = (span.end_frame - span.start_frame) / spec.fps
            low, high = pacing.gap_seconds if span.label == BG else pacing.step_seconds
            assert low - 1 / spec.fps <= seconds <= high + 1 / spec.fps


def test_feature_labels_hand_computed():
    # 3 s at 15 fps; label times 0.25, 0.75, ..., 2.75 s fall on frames 3, 11, 18, 26, 33, 41
    spec = ActivitySpec("hand", (StepSpan(BG, 0, 10), StepSpan(RED, 10, 40), StepSpan(BG, 40, 45)), size=64)
    assert spec.feature_labels(2.0) == [BG, RED, RED, RED, RED, BG]
    assert spec.feature_labels(1.0) == [BG, RED, RED]  # times 0.5, 1.5, 2.5 s: frames 7, 22, 37
    assert spec.frame_labels() == [BG] * 10 + [RED] * 30 + [BG] * 5


@pytest.mark.parametrize("label_fps", [2.0, 1.0, 3.0, 0.7])
def test_feature_labels_agree_with_the_timeline(label_fps):
    for seed in range(5):
        spec = sample_activity(np.random.default_rng(seed), size=64, fps=15, pacing=SHORT)
        labels = spec.feature_labels(label_fps)
        assert len(labels) == round(spec.num_frames / spec.fps * label_fps)
        for k, label in enumerate(labels):
            time = (k + 0.5) / label_fps
            (active,) = [
                s.label for s in spec.spans if s.start_frame / spec.fps <= time < s.end_frame / spec.fps
            ]
            assert label == active


def test_spec_rejects_gaps_unknown_classes_and_bad_sizes():
    with pytest.raises(ConfigError, match="contiguous"):
        ActivitySpec("x", (StepSpan(BG, 0, 10), StepSpan(RED, 11, 20)))
    with pytest.raises(ConfigError, match="not a class"):
        ActivitySpec("x", (StepSpan("juggling", 0, 10),))
    with pytest.raises(ConfigError, match="even"):
        ActivitySpec("x", (StepSpan(BG, 0, 10),), size=65)
    with pytest.raises(ConfigError, match="unknown"):
        sample_steps(np.random.default_rng(0), "recipe_z")


def test_same_seed_same_script_and_frames_different_seed_differs():
    first = sample_activity(np.random.default_rng(11), size=64, fps=8, pacing=SHORT)
    again = sample_activity(np.random.default_rng(11), size=64, fps=8, pacing=SHORT)
    other = sample_activity(np.random.default_rng(12), size=64, fps=8, pacing=SHORT)
    assert first == again
    assert first != other
    frames = all_frames(first)
    assert frames.shape == (first.num_frames, 64, 64, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, all_frames(again))
    moved = ActivitySpec(first.activity, first.spans, size=64, fps=8, seed=first.seed + 1)
    assert np.abs(all_frames(moved).astype(int) - frames).mean() > 1


def spec_with_every_class(seed: int, frames_per_class: int = 16) -> ActivitySpec:
    spans = tuple(
        StepSpan(c, i * frames_per_class, (i + 1) * frames_per_class) for i, c in enumerate(CLASSES)
    )
    return ActivitySpec("every_class", spans, size=64, fps=8, seed=seed)


def object_signature(frames: np.ndarray, spec: ActivitySpec) -> np.ndarray:
    """Per step span: mean colour of the pixels that differ from the background span's median frame, and
    the share of such pixels; [classes - 1, 4]."""
    frames = frames.astype(np.float32)
    background = np.median(frames[: spec.spans[0].end_frame], axis=0)
    rows = []
    for span in spec.spans[1:]:
        window = frames[span.start_frame : span.end_frame]
        foreground = np.abs(window - background).sum(-1) > 60
        assert foreground.mean() > 0.04, f"{span.label} hardly visible"
        rows.append(np.append(window[foreground].mean(0) / 255, foreground.mean()))
    return np.array(rows)


@pytest.mark.parametrize("seeds", [(1, 2), (3, 4)])
def test_step_classes_look_different_across_videos(seeds):
    """Across two videos with different looks, each step is closest to the same class in the other video."""
    specs = [spec_with_every_class(seed) for seed in seeds]
    first, second = (object_signature(all_frames(spec), spec) for spec in specs)
    distances = np.abs(second[:, None] - first[None]).sum(-1)
    assert list(distances.argmin(axis=1)) == list(range(len(STEP_EVENTS)))
    means = np.array([all_frames(specs[0])[s.start_frame : s.end_frame].mean(0) for s in specs[0].spans])
    pairwise = np.abs(means[:, None] - means[None]).mean(axis=(2, 3, 4))
    assert pairwise[np.triu_indices(len(CLASSES), 1)].min() > 2  # grey-level units; noise averages far below


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_written_video_decodes_with_frames_size_and_rate(tmp_path, codec):
    spec = ActivitySpec("hand", (StepSpan(BG, 0, 15), StepSpan(RED, 15, 45), StepSpan(BG, 45, 60)), seed=5)
    assert render_video(spec, tmp_path / "v.mp4", codec=codec) == codec
    frames, stream = decode(tmp_path / "v.mp4")
    assert frames.shape == (60, 160, 160, 3)
    assert stream.average_rate == 15
    assert not list(tmp_path.glob("*.part"))
    mse = np.mean((frames.astype(np.float64) - all_frames(spec)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28  # PSNR: the decoded frames are the rendered ones, compressed


def test_codec_choice_falls_back_to_mpeg4_and_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(encode, "PREFERRED_CODECS", ("no_such_encoder", "mpeg4"))
    assert encode.available_codec() == "mpeg4"
    monkeypatch.setattr(encode, "PREFERRED_CODECS", ("no_such_encoder",))
    with pytest.raises(ConfigError, match="no_such_encoder"):
        encode.available_codec()


def read_lines(path: Path) -> list[str]:
    text = path.read_text()
    assert text.endswith("\n")
    return text.splitlines()


def test_generate_benchmark_layout_and_reproducibility(tmp_path):
    kwargs = dict(num_videos=5, seed=9, test_fraction=0.4, size=64, fps=8, label_fps=2.0, pacing=SHORT)
    manifest = generate_benchmark(tmp_path / "a", **kwargs)
    root = manifest.root
    mapping = read_lines(root / "mapping.txt")
    assert mapping == [f"{i} {name}" for i, name in enumerate(CLASSES)]
    train = [line.split(".")[0] for line in read_lines(root / "splits" / "train.split1.bundle")]
    test = [line.split(".")[0] for line in read_lines(root / "splits" / "test.split1.bundle")]
    assert len(test) == 2 and not set(train) & set(test)
    assert (
        sorted(train + test)
        == sorted(manifest.videos)
        == sorted(p.stem for p in (root / "groundTruth").iterdir())
    )
    for name, spec in manifest.videos.items():
        labels = read_lines(root / "groundTruth" / f"{name}.txt")
        assert labels == spec.feature_labels(2.0)
        assert len(labels) == round(spec.duration * 2.0)
        assert read_lines(root / "frameLabels" / f"{name}.txt") == spec.frame_labels()
        assert set(labels) <= set(CLASSES)
        assert len(decode(root / "videos" / f"{name}.mp4")[0]) == spec.num_frames
    metadata = json.loads((root / "benchmark.json").read_text())
    assert metadata["classes"] == list(CLASSES)
    assert metadata["settings"]["seed"] == 9 and metadata["settings"]["label_fps"] == 2.0
    assert sorted(metadata["videos"]) == sorted(manifest.videos)
    assert sum(metadata["label_counts"].values()) == sum(
        len(s.feature_labels(2.0)) for s in manifest.videos.values()
    )

    again = generate_benchmark(tmp_path / "b", **kwargs).root
    for sub in ("groundTruth", "frameLabels", "splits"):
        for path in (root / sub).iterdir():
            assert (again / sub / path.name).read_bytes() == path.read_bytes()
    assert (again / "benchmark.json").read_bytes() == (root / "benchmark.json").read_bytes()
    # The rendered frames are bit-identical (test_same_seed_same_script_and_frames_different_seed_differs),
    # the encoded files need not be: libx264 on this machine gives slightly different bytes for the same
    # frames from run to run (measured: 2.3% of decoded values off by up to 12), so decoded videos are
    # compared with a tolerance.
    for path in (root / "videos").iterdir():
        first, second = decode(path)[0], decode(again / "videos" / path.name)[0]
        assert first.shape == second.shape
        assert np.abs(first.astype(np.int16) - second).mean() < 1.0


def test_generate_benchmark_refuses_bad_arguments_before_writing(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate_benchmark(tmp_path, num_videos=1, seed=0, size=64, fps=8, pacing=SHORT)
    with pytest.raises(ConfigError, match="none for training"):
        generate_benchmark(tmp_path / "new", num_videos=1, seed=0, test_fraction=0.6)
    with pytest.raises(ConfigError, match="even"):
        generate_benchmark(tmp_path / "new", num_videos=1, seed=0, size=99)
    assert not (tmp_path / "new").exists()  # arguments are checked before anything is written


def test_cli_make_benchmark(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["make-benchmark", "--out", str(out), "--videos", "2", "--size", "64", "--fps", "4", "--seed", "1"]
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert len(list((out / "videos").glob("*.mp4"))) == 2
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--videos", "1"]) == 0
    assert "wrote 1 videos" in capsys.readouterr().out
    assert [p.name for p in (out / "groundTruth").iterdir()] == ["recipe_a_000.txt"]
