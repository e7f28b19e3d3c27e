"""Measuring tools shared by the benchmark scripts: wall-clock timing, the matmul rate, peak RSS.

Peak memory of a CPU run is read in a fresh child process (the script runs itself again with a hidden
option, see `run_child` / `reply_to_parent`), so one configuration's peak never includes another's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """The result of one call of `fn` and its wall-clock seconds."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def repeated_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of each of `repeats` calls after `warmup` untimed ones (allocation, caches, compiling)."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[1] for _ in range(repeats)]


def best_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """The fastest of `repeated_seconds`: the reading least disturbed by other load on the machine."""
    return min(repeated_seconds(fn, repeats, warmup))


def matmul_gflops(size: int = 2048, repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a square CPU matmul (2 FLOPs per multiply-add): the machine's practical compute limit."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats) / 1e9


@dataclass
class PeakRss:
    """Resident memory of this process over a `peak_rss` block, in bytes."""

    before: int = 0
    peak: int = 0

    @property
    def growth(self) -> int:
        """Peak above the resident memory at the start of the block."""
        return max(self.peak - self.before, 0)


@contextmanager
def peak_rss() -> Iterator[PeakRss]:
    """Measure the resident-set high-water mark over the block (Linux).

    Resets VmHWM through /proc/self/clear_refs: ru_maxrss cannot be reset, and a child started by
    subprocess carries its parent's peak in it (Linux keeps it across exec).
    """
    Path("/proc/self/clear_refs").write_text("5")
    reading = PeakRss(before=_status_bytes("VmRSS"))
    yield reading
    reading.peak = _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    """A memory line of /proc/self/status (VmRSS: resident now, VmHWM: resident high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status (Linux only)")


def run_child(script: str | Path, arguments: Sequence[str]) -> dict[str, Any]:
    """Run `script` with `arguments` in a fresh Python process; its `reply_to_parent` values."""
    command = [sys.executable, str(script), *arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def reply_to_parent(values: dict[str, Any]) -> None:
    """In a child started by `run_child`: hand `values` back (the last line of stdout, as JSON)."""
    print(json.dumps(values), flush=True)


def emit(lines: list[str], name: str) -> None:
    """Print report lines and append them to $OUT/<name> when OUT is set (the device check's tables)."""
    text = "\n".join(lines)
    print(text, flush=True)
    if os.environ.get("OUT"):
        with open(Path(os.environ["OUT"]) / name, "a") as handle:
            handle.write(text + "\n")
