"""`build_dataset`: annotated videos -> an MS-TCN dataset folder with a dataset card, or nothing at all.

    DATA/features/<video>.npy, .json   i3d features and their sidecar (timestamps, duration, settings)
    DATA/groundTruth/<video>.txt       one class per feature frame: the annotation covering the frame's centre
                                       time (its sidecar timestamp), background where none does
    DATA/mapping.txt                   "<index> <class>", background first, then the classes sorted
    DATA/splits/{train,test}.split<k>.bundle   K folds by video (`folds`)
    DATA/dataset.json                  the dataset card (`DatasetCard`)

Annotations are read and checked (`annotation_checks`) before any video is decoded. The build happens in a
working folder beside DATA (``.<DATA>.building``) that replaces DATA in one step at the end, so a failed
build leaves DATA as it was; features already extracted there (or in the DATA being rebuilt) are reused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DatasetError, VideoError
from ..features.extract import (
    FeatureExtractor,
    build_extractor,
    extract_to_directory,
    feature_files,
    find_videos,
)
from ..features.settings import EXTRACTOR_MSTCN, FeatureSettings
from ..fileio import atomic_write
from ..outputs import FAILURES_FILE, STATE_DIR, claim_output_names
from .annotation_checks import CheckedAnnotations, check_annotations, clip_to_durations
from .annotations import Annotation, read_all, video_name
from .folds import assign_folds, untrained_classes, write_splits

log = logging.getLogger(__name__)

CARD_FILE = "dataset.json"
CARD_SCHEMA = "actfusion-sdk/dataset/1"
DEFAULT_FOLDS = 4
END_TOLERANCE = 0.05  # seconds past a video's end not worth a warning (frame-rounded formats)


@dataclass(frozen=True)
class ClassStats:
    """How much of one class the dataset holds."""

    seconds: float  # annotated seconds (after clipping at the videos' ends)
    segments: int  # annotated segments
    frames: int  # feature frames labelled with it
    videos: int  # videos with at least one such frame


@dataclass(frozen=True)
class VideoEntry:
    """One video of the dataset: where it and its annotations came from, and how much is annotated."""

    name: str
    video: str
    annotations: tuple[str, ...]
    frames: int
    duration: float
    coverage: float  # fraction of feature frames labelled with an action (not background)


@dataclass(frozen=True)
class DatasetCard:
    """What `build_dataset` made (``DATA/dataset.json``): read back with `read_dataset_card`."""

    root: Path
    settings: FeatureSettings
    classes: tuple[str, ...]
    background: str
    class_stats: Mapping[str, ClassStats]
    videos: tuple[VideoEntry, ...]
    folds: tuple[tuple[str, ...], ...]  # the test videos of each fold (split k = folds[k - 1])
    warnings: tuple[str, ...] = ()

    @property
    def coverage(self) -> float:
        """Fraction of all feature frames labelled with an action."""
        frames = sum(video.frames for video in self.videos)
        return sum(video.coverage * video.frames for video in self.videos) / frames if frames else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CARD_SCHEMA,
            "features": self.settings.to_dict(),
            "features_per_second": self.settings.features_per_second,
            "background": self.background,
            "classes": list(self.classes),
            "class_stats": {name: vars(stats) for name, stats in self.class_stats.items()},
            "coverage": round(self.coverage, 6),
            "folds": [list(test) for test in self.folds],
            "videos": {
                video.name: {key: value for key, value in vars(video).items() if key != "name"}
                for video in self.videos
            },
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, root: Path, data: Mapping[str, Any]) -> DatasetCard:
        if data.get("schema") != CARD_SCHEMA:
            raise DatasetError(f"{root / CARD_FILE} is not a dataset card of schema {CARD_SCHEMA!r}")
        try:
            return cls(
                root=root,
                settings=FeatureSettings.from_dict(data["features"]),
                classes=tuple(data["classes"]),
                background=data["background"],
                class_stats={name: ClassStats(**stats) for name, stats in data["class_stats"].items()},
                videos=tuple(
                    VideoEntry(name, **{**entry, "annotations": tuple(entry["annotations"])})
                    for name, entry in data["videos"].items()
                ),
                folds=tuple(tuple(test) for test in data["folds"]),
                warnings=tuple(data.get("warnings", ())),
            )
        except (KeyError, TypeError, ConfigError) as err:
            raise DatasetError(f"dataset card {root / CARD_FILE} is incomplete or malformed: {err}") from err


def read_dataset_card(root: str | Path) -> DatasetCard:
    """The card of a dataset folder written by `build_dataset`."""
    root = Path(root)
    path = root / CARD_FILE
    if not path.is_file():
        raise DatasetError(f"{path} not found; build the dataset with `actfusion dataset build`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"dataset card {path} is not valid JSON: {err}") from err
    return DatasetCard.from_dict(root, data)


def build_dataset(
    videos: Sequence[str | Path],
    annotations: Sequence[str | Path | Annotation],
    out: str | Path,
    *,
    settings: FeatureSettings | None = None,
    folds: int | None = None,
    background: str = "background",
    overlap: str = "error",
    merge_case: bool = False,
    tier: str | None = None,
    gt_fps: float | None = None,
    i3d_weights: str | Path | None = None,
    flow_weights: str | Path | None = None,
    extractor: FeatureExtractor | None = None,
    device: str | None = None,
    precision: str | None = None,
    batch_size: int = 8,
    on_video: Callable[[int, Path], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> DatasetCard:
    """Build the dataset folder `out` from `videos` (files or folders) and their `annotations` (files in any
    format of `read_annotations`, or `Annotation` objects); returns its card.

    ``settings``: how features are made (default: the demo extractor's); ``extractor``: a feature extractor
    to use instead of the one `build_extractor` makes (after the annotations passed their checks) from
    ``settings``, ``i3d_weights``, ``flow_weights`` (MS-TCN features), ``device``, ``precision`` and
    ``batch_size``.
    ``folds``: K, from 2 to the number of videos (default 4, or the number of videos when fewer).
    ``overlap``: "error", "later" or "longer" (which segment labels the frames two segments share).
    ``merge_case``: merge label spellings that differ only in case or spaces. ``tier``, ``gt_fps``: the ELAN
    tier, and the frame rate of MS-TCN ground truth (and of Label Studio tasks that state none).
    """
    if folds is not None and (not isinstance(folds, int) or isinstance(folds, bool) or folds < 2):
        raise ConfigError(f"folds must be an integer from 2 to the number of videos, got {folds!r}")
    out = Path(os.path.abspath(out))  # a name to put the working folder beside, even for "." or "data/"
    _check_destination(out)
    inputs = find_videos(videos)
    names = _video_names(inputs)
    if folds is None:
        folds = min(DEFAULT_FOLDS, len(inputs))
    if not isinstance(folds, int) or not 2 <= folds <= len(inputs):
        raise ConfigError(
            f"folds must be an integer from 2 to the number of videos ({len(inputs)}), got {folds!r}"
        )
    files = [item for item in annotations if not isinstance(item, Annotation)]
    given = [item for item in annotations if isinstance(item, Annotation)]
    checked = check_annotations(
        given + read_all(files, tier=tier, frame_rate=gt_fps),
        list(names.values()),
        background=background,
        overlap=overlap,
        merge_case=merge_case,
    )
    work = out.parent / f".{out.name}.building"
    if extractor is None:  # built before the working folder exists: a weights error leaves nothing behind
        settings = settings or FeatureSettings.demo()
        extractor = build_extractor(
            settings,
            i3d_weights,
            flow_weights=flow_weights,
            device=device,
            precision=precision,
            batch_size=batch_size,
            flow_cache=work / "flow" if settings.extractor == EXTRACTOR_MSTCN else None,
        )
    _seed_working_folder(out, work)
    report = extract_to_directory(inputs, work, extractor, on_video=on_video, progress=progress)
    if report.failed:
        failures = "; ".join(f"{failure.video}: {failure.error}" for failure in report.failed)
        raise VideoError(
            f"{len(report.failed)} video(s) gave no features ({failures}); nothing was written to {out}. Fix "
            f"them and build again: the finished features in {work} are reused"
        )
    sidecars = _collect_features(work, inputs, names)
    # An overshoot under one feature frame changes no label: frame-numbered formats round to it.
    checked = clip_to_durations(
        checked,
        {name: meta["duration"] for name, meta in sidecars.items()},
        {name: max(END_TOLERANCE, 1 / meta["features_per_second"]) for name, meta in sidecars.items()},
    )
    card = _write_dataset(work, out, checked, sidecars, inputs, names, extractor.settings, folds)
    _replace(work, out)
    return card


def _video_names(inputs: list[Path]) -> dict[Path, str]:
    """Each input video's dataset name (its stem, as `video_name` reads annotations); two videos with one
    name are an error."""
    if not inputs:
        raise DatasetError("no video files found in the given inputs")
    missing = [str(video) for video in inputs if not video.is_file()]
    if missing:
        raise VideoError(f"video file(s) not found: {', '.join(missing)}; check the paths")
    names: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    for video in inputs:
        name = video_name(video.name)
        if name in seen:
            raise DatasetError(
                f"videos '{seen[name]}' and '{video}' share the name {name!r}; annotations name videos by "
                "file stem, so rename one"
            )
        seen[name], names[video] = video, name
    return names


def _check_destination(out: Path) -> None:
    """`out` may be new, empty or a dataset this builder wrote (which the build replaces)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"'{out}' is a file; give a folder for the dataset")
    if out.is_dir() and any(out.iterdir()) and not (out / CARD_FILE).is_file():
        raise ConfigError(
            f"'{out}' exists and is not a dataset built by actfusion; choose a new or empty folder"
        )


def _seed_working_folder(out: Path, work: Path) -> None:
    """Create the working folder `work` (``.<out>.building`` beside `out`) with the features (and their name
    claims) of a dataset being rebuilt, so that its finished features are not extracted again."""
    (work / "features").mkdir(parents=True, exist_ok=True)
    if (out / STATE_DIR).is_dir() and not (work / STATE_DIR).exists():
        # The folder's state: which video each feature file was made from (`claim_output_names`).
        shutil.copytree(out / STATE_DIR, work / STATE_DIR)
    for folder in ("features", "flow"):  # finished features, and the MS-TCN extractor's flow cache
        for path in (out / folder).rglob("*") if (out / folder).is_dir() else ():
            target = work / path.relative_to(out)
            if path.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)


def _collect_features(work: Path, inputs: list[Path], names: Mapping[Path, str]) -> dict[str, dict[str, Any]]:
    """Each video's sidecar, with its features moved to ``features/<name>`` where the extractor's folder
    had named them otherwise (a stem claimed by another path in an earlier build)."""
    claimed = claim_output_names(work, inputs)
    sidecars = {}
    for video in inputs:
        name = names[video]
        if claimed[video] != name:
            for source, target in zip(
                feature_files(work, claimed[video]), feature_files(work, name), strict=True
            ):
                os.replace(source, target)
        sidecars[name] = json.loads(feature_files(work, name)[1].read_text(encoding="utf-8"))
    for path in (work / "features").iterdir():  # features of videos an earlier build had and this one has not
        if path.stem not in sidecars:
            path.unlink()
    for folder in ("groundTruth", "splits"):
        shutil.rmtree(work / folder, ignore_errors=True)
    return sidecars


def frame_labels(
    items: Sequence[Annotation], timestamps: np.ndarray, class_index: Mapping[str, int], background: int
) -> np.ndarray:
    """Class of each feature frame: the last of `items` whose [start, end) holds the frame's centre time."""
    labels = np.full(len(timestamps), background, np.int64)
    for item in items:
        labels[(timestamps >= item.start) & (timestamps < item.end)] = class_index[item.label]
    return labels


def _write_dataset(
    work: Path,
    out: Path,
    checked: CheckedAnnotations,
    sidecars: Mapping[str, dict[str, Any]],
    inputs: list[Path],
    names: Mapping[Path, str],
    settings: FeatureSettings,
    folds: int,
) -> DatasetCard:
    classes = checked.classes
    index = {name: i for i, name in enumerate(classes)}
    labels = {
        name: frame_labels(checked.by_video[name], np.asarray(meta["timestamps"]), index, 0)
        for name, meta in sidecars.items()
    }
    for name, frames in labels.items():
        with atomic_write(work / "groundTruth" / f"{name}.txt", "w") as handle:
            handle.writelines(f"{classes[label]}\n" for label in frames.tolist())
    with atomic_write(work / "mapping.txt", "w") as handle:
        handle.writelines(f"{i} {name}\n" for i, name in enumerate(classes))
    present = {
        name: {classes[i] for i in np.unique(frames).tolist()} - {classes[0]}
        for name, frames in labels.items()
    }
    tests = assign_folds(present, folds)
    write_splits(work, list(labels), tests)
    warnings = list(checked.warnings)
    for line in untrained_classes(present, tests):
        warnings.append(line)
        log.warning(line)
    card = DatasetCard(
        root=out,
        settings=settings,
        classes=classes,
        background=classes[0],
        class_stats=_class_stats(checked, labels, classes),
        videos=tuple(
            VideoEntry(
                name=names[video],
                video=str(video),
                annotations=tuple(dict.fromkeys(str(item.source) for item in checked.by_video[names[video]])),
                frames=len(labels[names[video]]),
                duration=float(sidecars[names[video]]["duration"]),
                coverage=float(np.mean(labels[names[video]] != 0)),
            )
            for video in inputs
        ),
        folds=tests,
        warnings=tuple(warnings),
    )
    with atomic_write(work / CARD_FILE, "w") as handle:
        json.dump(card.to_dict(), handle, indent=1)
    return card


def _class_stats(
    checked: CheckedAnnotations, labels: Mapping[str, np.ndarray], classes: tuple[str, ...]
) -> dict[str, ClassStats]:
    items = [item for group in checked.by_video.values() for item in group]
    stats = {}
    for index, name in enumerate(classes):
        own = [item for item in items if item.label == name]
        stats[name] = ClassStats(
            seconds=round(sum(item.duration for item in own), 6),
            segments=len(own),
            frames=int(sum(np.count_nonzero(frames == index) for frames in labels.values())),
            videos=sum(bool(np.any(frames == index)) for frames in labels.values()),
        )
    return stats


def _replace(work: Path, out: Path) -> None:
    """Swap the finished working folder in as `out` (the old `out`, if any, goes only after the swap)."""
    (work / FAILURES_FILE).unlink(missing_ok=True)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(work, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
