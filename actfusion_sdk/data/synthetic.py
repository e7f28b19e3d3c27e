"""A small synthetic dataset in the MS-TCN layout, for tests, benchmarks and smoke runs of the trainer.

Each video is a random sequence of segments; a frame's feature is its class's prototype vector plus Gaussian
noise, so a model can learn it in a few epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_synthetic_mstcn(
    root: str | Path,
    *,
    num_videos: int = 6,
    num_classes: int = 4,
    feature_dim: int = 2048,
    frames: tuple[int, int] = (60, 120),
    segment_frames: tuple[int, int] = (8, 30),
    test_videos: int = 2,
    noise: float = 0.5,
    seed: int = 0,
) -> Path:
    """Write features/, groundTruth/, mapping.txt and splits/{train,test}.split1.bundle under `root`.

    The last `test_videos` videos form the test split, the others the train split. Returns `root`.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "groundTruth").mkdir(exist_ok=True)
    (root / "splits").mkdir(exist_ok=True)
    classes = [f"action_{c}" for c in range(num_classes)]
    (root / "mapping.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(classes)))
    prototypes = rng.standard_normal((num_classes, feature_dim)).astype(np.float32)
    names = []
    for v in range(num_videos):
        name = f"video_{v:03d}"
        length = int(rng.integers(frames[0], frames[1] + 1))
        labels: list[int] = []
        while len(labels) < length:
            choices = [c for c in range(num_classes) if not labels or c != labels[-1]]
            labels += [int(rng.choice(choices))] * int(rng.integers(segment_frames[0], segment_frames[1] + 1))
        labels = labels[:length]
        features = prototypes[labels].T + noise * rng.standard_normal((feature_dim, length)).astype(
            np.float32
        )
        np.save(root / "features" / f"{name}.npy", features.astype(np.float32))
        (root / "groundTruth" / f"{name}.txt").write_text("".join(f"{classes[c]}\n" for c in labels))
        names.append(name)
    split = num_videos - test_videos
    (root / "splits" / "train.split1.bundle").write_text("".join(f"{n}.txt\n" for n in names[:split]))
    (root / "splits" / "test.split1.bundle").write_text("".join(f"{n}.txt\n" for n in names[split:]))
    return root
