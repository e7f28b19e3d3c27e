"""What a batch did: per-video records, skipped and failed videos, and progress on stderr while it runs."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..outputs import InputFailure


@dataclass(frozen=True)
class VideoRecord:
    """One video done by this run: its outputs, whether a retried worker found them already written, and
    the Ray node ids of the workers that made its features and ran the model ("" where no such stage)."""

    video: Path
    outputs: tuple[Path, ...]
    present: bool
    feature_node: str
    model_node: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VideoRecord:
        return cls(
            Path(row["video"]),
            tuple(map(Path, row["outputs"])),
            bool(row["present"]),
            row["feature_node"],
            row["model_node"],
        )


@dataclass(frozen=True)
class BatchReport:
    """The outcome of `batch.run`: every input is in exactly one of `completed`, `skipped`, `failed`."""

    total: int
    completed: tuple[VideoRecord, ...]
    skipped: tuple[Path, ...]
    failed: tuple[InputFailure, ...]
    startup_seconds: float  # connecting to (or starting) Ray, 0 when there was nothing to do
    seconds: float  # the whole run, start-up included
    failures_file: Path | None = None  # OUT/failures.json while it lists any failure (of this or another run)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def nodes(self) -> frozenset[str]:
        """The Ray node ids that did any work."""
        return frozenset(
            node for record in self.completed for node in (record.feature_node, record.model_node) if node
        )

    def videos_per_minute(self) -> float:
        work = self.seconds - self.startup_seconds
        return 60.0 * len(self.completed) / work if work > 0 else 0.0

    def summary(self) -> str:
        lines = [
            f"{len(self.completed)} done, {len(self.skipped)} skipped, {len(self.failed)} failed of "
            f"{self.total} in {self.seconds:.1f} s (Ray start-up {self.startup_seconds:.1f} s, "
            f"{self.videos_per_minute():.1f} videos/min, {len(self.nodes)} node(s))"
        ]
        if self.nodes:
            lines.append(f"  nodes: {', '.join(sorted(self.nodes))}")
        lines += [f"  FAILED {failure.video}: {failure.error}" for failure in self.failed]
        return "\n".join(lines)


class Progress:
    """One line on stderr per finished video: done / failed / total and throughput since the first."""

    def __init__(self, total: int, skipped: int, enabled: bool) -> None:
        self.total, self.skipped, self.enabled = total, skipped, enabled
        self.done = self.failed = 0
        self.started: float | None = None

    def start(self) -> None:
        self.started = time.perf_counter()

    def update(self, video: str, error: str) -> None:
        if error:
            self.failed += 1
        else:
            self.done += 1
        if not self.enabled:
            return
        elapsed = time.perf_counter() - (self.started or time.perf_counter())
        rate = 60.0 * (self.done + self.failed) / elapsed if elapsed > 0 else 0.0
        status = "FAILED" if error else "done"
        print(
            f"batch: {self.done} done, {self.failed} failed, {self.skipped} skipped of {self.total} "
            f"({rate:.1f} videos/min) - {status} {Path(video).name}",
            file=sys.stderr,
            flush=True,
        )
