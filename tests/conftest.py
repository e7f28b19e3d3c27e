"""Shared fixtures. The interpreter flag must be set before triton is first imported."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from actfusion_sdk.cache import CACHE_DIR_ENV  # noqa: E402
from actfusion_sdk.features import i3d  # noqa: E402
from actfusion_sdk.kernels import cpu  # noqa: E402

from .helpers import REPO, seeded_i3d  # noqa: E402

TESTVECTORS = Path(os.environ.get("ACTFUSION_TESTVECTORS", REPO / "tests" / "data" / "official"))


_CACHE_ROOT: dict[str, str | None] = {}


def pytest_configure(config) -> None:
    """The SDK's cache root (the built CPU kernel, seeded extractor weights, feature caches) is a per-session
    directory, never the user's: the run exercises the real kernel build, and test subprocesses inherit it."""
    _CACHE_ROOT["previous"] = os.environ.get(CACHE_DIR_ENV)
    _CACHE_ROOT["session"] = tempfile.mkdtemp(prefix="actfusion-cache-")
    os.environ[CACHE_DIR_ENV] = _CACHE_ROOT["session"]


def pytest_unconfigure(config) -> None:
    if _CACHE_ROOT.get("session") is None:
        return
    shutil.rmtree(_CACHE_ROOT["session"], ignore_errors=True)
    if _CACHE_ROOT["previous"] is None:
        os.environ.pop(CACHE_DIR_ENV, None)
    else:
        os.environ[CACHE_DIR_ENV] = _CACHE_ROOT["previous"]


@pytest.fixture(scope="module")
def kernel() -> None:
    """The fused CPU kernel is built (into the session's cache). Where it cannot be built here (no compiler,
    a compiler that rejects its flags, another platform), the tests that need it skip with the reason;
    with ACTFUSION_REQUIRE_KERNEL=1 (CI) they fail instead."""
    reason = cpu.unavailable_reason()
    if reason is not None and os.environ.get("ACTFUSION_REQUIRE_KERNEL") != "1":
        pytest.skip(f"the CPU kernel cannot be built here: {reason}")
    assert reason is None, reason


@pytest.fixture(scope="session")
def testvectors() -> Path:
    """Directory of the official implementation's outputs (tests/data/official, or $ACTFUSION_TESTVECTORS)."""
    if not (TESTVECTORS / "model_50salads.pt").is_file():
        raise FileNotFoundError(
            f"official test vectors not found at {TESTVECTORS}; set ACTFUSION_TESTVECTORS to the directory"
        )
    return TESTVECTORS


@pytest.fixture(scope="module")
def single_thread():
    """Tiny tensors: one torch thread avoids oversubscribing the shared CI cores. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fast_seeded_weights(monkeypatch):
    """The extractor draws its seeded weights from the session cache instead of anew. Modules opt in with
    `pytestmark = pytest.mark.usefixtures("fast_seeded_weights")`."""
    monkeypatch.setattr(i3d, "seeded_i3d_state_dict", seeded_i3d)
