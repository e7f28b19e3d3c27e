"""Per-input outputs in a shared folder: which input made them, whether they are finished, how they are named,
and the failures report that several runs into one folder share.

An output's JSON record holds the identity of its input (path, size, mtime, content fingerprint), the settings
that made it and the files it consists of; it is finished only when all of these still match. Names and the
failures report live under a lock in ``<out>/.actfusion/`` so concurrent runs into one folder stay consistent.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError
from .fileio import atomic_write, unreadable_reason

FINGERPRINT_SPAN = 1 << 20  # the first and last MiB: fast on large files, sensitive to re-encodes
STATE_DIR = ".actfusion"
FAILURES_FILE = "failures.json"

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent runs into one folder are not supported there
    fcntl = None


@dataclass(frozen=True)
class InputIdentity:
    """What an output was made from: the absolute path, its size and mtime, and a content fingerprint."""

    path: str
    size: int
    mtime_ns: int
    fingerprint: str

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> InputIdentity:
        """The identity of the file at `path` now (sha256 of its size, first MiB and last MiB)."""
        absolute = os.path.abspath(path)
        reason = unreadable_reason(absolute)
        if reason is not None:
            raise InputError(f"'{path}' {reason}")
        with open(absolute, "rb") as stream:
            status = os.fstat(stream.fileno())
            digest = hashlib.sha256(str(status.st_size).encode())
            digest.update(stream.read(FINGERPRINT_SPAN))
            if status.st_size > FINGERPRINT_SPAN:
                stream.seek(max(FINGERPRINT_SPAN, status.st_size - FINGERPRINT_SPAN))
                digest.update(stream.read(FINGERPRINT_SPAN))
        return cls(absolute, status.st_size, status.st_mtime_ns, digest.hexdigest())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def output_record(
    identity: InputIdentity, settings: Mapping[str, Any], outputs: Iterable[str]
) -> dict[str, Any]:
    """The fields an output's JSON record needs for `output_is_finished` (outputs: file names beside it)."""
    return {"input": identity.to_dict(), "settings": dict(settings), "outputs": sorted(outputs)}


def output_is_finished(
    record: Path, identity: InputIdentity, settings: Mapping[str, Any], expected: Iterable[str] = ()
) -> bool:
    """True when `record` names this very input and these settings, lists the `expected` output file names
    (if any are given), and every output file it lists exists."""
    try:
        data = json.loads(Path(record).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("input") != identity.to_dict():
        return False
    if data.get("settings") != dict(settings) or not data.get("outputs"):
        return False
    if not set(expected) <= set(data["outputs"]):
        return False
    return all((Path(record).parent / name).is_file() for name in data["outputs"])


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` if needed and prove it writable (a ConfigError otherwise), before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output folder '{path}' is a file; give a folder for --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"output folder '{path}' is not writable: {err.strerror or err}") from err
    return path


@contextmanager
def folder_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the exclusive lock of `out_dir` (a POSIX advisory lock); yields its state folder."""
    state = Path(out_dir) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "lock", "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield state
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def claim_output_names(out_dir: Path, inputs: Sequence[Path]) -> dict[Path, str]:
    """The output name (file name without suffix) of each input in `out_dir`.

    An input is named after its stem; when that stem is already claimed in this folder by another input path
    (earlier in this run or in an earlier run), it is named ``<stem>-<8 hex digits>``, the start of the sha256
    of its absolute path. A path keeps its name for good (kept in ``<out>/.actfusion/names.json``).
    """
    with folder_lock(out_dir) as state:
        registry = state / "names.json"
        try:
            owners: dict[str, str] = json.loads(registry.read_text())
        except (OSError, ValueError):
            owners = {}
        names_of = {path: name for name, path in owners.items()}
        names: dict[Path, str] = {}
        for item in inputs:
            absolute = os.path.abspath(item)
            if absolute not in names_of:
                stem = Path(item).stem
                suffix = hashlib.sha256(absolute.encode()).hexdigest()[:8]
                name = stem if stem not in owners else f"{stem}-{suffix}"
                owners[name], names_of[absolute] = absolute, name
            names[item] = names_of[absolute]
        with atomic_write(registry, "w") as handle:
            json.dump(owners, handle, indent=1, sort_keys=True)
    return names


@dataclass(frozen=True)
class InputFailure:
    """One input that produced no output, and why."""

    video: Path
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"video": str(self.video), "error": self.error}


@dataclass(frozen=True)
class Run:
    """One command's run into an output folder: a readable id and its start time (seconds since the epoch)."""

    id: str
    started: float

    @classmethod
    def begin(cls) -> Run:
        now = time.time()
        return cls(f"{datetime.fromtimestamp(now, timezone.utc):%Y%m%dT%H%M%SZ}-{os.getpid()}", now)


def record_failures(
    out_dir: Path, run: Run, failed: Sequence[InputFailure], finished: Iterable[Path]
) -> Path | None:
    """Merge one run's outcome into ``<out>/failures.json`` under the folder lock; returns it while it exists.

    The report lists this run's failures and those of the runs that overlapped it (reported after it began),
    less the inputs this run finished; failures of runs that ended before this one began are superseded.
    So a concurrent run never drops another's failures, and a later re-run starts a fresh report.
    """
    report = Path(out_dir) / FAILURES_FILE
    with folder_lock(out_dir):
        try:
            entries = json.loads(report.read_text())
        except (OSError, ValueError):
            entries = []
        entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        settled = {os.path.abspath(path) for path in finished} | {os.path.abspath(f.video) for f in failed}
        kept = [
            entry
            for entry in entries
            if entry.get("reported", 0) >= run.started
            and os.path.abspath(entry.get("video", "")) not in settled
        ]
        reported = time.time()
        kept += [{**failure.to_dict(), "run": run.id, "reported": reported} for failure in failed]
        if not kept:
            report.unlink(missing_ok=True)
            return None
        with atomic_write(report, "w") as handle:
            json.dump(sorted(kept, key=lambda e: e["video"]), handle, indent=1)
    return report
