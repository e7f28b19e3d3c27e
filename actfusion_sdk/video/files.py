"""Which files are taken for videos when a folder is given (no decoding library needed to ask)."""

from __future__ import annotations

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
)
