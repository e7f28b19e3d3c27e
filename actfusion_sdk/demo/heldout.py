"""Held-out procedural videos: scripts the demo model never saw (it was trained on benchmark seed 0)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .benchmark import generate_benchmark
from .grammar import ActivitySpec, sample_activity
from .render import render_video

#: Benchmark seed of the held-out videos.
HELDOUT_SEED = 1000
#: Benchmark seed of the bundled demo model's training and validation videos (benchmarks/train_demo.sh).
TRAINING_SEED = 0


@dataclass(frozen=True)
class LabelledVideo:
    """A video file with its ground-truth labels at the feature rate (one class name per feature)."""

    path: Path
    labels: tuple[str, ...]


def heldout_benchmark(
    out_dir: str | os.PathLike[str], num_videos: int, seed: int = HELDOUT_SEED
) -> list[LabelledVideo]:
    """Render `num_videos` held-out procedural videos under `out_dir` and return them with their labels."""
    manifest = generate_benchmark(
        out_dir, num_videos=num_videos, seed=seed, test_fraction=0.0, overwrite=True
    )
    return [
        LabelledVideo(manifest.root / "videos" / f"{name}.mp4", tuple(spec.feature_labels()))
        for name, spec in manifest.videos.items()
    ]


def demo_video(
    out_dir: str | os.PathLike[str], seed: int = HELDOUT_SEED
) -> tuple[LabelledVideo, ActivitySpec]:
    """Render one held-out activity video into `out_dir` (its script is drawn from `seed`)."""
    spec = sample_activity(np.random.default_rng(seed))
    path = Path(out_dir) / f"demo_{spec.activity}_{seed}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    render_video(spec, path)
    return LabelledVideo(path, tuple(spec.feature_labels())), spec
