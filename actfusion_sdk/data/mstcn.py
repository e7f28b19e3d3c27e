"""Datasets in the MS-TCN layout (spec §5).

    <dir>/features/<vid>.npy        [D, T] or [T, S, D] (S spatial crops)
    <dir>/features/<vid>.json       optional sidecar written by `actfusion extract` ({"settings": {...}, ...})
    <dir>/groundTruth/<vid>.txt     one class name per feature frame
    <dir>/mapping.txt               "<idx> <name>" lines; the class index is the line order
    <dir>/splits/{train,test}.split<k>.bundle   "<vid>.txt" lines
    <dir>/dataset.json              optional dataset card of `actfusion dataset build` ({"features": {...}})

Labels and boundaries are read and checked when the dataset is opened; features are memory-mapped and read
when a video is used, so large datasets cost little memory.
"""

from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .targets import boundary_targets, class_frame_counts

SUBSETS = ("train", "test")


@dataclass(frozen=True)
class Stream:
    """One temporal-augmentation stream of one video: every sr-th frame from an offset (spec §5)."""

    features: np.ndarray  # [D, L] float32
    labels: np.ndarray  # [L] int64
    boundaries: np.ndarray  # [L] float32


def change_speed(stream: Stream, factor: float) -> Stream:
    """The stream played `factor` times faster: round(L / factor) frames, each the nearest source frame."""
    length = stream.labels.shape[0]
    frames = max(1, round(length / factor))
    source = np.minimum(((np.arange(frames) + 0.5) * (length / frames)).astype(np.int64), length - 1)
    return Stream(
        np.array(stream.features[:, source], order="C"), stream.labels[source], stream.boundaries[source]
    )


@dataclass(frozen=True)
class VideoRecord:
    """A checked video: its features file and its full-rate labels and boundary targets."""

    name: str
    feature_path: Path
    labels: np.ndarray  # [T] int64
    boundaries: np.ndarray  # [T] float32

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[0])


def read_mapping(path: Path) -> tuple[str, ...]:
    """Class names in line order from a mapping.txt ("<idx> <name>" per line)."""
    if not path.is_file():
        raise DatasetError(f"class mapping {path} not found; an MS-TCN dataset needs mapping.txt")
    classes = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2:
            raise DatasetError(f"{path}:{number}: expected '<index> <class name>', got {line!r}")
        classes.append(parts[1].strip())
    if not classes:
        raise DatasetError(f"class mapping {path} is empty; list one '<index> <class name>' per line")
    if len(set(classes)) != len(classes):
        raise DatasetError(f"class mapping {path} names a class twice; class names must be unique")
    return tuple(classes)


def split_path(root: Path, split: int | str, subset: str) -> Path:
    """splits/<subset>.split<k>.bundle under the dataset directory."""
    if subset not in SUBSETS:
        raise DatasetError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    return root / "splits" / f"{subset}.split{split}.bundle"


def read_split(path: Path) -> list[str]:
    """Video names of a .bundle file (everything after the first '.' of a line is dropped)."""
    if not path.is_file():
        raise DatasetError(f"split file {path} not found; check --split and the dataset's splits/ folder")
    names = [line.strip().split(".", 1)[0] for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"split file {path} lists no videos")
    return names


def read_labels(path: Path, class_index: dict[str, int]) -> np.ndarray:
    """Frame labels [T] int64 of a groundTruth file, checked against the mapping."""
    if not path.is_file():
        raise DatasetError(
            f"ground truth {path} not found; every video of the split needs groundTruth/<vid>.txt"
        )
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    labels = np.empty(len(lines), np.int64)
    for number, line in enumerate(lines):
        name = line.strip()
        if name not in class_index:
            raise DatasetError(
                f"{path}:{number + 1}: label {name!r} is not in mapping.txt; add it there or fix the file"
            )
        labels[number] = class_index[name]
    if not len(labels):
        raise DatasetError(f"ground truth {path} is empty")
    return labels


def feature_frames(path: Path) -> tuple[int, int, int]:
    """(T, S, D) of a features file, read from its header only."""
    if not path.is_file():
        raise DatasetError(f"features {path} not found; every video of the split needs features/<vid>.npy")
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise DatasetError(f"features {path} cannot be read as a .npy array ({err})") from err
    if array.ndim == 2:
        return array.shape[1], 1, array.shape[0]
    if array.ndim == 3:
        return array.shape
    raise DatasetError(f"features {path} have shape {array.shape}; expected [D, T] or [T, S, D]")


def read_feature_settings(paths: list[Path]) -> dict | None:
    """The shared 'settings' of the features' JSON sidecars, or None when there are none."""
    found: dict[str, Path] = {}
    settings = None
    for path in paths:
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            continue
        try:
            current = json.loads(sidecar.read_text()).get("settings")
        except (json.JSONDecodeError, AttributeError) as err:
            raise DatasetError(f"feature sidecar {sidecar} is not a JSON object with 'settings'") from err
        key = json.dumps(current, sort_keys=True)
        found.setdefault(key, sidecar)
        if len(found) > 1:
            first, second = found.values()
            raise DatasetError(
                f"features were extracted with different settings ({first} vs {second}); re-extract alike"
            )
        settings = current
    return settings


def dataset_feature_settings(root: Path, sidecar_settings: dict | None) -> dict | None:
    """The feature settings of the dataset card <root>/dataset.json (`actfusion dataset build`) when there is
    one, else those of the feature sidecars; a DatasetError when the two differ."""
    from .builder import CARD_FILE, read_dataset_card  # the builder reads videos: loaded only when needed

    if not (root / CARD_FILE).is_file():
        return sidecar_settings
    settings = read_dataset_card(root).settings.to_dict()
    if sidecar_settings is not None and sidecar_settings != settings:
        raise DatasetError(
            f"dataset card {root / CARD_FILE} names other feature settings than the sidecars in "
            f"{root / 'features'}; rebuild the dataset so that its features match its card"
        )
    return settings


class MSTCNDataset:
    """The videos of one split of an MS-TCN dataset, with labels mapped through mapping.txt."""

    def __init__(
        self,
        root: str | Path,
        split: int | str,
        subset: str = "train",
        *,
        boundary_smooth: float | None = None,
        sample_rate: int = 1,
        temporal_aug: bool = True,
        speed_range: tuple[float, float] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset directory {self.root} not found")
        if sample_rate < 1:
            raise DatasetError(f"sample_rate must be >= 1, got {sample_rate}")
        self.classes = read_mapping(self.root / "mapping.txt")
        self.sample_rate = sample_rate
        self.temporal_aug = temporal_aug
        self.speed_range = speed_range
        class_index = {name: i for i, name in enumerate(self.classes)}
        self.videos: list[VideoRecord] = []
        feature_dims = set()
        for name in read_split(split_path(self.root, split, subset)):
            feature_path = self.root / "features" / f"{name}.npy"
            frames, _, dim = feature_frames(feature_path)
            labels = read_labels(self.root / "groundTruth" / f"{name}.txt", class_index)
            if frames != len(labels):
                raise DatasetError(
                    f"video {name!r}: {feature_path} has {frames} frames but its ground truth has "
                    f"{len(labels)} lines; they must match one to one"
                )
            feature_dims.add(dim)
            self.videos.append(
                VideoRecord(name, feature_path, labels, boundary_targets(labels, boundary_smooth))
            )
        if len(feature_dims) > 1:
            raise DatasetError(f"features in {self.root} have different dimensions {sorted(feature_dims)}")
        self.feature_dim = feature_dims.pop()
        self.feature_settings = dataset_feature_settings(
            self.root, read_feature_settings([video.feature_path for video in self.videos])
        )

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def select(self, names: list[str]) -> MSTCNDataset:
        """A view of this dataset with only the named videos, in the given order."""
        by_name = {video.name: video for video in self.videos}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise DatasetError(f"videos {missing} are not in this split of {self.root}")
        view = copy.copy(self)
        view.videos = [by_name[name] for name in names]
        return view

    def label_counts(self) -> np.ndarray:
        """Full-rate frames per class over all videos, for the class weights (spec §3)."""
        return class_frame_counts([video.labels for video in self.videos], self.num_classes)

    def crops(self, index: int) -> np.ndarray:
        """Features of video `index` as [S, T, D] float32 (S spatial crops)."""
        array = np.load(self.videos[index].feature_path, mmap_mode="r")
        array = array.T[None] if array.ndim == 2 else array.transpose(1, 0, 2)
        return np.asarray(array, dtype=np.float32)

    def features(self, index: int) -> np.ndarray:
        """Full-rate features [D, T] of a single-crop video (evaluation and inference)."""
        crops = self.crops(index)
        if crops.shape[0] != 1:
            raise DatasetError(
                f"video {self.videos[index].name!r} has {crops.shape[0]} spatial crops; evaluation needs one"
            )
        return np.array(crops[0].T, order="C")

    def stream_offsets(self) -> range:
        """Temporal-augmentation offsets: all sr of them, or only 0 without temporal augmentation."""
        return range(self.sample_rate if self.temporal_aug else 1)

    def stream(self, index: int, offset: int, crop: int = 0) -> Stream:
        """Frames offset, offset + sr, ... of one crop of video `index` (spec §5)."""
        return self._stream(index, self.crops(index)[crop], offset)

    def training_stream(self, index: int, rng: random.Random) -> Stream:
        """A random crop and a random stream of video `index`, as training visits it."""
        crops = self.crops(index)
        crop = rng.randrange(crops.shape[0])
        offset = rng.choice(self.stream_offsets())
        stream = self._stream(index, crops[crop], offset)
        if self.speed_range is None:
            return stream
        low, high = self.speed_range
        return change_speed(stream, math.exp(rng.uniform(math.log(low), math.log(high))))

    def _stream(self, index: int, features: np.ndarray, offset: int) -> Stream:
        video = self.videos[index]
        frames = slice(offset, None, self.sample_rate)
        return Stream(np.array(features[frames].T, order="C"), video.labels[frames], video.boundaries[frames])
