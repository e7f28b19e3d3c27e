"""The inputs of a batch: video files, folders of videos, glob patterns and list files (one path a line)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InputError
from ..features.extract import find_videos

LIST_SUFFIXES = frozenset({".txt", ".lst", ".list"})
_GLOB_CHARACTERS = frozenset("*?[")


def find_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Every video named by `inputs`, in order, without repeats: one file named twice (by an absolute and a
    relative path, through a symbolic or hard link, or with ``..`` components) is one video, the first naming
    kept.

    A folder contributes its videos (by suffix, recursively), a pattern with * ? [ its matches, a
    .txt/.lst/.list file one path per line (relative to the list's folder; blank lines and # comments
    ignored), anything else itself (a missing file then fails as that video's failure, not the batch's).
    """
    expanded: list[str | Path] = []
    for item in map(str, inputs):
        path = Path(item)
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            expanded += _read_list(path)
        elif not path.exists() and _GLOB_CHARACTERS & set(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"the pattern {item!r} matches no file")
            expanded += matches
        else:
            expanded.append(path)
    unique: dict[object, Path] = {}
    for video in find_videos(expanded):
        unique.setdefault(_file_key(video), video)
    return list(unique.values())


def _file_key(path: Path) -> object:
    """What makes two paths one file: its device and inode, or its real path where it cannot be looked at
    (missing, a broken link)."""
    try:
        status = path.stat()
    except (OSError, ValueError):
        return os.path.realpath(path)
    return status.st_dev, status.st_ino


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the list of videos {str(path)!r}: {err}") from err
    entries = (line.strip() for line in lines)
    return [path.parent / entry for entry in entries if entry and not entry.startswith("#")]
