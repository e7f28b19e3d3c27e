"""The on-disk cache of the seeded extractor weights: used when verified, redrawn when not, never required."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch

from actfusion_sdk.cache import CACHE_DIR_ENV
from actfusion_sdk.features import seeded
from actfusion_sdk.features.seeded import SEED0_FINGERPRINT, state_dict_fingerprint

# The real draw, once per seed per session (the tests below replace the module's to count calls).
real_draw = functools.cache(seeded.draw_seeded_i3d_state_dict)


@pytest.fixture
def draws(monkeypatch, tmp_path: Path) -> list[int]:
    """A fresh cache directory; drawing is served from the session's draw and counted."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    calls: list[int] = []

    def draw(seed: int) -> dict[str, torch.Tensor]:
        calls.append(seed)
        return dict(real_draw(seed))

    monkeypatch.setattr(seeded, "draw_seeded_i3d_state_dict", draw)
    return calls


def cache_file(seed: int = 0) -> Path:
    return Path(os.environ[CACHE_DIR_ENV]) / f"i3d_r50_seeded_{seed}.safetensors"


def test_second_call_reads_the_cache(draws: list[int]) -> None:
    first = seeded.seeded_i3d_state_dict(0)
    assert cache_file().is_file()
    second = seeded.seeded_i3d_state_dict(0)
    assert draws == [0]
    assert list(second) == list(first)  # the draw order, which the fingerprint depends on
    assert state_dict_fingerprint(second) == SEED0_FINGERPRINT


def test_corrupted_cache_file_is_redrawn_and_replaced(draws: list[int]) -> None:
    seeded.seeded_i3d_state_dict(0)
    data = bytearray(cache_file().read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside the last tensor
    cache_file().write_bytes(bytes(data))
    assert state_dict_fingerprint(seeded.seeded_i3d_state_dict(0)) == SEED0_FINGERPRINT
    assert draws == [0, 0]
    seeded.seeded_i3d_state_dict(0)  # the redraw rewrote a good file
    assert draws == [0, 0]


@pytest.mark.parametrize("content", [b"", b"not a safetensors file", b"\xff" * 64])
def test_unreadable_cache_file_is_redrawn(draws: list[int], content: bytes) -> None:
    cache_file().parent.mkdir(parents=True)
    cache_file().write_bytes(content)
    assert state_dict_fingerprint(seeded.seeded_i3d_state_dict(0)) == SEED0_FINGERPRINT
    assert draws == [0]


def test_file_of_another_seed_is_not_used(draws: list[int]) -> None:
    seeded.seeded_i3d_state_dict(0)
    cache_file(0).rename(cache_file(1))
    assert state_dict_fingerprint(seeded.seeded_i3d_state_dict(1)) == state_dict_fingerprint(real_draw(1))
    assert draws == [0, 1]


def test_unwritable_cache_dir_still_works(draws: list[int], monkeypatch, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a cache directory cannot be made under a file")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocker / "cache"))
    for _ in range(2):
        assert state_dict_fingerprint(seeded.seeded_i3d_state_dict(0)) == SEED0_FINGERPRINT
    assert draws == [0, 0]


def test_empty_cache_dir_setting_disables_the_cache(draws: list[int], monkeypatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, "")
    seeded.seeded_i3d_state_dict(0)
    seeded.seeded_i3d_state_dict(0)
    assert draws == [0, 0]
