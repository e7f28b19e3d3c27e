"""What a batch does to each video and where its outputs go: exactly what the single-machine commands write.

    segment / anticipate:  OUT/<name>.<kind><suffix of --format> (+ OUT/<name>.<kind>.png with --plot,
                           + OUT/<name>.<kind>.html with --html)
                           and their record OUT/<name>.<kind>.record.json
    extract:               OUT/features/<name>.npy + its sidecar (= record) OUT/features/<name>.json

`<name>` is the video's claimed output name (`claim_output_names`: its stem, made distinct for same-stem
videos from other folders). The files are written whole before their record and the record last
(`write_outputs`), so an output is finished when its record names this very input and these settings and holds
each file's sha256 (`output_is_finished`): that is how a re-run knows what to skip (never a stale output) and
how a retried worker knows not to write twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..features.extract import feature_files
from ..features.settings import FeatureSettings
from ..limits import check_seed
from ..outputs import InputIdentity, output_is_finished
from ..predictor import AnticipationWindow
from ..result_outputs import record_file, result_files, result_settings, save_result
from ..results import FORMATS, AnticipationResult, SegmentationResult

Task = Literal["segment", "anticipate", "extract"]
TASKS: tuple[Task, ...] = ("segment", "anticipate", "extract")
_KINDS = {"segment": "segmentation", "anticipate": "anticipation"}


@dataclass(frozen=True)
class BatchJob:
    """One task over many videos, with the options of the matching single-machine command.

    segment / anticipate: `weights`, `seed` (the same for every video, so results never depend on
    scheduling), `format` (default json), `plot`, `html` (the viewer page), and for anticipate `window`.
    extract: `feature_settings` (default demo), `i3d_weights`, `precision`, `batch_size`.
    """

    task: Task
    out: Path
    weights: str | None = None
    device: str | None = None
    seed: int = 0
    format: str = "json"
    plot: bool = False
    html: bool = False
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
        object.__setattr__(self, "seed", check_seed(self.seed))
        object.__setattr__(self, "out", Path(self.out))
        if self.task == "extract" and self.feature_settings is None:
            object.__setattr__(self, "feature_settings", FeatureSettings.demo())

    @property
    def runs_model(self) -> bool:
        return self.task != "extract"

    @property
    def observed_window(self) -> AnticipationWindow | None:
        """The anticipation window (anticipate only): it limits extraction and goes into the records."""
        return self.window if self.task == "anticipate" else None

    def settings(self, model_sha256: str = "") -> dict[str, Any]:
        """The settings each output's record holds, as the single-machine command records them."""
        if not self.runs_model:
            return self.feature_settings.to_dict()
        return result_settings(self.task, self.seed, self.format, model_sha256, self.observed_window)

    def outputs(self, name: str) -> list[Path]:
        """The final paths of the outputs of the video named `name` that its record lists."""
        if not self.runs_model:
            return [feature_files(self.out, name)[0]]
        kind = _KINDS[self.task]
        return list(result_files(self.out, name, kind, self.format, self.plot, self.html).values())

    def record(self, name: str) -> Path:
        """The record of the video named `name` (features: their sidecar)."""
        if not self.runs_model:
            return feature_files(self.out, name)[1]
        return record_file(self.out, name, _KINDS[self.task])

    def is_finished(self, name: str, identity: InputIdentity, settings: dict[str, Any]) -> bool:
        """Whether the outputs of the video named `name` were made from this very input with `settings`."""
        expected = [path.name for path in self.outputs(name)]
        return output_is_finished(self.record(name), identity, settings, expected)

    def write(
        self,
        result: SegmentationResult | AnticipationResult,
        name: str,
        identity: InputIdentity,
        settings: dict[str, Any],
    ) -> list[Path]:
        """Write a model result's files and then their record, each atomically under its final name."""
        return save_result(result, self.out, name, self.format, self.plot, identity, settings, self.html)
