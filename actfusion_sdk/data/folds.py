"""K folds by video: deterministic, balanced, every class in every training fold where possible.

Fold k's test videos are held out and all other videos train it. A class is missing from fold k's training
videos exactly when all its videos are in fold k's test set, so videos are placed rarest class first, each
into the fold where it makes the fewest classes all-test, then where it least concentrates its classes, then
the smallest fold, then the lowest index; among the folds that keep all fold sizes within one video.
Nothing is random: the same videos and classes give the same folds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping
from pathlib import Path

from ..fileio import atomic_write
from .mstcn import split_path


def assign_folds(video_classes: Mapping[str, Collection[str]], folds: int) -> tuple[tuple[str, ...], ...]:
    """The test videos of each of `folds` folds (each sorted), from each video's set of (action) classes."""
    videos = sorted(video_classes)
    per_class = Counter(name for video in videos for name in set(video_classes[video]))
    capacity = math.ceil(len(videos) / folds)
    order = sorted(videos, key=lambda video: (_rarest(video_classes[video], per_class), video))
    tests: list[list[str]] = [[] for _ in range(folds)]
    placed: dict[str, Counter[int]] = {name: Counter() for name in per_class}

    def cost(video: str, fold: int) -> tuple[int, int, int, int]:
        classes = set(video_classes[video])
        all_test = sum(placed[name][fold] + 1 == per_class[name] for name in classes)
        concentrated = sum(set(placed[name]) == {fold} for name in classes)
        return all_test, concentrated, len(tests[fold]), fold

    minimum = len(videos) // folds
    for position, video in enumerate(order):
        # Fold sizes stay within one video of each other: no fold over the ceiling, and once the videos left
        # are just enough to bring every fold to the floor, they go to the folds below it.
        short = [f for f in range(folds) if len(tests[f]) < minimum]
        if len(order) - position <= sum(minimum - len(tests[f]) for f in short):
            allowed = short
        else:
            allowed = [f for f in range(folds) if len(tests[f]) < capacity]
        fold = min(allowed, key=lambda f: cost(video, f))
        tests[fold].append(video)
        for name in set(video_classes[video]):
            placed[name][fold] += 1
    return tuple(tuple(sorted(test)) for test in tests)


def _rarest(classes: Collection[str], per_class: Counter[str]) -> int:
    return min((per_class[name] for name in classes), default=len(per_class) + 1)


def untrained_classes(
    video_classes: Mapping[str, Collection[str]], tests: tuple[tuple[str, ...], ...]
) -> list[str]:
    """A warning per fold and class in that fold's test videos but in none of its training videos."""
    warnings = []
    for number, test in enumerate(tests, start=1):
        train = [video for video in video_classes if video not in test]
        trained = {name for video in train for name in video_classes[video]}
        for name in sorted({name for video in test for name in video_classes[video]} - trained):
            holders = [video for video in test if name in video_classes[video]]
            warnings.append(
                f"fold {number}: class {name!r} is in test videos {holders} but in no training video of "
                "that fold; annotate it in more videos"
            )
    return warnings


def write_splits(root: Path, videos: Collection[str], tests: tuple[tuple[str, ...], ...]) -> None:
    """``splits/{train,test}.split<k>.bundle`` (k from 1), "<video>.txt" per line, as MS-TCN lists them."""
    (root / "splits").mkdir(exist_ok=True)
    for number, test in enumerate(tests, start=1):
        train = [video for video in sorted(videos) if video not in test]
        for subset, names in (("train", train), ("test", test)):
            with atomic_write(split_path(root, number, subset), "w") as handle:
                handle.writelines(f"{name}.txt\n" for name in names)
