"""File helpers shared by every stage: content hashes and atomic writes (readers never see a torn file)."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Write `path` through a temporary file in the same directory, renamed into place on success.

    Text modes write UTF-8 with no newline translation. The parent directory is created if needed, and the
    file gets the usual permissions (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    try:
        with open(descriptor, mode, **text) as handle:
            yield handle
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unreadable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why `path` cannot be read as a file, as the end of a sentence about it (None when it can be)."""
    try:
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
        return f"cannot be opened: {err.strerror or err}"
