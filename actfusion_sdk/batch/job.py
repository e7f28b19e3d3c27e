"""What a batch does to each video and where its outputs go: the same layout as the single-machine commands.

    segment / anticipate:  OUT/<video>.<kind><suffix of --format> (+ OUT/<video>.<kind>.png with --plot)
    extract:               OUT/features/<video>.npy + OUT/features/<video>.json

Every file is written atomically, so a file under its final name is a finished one: that is how a re-run
knows what to skip and how a retried worker knows not to write twice.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..cli._common import result_filename
from ..errors import ConfigError
from ..features.extract import feature_paths, is_extracted
from ..features.settings import FeatureSettings
from ..predictor import AnticipationWindow
from ..results import FORMATS, AnticipationResult, SegmentationResult

Task = Literal["segment", "anticipate", "extract"]
TASKS: tuple[Task, ...] = ("segment", "anticipate", "extract")
_KINDS = {"segment": "segmentation", "anticipate": "anticipation"}


@dataclass(frozen=True)
class BatchJob:
    """One task over many videos, with the options of the matching single-machine command.

    segment / anticipate: `weights`, `seed` (the same for every video, so results never depend on
    scheduling), `format` (default json), `plot`, and for anticipate `window`.
    extract: `feature_settings` (default demo), `i3d_weights`, `precision`, `batch_size`.
    """

    task: Task
    out: Path
    weights: str | None = None
    device: str | None = None
    seed: int = 0
    format: str = "json"
    plot: bool = False
    window: AnticipationWindow = field(default_factory=AnticipationWindow)
    feature_settings: FeatureSettings | None = None
    i3d_weights: str | None = None
    precision: str | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown batch task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.format not in FORMATS:
            raise ConfigError(f"unknown export format {self.format!r}; choose one of {', '.join(FORMATS)}")
        object.__setattr__(self, "out", Path(self.out))
        if self.task == "extract" and self.feature_settings is None:
            object.__setattr__(self, "feature_settings", FeatureSettings.demo())

    @property
    def runs_model(self) -> bool:
        return self.task != "extract"

    def outputs(self, video: str | Path) -> list[Path]:
        """The final paths of `video`'s outputs."""
        name = Path(video).stem
        if not self.runs_model:
            return list(feature_paths(self.out, name))
        kind = _KINDS[self.task]
        paths = [self.out / result_filename(name, kind, self.format)]
        if self.plot:
            paths.append(self.out / result_filename(name, kind, "png"))
        return paths

    def is_done(self, video: str | Path) -> bool:
        """Whether every output of `video` exists under its final name (features: with these settings)."""
        if not self.runs_model:
            return is_extracted(*self.outputs(video), self.feature_settings.to_dict())
        return all(path.is_file() for path in self.outputs(video))

    def write(self, result: SegmentationResult | AnticipationResult) -> list[Path]:
        """Write a model result's outputs atomically, each under its final name."""
        export, *plot = self.outputs(result.video)
        result.save(export, self.format)
        for path in plot:
            _plot_atomically(result, path)
        return [export, *plot]


def _plot_atomically(result: SegmentationResult | AnticipationResult, path: Path) -> None:
    """The timeline PNG drawn into a temporary file next to `path`, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    try:
        result.plot(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
