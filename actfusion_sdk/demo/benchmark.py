"""A procedural activity benchmark folder: rendered videos with MS-TCN labels, splits and a manifest.

Video i of a benchmark is scripted from (seed, i) alone and the activity types take turns, so the folder is
reproducible and a larger benchmark with the same seed extends a smaller one.

    generate_benchmark(out_dir, num_videos=40, seed=0)   # the whole dataset, see its docstring for the layout
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .encode import available_codec
from .grammar import (
    ACTIVITIES,
    CLASSES,
    DEFAULT_PACING,
    OPTIONAL_PROBABILITY,
    SWAP_PROBABILITY,
    ActivitySpec,
    Pacing,
    sample_activity,
)
from .render import render_video

METADATA_FILE = "benchmark.json"
LAYOUT_ENTRIES = ("videos", "groundTruth", "frameLabels", "splits", "mapping.txt", METADATA_FILE)


@dataclass(frozen=True)
class BenchmarkManifest:
    """What `generate_benchmark` wrote: the directory, the classes, every video's script and the split."""

    root: Path
    classes: tuple[str, ...]
    videos: dict[str, ActivitySpec]
    train: tuple[str, ...]
    test: tuple[str, ...]
    settings: dict[str, Any]  # as written to benchmark.json: seed, sizes, rates, codec, pacing, ...

    def label_counts(self) -> dict[str, int]:
        """How many feature labels (at settings["label_fps"]) each class has over all videos."""
        counts = Counter(
            label
            for spec in self.videos.values()
            for label in spec.feature_labels(self.settings["label_fps"])
        )
        return {name: counts[name] for name in self.classes}

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "classes": list(self.classes),
            "activities": {
                name: [{"steps": list(slot.steps), "optional": slot.optional} for slot in slots]
                for name, slots in ACTIVITIES.items()
            },
            "splits": {"train": list(self.train), "test": list(self.test)},
            "label_counts": self.label_counts(),
            "videos": {name: spec.to_dict() for name, spec in self.videos.items()},
        }


def generate_benchmark(
    out_dir: str | Path,
    *,
    num_videos: int,
    seed: int,
    test_fraction: float = 0.25,
    size: int = 160,
    fps: int = 15,
    label_fps: float = 2.0,
    pacing: Pacing = DEFAULT_PACING,
    overwrite: bool = False,
    on_video: Callable[[str], None] | None = None,
) -> BenchmarkManifest:
    """Render a benchmark in the MS-TCN layout (spec §5) under `out_dir`:

        videos/<vid>.mp4             the videos (size x size, fps)
        groundTruth/<vid>.txt        one class name per feature time (k + 0.5) / label_fps
        frameLabels/<vid>.txt        one class name per video frame
        mapping.txt                  "<index> <class>" lines, background first
        splits/{train,test}.split1.bundle   "<vid>.txt" lines
        benchmark.json               settings, classes, grammars, split, label counts, every video's script

    Activity types take turns (video i follows the (i mod 5)-th), and the last round(num_videos *
    test_fraction) videos form the test split (so it holds the types about equally). Video i's script
    depends only on (seed, i): a larger benchmark with the same seed extends a smaller one. `on_video(vid)`
    is called after each video is written.
    """
    if not isinstance(num_videos, int) or num_videos < 1:
        raise ConfigError(f"num_videos must be a positive integer, got {num_videos!r}")
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    num_test = round(num_videos * test_fraction)
    if num_test == num_videos:
        raise ConfigError(f"test_fraction {test_fraction} of {num_videos} videos leaves none for training")
    if not (math.isfinite(label_fps) and 0 < label_fps <= fps):
        raise ConfigError(f"label_fps must be positive and at most the video's fps ({fps}), got {label_fps}")
    activity_names = list(ACTIVITIES)
    videos: dict[str, ActivitySpec] = {}
    for index, video_seed in enumerate(np.random.SeedSequence(seed).spawn(num_videos)):
        activity = activity_names[index % len(activity_names)]
        spec = sample_activity(np.random.default_rng(video_seed), activity, size=size, fps=fps, pacing=pacing)
        videos[f"{activity}_{index:03d}"] = spec
    root = _prepare_directory(Path(out_dir), overwrite)
    codec = available_codec()
    for name, spec in videos.items():
        render_video(spec, root / "videos" / f"{name}.mp4", codec=codec)
        _write_lines(root / "groundTruth" / f"{name}.txt", spec.feature_labels(label_fps))
        _write_lines(root / "frameLabels" / f"{name}.txt", spec.frame_labels())
        if on_video is not None:
            on_video(name)
    names = list(videos)
    train, test = tuple(names[: num_videos - num_test]), tuple(names[num_videos - num_test :])
    _write_lines(root / "mapping.txt", [f"{index} {name}" for index, name in enumerate(CLASSES)])
    _write_lines(root / "splits" / "train.split1.bundle", [f"{name}.txt" for name in train])
    _write_lines(root / "splits" / "test.split1.bundle", [f"{name}.txt" for name in test])
    settings = {
        "seed": seed,
        "num_videos": num_videos,
        "test_fraction": test_fraction,
        "size": size,
        "fps": fps,
        "label_fps": label_fps,
        "codec": codec,
        "pacing": asdict(pacing),
        "optional_probability": OPTIONAL_PROBABILITY,
        "swap_probability": SWAP_PROBABILITY,
    }
    manifest = BenchmarkManifest(root, CLASSES, videos, train, test, settings)
    (root / METADATA_FILE).write_text(json.dumps(manifest.to_dict(), indent=1) + "\n")
    return manifest


def _prepare_directory(root: Path, overwrite: bool) -> Path:
    """Create the layout's directories; an existing non-empty directory is only reused with `overwrite`,
    and then only the layout's own entries are removed."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"benchmark output {root} exists and is not a directory; choose another path")
    if root.is_dir() and any(root.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"benchmark output {root} is not empty; choose a new directory or pass overwrite"
            )
        for entry in LAYOUT_ENTRIES:
            path = root / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for sub in ("videos", "groundTruth", "frameLabels", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines))
