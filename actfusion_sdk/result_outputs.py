"""A video's result files in an output folder (`segment`/`anticipate --out`, `batch`): their names, the
record that proves them finished, and writing both (`outputs.write_outputs`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .outputs import InputIdentity, output_record, write_outputs
from .results import AnticipationResult, SegmentationResult

if TYPE_CHECKING:
    from .predictor import AnticipationWindow

Result = TypeVar("Result", SegmentationResult, AnticipationResult)

_SUFFIXES = {
    "json": ".json",
    "csv": ".csv",
    "mstcn": ".txt",
    "activitynet": ".activitynet.json",
    "eaf": ".eaf",
    "labelstudio": ".labelstudio.json",
}
RECORD_SUFFIX = ".record.json"  # beside each video's outputs: its input and settings (`output_is_finished`)


def result_settings(
    command: str, seed: int, fmt: str | None, model_sha256: str, window: AnticipationWindow | None = None
) -> dict[str, Any]:
    """What decides a segment/anticipate output besides its input: the settings its record holds."""
    settings: dict[str, Any] = {"command": command, "seed": seed, "format": fmt}
    if window is not None:
        settings.update(asdict(window))
    return {**settings, "model": model_sha256}


def result_files(
    destination: Path, name: str, kind: str, fmt: str | None, plot: bool, html: bool = False
) -> dict[str, Path]:
    """The files of the result named `name`: ``<name>.<kind><suffix>`` for an export `fmt`,
    ``<name>.<kind>.png`` for a timeline and ``<name>.<kind>.html`` for a viewer page, keyed by their format
    ("png" for the timeline, "html" for the page)."""
    files = {} if fmt is None else {fmt: destination / f"{name}.{kind}{_SUFFIXES[fmt]}"}
    if plot:
        files["png"] = destination / f"{name}.{kind}.png"
    if html:
        files["html"] = destination / f"{name}.{kind}.html"
    return files


def record_file(destination: Path, name: str, kind: str) -> Path:
    """The record of the result named `name`: its input and settings (see `output_is_finished`)."""
    return destination / f"{name}.{kind}{RECORD_SUFFIX}"


def save_result(
    result: Result,
    destination: Path,
    name: str,
    fmt: str | None,
    plot: bool,
    identity: InputIdentity,
    settings: dict[str, Any],
    html: bool = False,
    truth: Sequence[str] | None = None,
) -> list[Path]:
    """Write `result`'s files (`result_files`) and then their record (`write_outputs`: a record always means
    these very files, finished); returns the files written (none, and no record, without export, plot or
    page). `truth`: ground-truth labels per frame, drawn under the prediction in the timeline and the page."""
    files = result_files(destination, name, result.kind, fmt, plot, html)
    if not files:
        return []
    writers = {path: functools.partial(result.save, fmt=file_format) for file_format, path in files.items()}
    if truth is not None and "png" in files:
        writers[files["png"]] = functools.partial(result.plot, ground_truth=truth)
    if truth is not None and "html" in files:
        writers[files["html"]] = functools.partial(result.to_html, truth=truth)
    record = record_file(destination, name, result.kind)
    return write_outputs(record, writers, lambda digests: output_record(identity, settings, digests))
