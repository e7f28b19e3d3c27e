"""Atomic writes and file hashes shared by every stage."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from actfusion_sdk.fileio import atomic_write, sha256_file


def test_atomic_write_creates_parents_and_uses_umask_permissions(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "new" / "card.json"
        with atomic_write(target, "w") as stream:
            stream.write("ünïcode\n")
    finally:
        os.umask(old)
    assert target.read_bytes() == "ünïcode\n".encode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["card.json"]


def test_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as stream:
        stream.write(b"partial")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_sha256_file_matches_hashlib(tmp_path) -> None:
    path = tmp_path / "blob"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
