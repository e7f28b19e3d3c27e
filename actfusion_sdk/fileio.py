"""File helpers shared by every stage: content hashes, atomic writes (readers never see a torn file) and
temporary names that fit any file-system name limit."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

DEFAULT_NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def name_max(folder: str | os.PathLike[str]) -> int:
    """The longest file name (in bytes) that `folder`'s file system allows (255 where it does not say)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), or the folder does not exist yet
        return DEFAULT_NAME_MAX


def fit_name(name: str, limit: int, keep: str = "end") -> str:
    """`name` cut to at most `limit` bytes (in the file system's encoding), keeping its ``"end"`` or its
    ``"start"``, never splitting a UTF-8 character."""
    encoded, limit = os.fsencode(name), max(limit, 0)
    if len(encoded) <= limit:
        return name
    cut = encoded[len(encoded) - limit :] if keep == "end" else encoded[:limit]
    for drop in range(4):  # a UTF-8 character is at most 4 bytes: drop the part of one at the cut
        candidate = cut[drop:] if keep == "end" else cut[: len(cut) - drop]
        try:
            return candidate.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return os.fsdecode(cut)  # not UTF-8 at all: bytes as they are


def _temporary(path: Path) -> tuple[int, Path]:
    """Create a new empty temporary sibling of `path`: ``.<8 random characters>.<name>``, the name cut from
    the front so that the whole fits the folder's name limit (the suffix is kept, so format checks by suffix
    still see it); the leading dot hides it from globs and listings."""
    tail = fit_name(path.name, name_max(path.parent) - len(".12345678."))
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=f".{tail}")
    return descriptor, Path(temporary)


def _publish(temporary: Path, path: Path) -> None:
    """Give the temporary file the usual permissions (0666 less the umask, not mkstemp's private 0600) and
    rename it onto `path` in one step."""
    os.chmod(temporary, 0o666 & ~_umask())
    os.replace(temporary, path)


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Write `path` through a temporary file in the same directory, renamed into place on success.

    Text modes write UTF-8 with no newline translation. The parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = _temporary(path)
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with open(descriptor, mode, **text) as handle:
            yield handle
        _publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextmanager
def staged_files(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """A temporary sibling for each of `paths` (same suffix), for the caller to write and then publish with
    `publish_staged`; every temporary still there when the block ends (an error, an interrupt, or files
    not published) is removed, so a failed set of writes leaves the targets untouched."""
    temporaries: list[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = _temporary(path)
            os.close(descriptor)
            temporaries.append(temporary)
        yield temporaries
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


def publish_staged(temporary: Path, path: Path) -> None:
    """Rename a file written through `staged_files` onto its final `path` in one step."""
    _publish(temporary, path)


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


REGULAR_FILE = "a regular file"
FOLDER = "a folder"
_SPECIAL_FILES = (
    (
        stat.S_ISFIFO,
        "a named pipe (FIFO)",
        "save the stream to a file first, or watch it with `actfusion live`",
    ),
    (stat.S_ISCHR, "a character device", "for a camera use `actfusion live`; for a recording give its file"),
    (stat.S_ISBLK, "a block device", "give a video file on it instead"),
    (stat.S_ISSOCK, "a socket", "save the stream to a file first, or watch it with `actfusion live`"),
)


def special_file_reason(mode: int) -> str | None:
    """Why a file of this `st_mode` is not a regular file that can be read from start to end (None if it is):
    reading a FIFO, device or socket would block or consume data that no second read sees."""
    for is_kind, kind, instead in _SPECIAL_FILES:
        if is_kind(mode):
            return f"is {kind}, not a regular file; {instead}"
    return None


def file_kind(path: str | os.PathLike[str]) -> str | None:
    """What is at `path` (links followed), in words: REGULAR_FILE, FOLDER, "a named pipe (FIFO)", "a socket",
    ...; None when nothing is there (or it cannot be looked at). Never opens it, so it never blocks."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return REGULAR_FILE
    if stat.S_ISDIR(mode):
        return FOLDER
    return next((kind for is_kind, kind, _ in _SPECIAL_FILES if is_kind(mode)), "a special file")


def unreadable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be read as a regular file, as the end of a sentence about it (None when it can be).

    The kind of file is checked before it is opened, so a FIFO or device is answered at once, never waited on.
    """
    try:
        status = os.stat(path)
        if stat.S_ISDIR(status.st_mode):
            return "is a directory, not a file"
        special = special_file_reason(status.st_mode)
        if special is not None:
            return special
        with open(path, "rb"):
            return None
    except FileNotFoundError:
        return "does not exist; check the path" if not os.path.islink(path) else "is a broken symbolic link"
    except IsADirectoryError:
        return "is a directory, not a file"
    except PermissionError:
        return "cannot be read (permission denied); check its permissions"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop; fix or remove the link"
        if err.errno == errno.ENAMETOOLONG:
            return "has a name too long for the file system; rename it"
        return f"cannot be opened: {err.strerror or err}"
