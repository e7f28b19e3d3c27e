"""Per-input outputs in a shared folder: which input made them, whether they are finished, how they are named,
and the failures report that several runs into one folder share.

An output's JSON record holds the identity of its input (path, size, mtime, content fingerprint), the settings
that made it and the sha256 of each file it consists of; it is finished only when all of these still match.
Outputs are written before their record and the record last (`write_outputs`). Names and the failures report
live under a lock in ``<out>/.actfusion/`` so concurrent runs into one folder stay consistent.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import ConfigError, InputError
from .fileio import (
    FOLDER,
    REGULAR_FILE,
    atomic_write,
    file_kind,
    fit_name,
    name_max,
    publish_staged,
    sha256_file,
    staged_files,
    unreadable_reason,
)

log = logging.getLogger(__name__)

FINGERPRINT_SPAN = 1 << 20  # the first and last MiB: fast on large files, sensitive to re-encodes
STATE_DIR = ".actfusion"
NAMES_FILE = "names.json"
FAILURES_FILE = "failures.json"
# Room kept after an output name for the longest suffix any command adds (".anticipation.activitynet.json" is
# 30 bytes), so that every output's file name fits the file system's limit.
SUFFIX_BYTES = 32

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
    identity: InputIdentity, settings: Mapping[str, Any], digests: Mapping[str, str]
) -> dict[str, Any]:
    """The fields an output's JSON record needs for `output_is_finished` (digests: the sha256 of each output
    file, by its name beside the record)."""
    return {"input": identity.to_dict(), "settings": dict(settings), "outputs": dict(sorted(digests.items()))}


def output_is_finished(
    record: Path, identity: InputIdentity, settings: Mapping[str, Any], expected: Iterable[str] = ()
) -> bool:
    """True when `record` names this very input and these settings, lists the `expected` output file names
    (if any are given), and every output file it lists exists with the sha256 it records."""
    if file_kind(record) != REGULAR_FILE:  # e.g. a FIFO put in its place would block the read
        return False
    try:
        data = json.loads(Path(record).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("input") != identity.to_dict():
        return False
    outputs = data.get("outputs")
    if data.get("settings") != dict(settings) or not isinstance(outputs, dict) or not outputs:
        return False
    if not set(expected) <= set(outputs):
        return False
    return all(_has_digest(Path(record).parent / str(name), digest) for name, digest in outputs.items())


def _has_digest(path: Path, digest: object) -> bool:
    try:
        return path.is_file() and sha256_file(path) == digest
    except OSError:
        return False


def write_outputs(
    record: Path,
    writers: Mapping[Path, Callable[[Path], object]],
    record_fields: Callable[[dict[str, str]], Mapping[str, Any]],
) -> list[Path]:
    """Write a set of output files and then their record, so that no interruption or failure leaves an output
    that its record calls finished.

    1. Each output is written by ``writers[path](temporary)`` to a temporary sibling, and hashed. A failure
       here (a full disk, an interrupt) removes the temporaries and leaves the folder as it was.
    2. Then the old record is removed, each output renamed onto its name, and the record
       (``record_fields(digests)``, digests: each output's sha256 by file name) written last, atomically. A
       failure here removes the outputs renamed so far, so no output is left without its record.
    """
    paths = list(writers)
    if any(path.parent != record.parent for path in paths):  # the record names its outputs by file name
        raise ValueError(f"every output must lie beside its record {record}: {[str(p) for p in paths]}")
    published: list[Path] = []
    with staged_files(paths) as temporaries:
        for path, temporary in zip(paths, temporaries, strict=True):
            writers[path](temporary)
        digests = {
            path.name: sha256_file(temporary) for path, temporary in zip(paths, temporaries, strict=True)
        }
        record.unlink(missing_ok=True)
        try:
            for path, temporary in zip(paths, temporaries, strict=True):
                publish_staged(temporary, path)
                published.append(path)
            with atomic_write(record, "w") as handle:
                json.dump(dict(record_fields(digests)), handle, indent=1)
        except BaseException:
            for path in published:
                path.unlink(missing_ok=True)
            raise
    return paths


def prepare_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` if needed and prove it writable (a ConfigError otherwise), before any work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output folder '{path}' is a file; remove or rename it, or give another folder")
    expect(path / FAILURES_FILE, REGULAR_FILE, "the failures report")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"output folder '{path}' is not writable: {err.strerror or err}") from err
    return path


def expect(path: Path, kind: str, role: str) -> None:
    """A ConfigError when something other than `kind` (REGULAR_FILE or FOLDER) is at `path`, which the SDK
    keeps as `role` (nothing there is fine): checked before it is opened, so a FIFO there cannot block."""
    found = file_kind(path)
    if found is not None and found != kind:
        raise ConfigError(f"'{path}' is {found}, but it must be {role}; remove or rename it")


@contextmanager
def folder_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the exclusive lock of `out_dir` (a POSIX advisory lock); yields its state folder.

    A state folder or lock that is not what the SDK made (a file, a folder, a FIFO) is a ConfigError."""
    state = Path(out_dir) / STATE_DIR
    lock = state / "lock"
    expect(state, FOLDER, "the folder where the SDK keeps this output folder's state (name claims, lock)")
    expect(lock, REGULAR_FILE, "the output folder's lock file")
    try:
        state.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a")  # noqa: SIM115 - held open for the lock's lifetime
    except OSError as err:
        raise ConfigError(f"cannot use the output folder's lock '{lock}': {err.strerror or err}") from err
    with handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield state
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def claim_output_names(out_dir: Path, inputs: Sequence[Path]) -> dict[Path, str]:
    """The output name (file name without suffix) of each input in `out_dir`.

    A path keeps the name it once claimed (``<out>/.actfusion/names.json``, name -> absolute path). A new path
    takes the first free name of: its stem, then ``<stem>-<h>`` with h the first 8, 16, 32, 64 hex digits of
    the sha256 of its absolute path, then ``<stem>-<h64>-2``, ``-3``, ... A name is free when no other path
    has claimed it and no file in the folder (or its ``features/``) starts with ``<name>.`` (ignoring case
    and Unicode normalisation), so a disambiguated name never lands on a real stem's outputs, claimed or not.
    Stems are cut (keeping their start) so that every output's file name fits the file system's limit.
    """
    out_dir = Path(out_dir)
    budget = name_max(out_dir) - SUFFIX_BYTES
    with folder_lock(out_dir) as state:
        registry = state / NAMES_FILE
        owners = _read_registry(registry)
        names_of = {path: name for name, path in owners.items()}
        # Compared as a case-insensitive file system (macOS, Windows) would: "Clip" and "clip" are one file.
        used = {_name_key(name) for name in owners} | _used_names(out_dir) | _used_names(out_dir / "features")
        names: dict[Path, str] = {}
        for item in inputs:
            absolute = os.path.abspath(item)
            if absolute not in names_of:
                name = next(
                    name
                    for name in _candidate_names(Path(item).stem, absolute, budget)
                    if _name_key(name) not in used
                )
                owners[name], names_of[absolute] = absolute, name
                used.add(_name_key(name))
            names[item] = names_of[absolute]
        try:
            with atomic_write(registry, "w") as handle:
                json.dump(owners, handle, indent=1, sort_keys=True)
        except OSError as err:
            raise ConfigError(f"cannot write the name claims '{registry}': {err.strerror or err}") from err
    return names


def _candidate_names(stem: str, absolute: str, budget: int) -> Iterator[str]:
    """The names a new path may take, in order of preference (see `claim_output_names`), each within
    `budget` bytes."""
    if len(os.fsencode(stem)) <= budget:
        yield stem
    digest = hashlib.sha256(absolute.encode(errors="surrogateescape")).hexdigest()
    hashed = (f"-{digest[:length]}" for length in (8, 16, 32, 64))
    numbered = (f"-{digest}-{count}" for count in itertools.count(2))
    for tail in itertools.chain(hashed, numbered):
        yield fit_name(stem, budget - len(tail), keep="start") + tail


def _read_registry(registry: Path) -> dict[str, str]:
    """The name claims in `registry` ({} when there are none yet). One that is not a JSON object of
    name -> path (garbage, another program's file) is replaced: a warning says so, and no name is given
    twice, since names whose files are in the folder stay taken. One that cannot be read is a ConfigError."""
    expect(registry, REGULAR_FILE, "the file of output name claims")
    try:
        text = registry.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise ConfigError(f"cannot read the output name claims '{registry}': {err.strerror or err}") from err
    try:
        owners = json.loads(text)
    except ValueError:  # not JSON, or not UTF-8
        owners = None
    if isinstance(owners, dict) and all(isinstance(v, str) for v in owners.values()):
        return owners
    log.warning(
        "'%s' is not a table of output name claims (name -> video path); starting a new one (names that "
        "files in the folder already use stay taken)",
        registry,
    )
    return {}


def _used_names(folder: Path) -> set[str]:
    """Every name that a file in `folder` could be an output of: each part of its file name before a dot
    (``a.b.segmentation.json`` -> a, a.b, a.b.segmentation); empty when `folder` cannot be listed."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return set()
    return {
        _name_key(entry[:index])
        for entry in entries
        for index, char in enumerate(entry)
        if char == "." and index
    }


def _name_key(name: str) -> str:
    """A name as a case-insensitive, normalising file system sees it: names with one key are one file."""
    return unicodedata.normalize("NFC", name).casefold()


@dataclass(frozen=True)
class InputFailure:
    """One input that produced no output, and why (`error` is kept to one line: each failure is one line on
    stderr and in summaries, whatever an exception's message holds)."""

    video: Path
    error: str

    def __post_init__(self) -> None:
        lines = (line.strip() for line in self.error.splitlines())
        object.__setattr__(self, "error", " ".join(line for line in lines if line))

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
    expect(report, REGULAR_FILE, "the failures report")
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
            if _number(entry.get("reported")) >= run.started
            and os.path.abspath(str(entry.get("video", ""))) not in settled
        ]
        reported = time.time()
        kept += [{**failure.to_dict(), "run": run.id, "reported": reported} for failure in failed]
        try:
            if not kept:
                report.unlink(missing_ok=True)
                return None
            with atomic_write(report, "w") as handle:
                json.dump(sorted(kept, key=lambda e: str(e.get("video"))), handle, indent=1)
        except OSError as err:
            raise ConfigError(f"cannot update the failures report '{report}': {err.strerror or err}") from err
    return report


def _number(value: object) -> float:
    """A report entry's time stamp (0 for anything that is not a number, from an edited or foreign file)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
