"""Shared fixtures. The interpreter flag must be set before triton is first imported."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from actfusion_sdk.features import i3d  # noqa: E402
from actfusion_sdk.kernels import cpu  # noqa: E402

from .helpers import REPO, seeded_i3d  # noqa: E402

TESTVECTORS = Path(os.environ.get("ACTFUSION_TESTVECTORS", REPO / "tests" / "data" / "official"))


_KERNEL_CACHE: dict[str, str | None] = {}


def pytest_configure(config) -> None:
    """The fused CPU kernel (actfusion_sdk.kernels.cpu) is built afresh into a per-session directory, never
    the user's cache: the run exercises the real build, and test subprocesses inherit the directory."""
    _KERNEL_CACHE["previous"] = os.environ.get("ACTFUSION_KERNEL_CACHE")
    _KERNEL_CACHE["session"] = tempfile.mkdtemp(prefix="actfusion-kernels-")
    os.environ["ACTFUSION_KERNEL_CACHE"] = _KERNEL_CACHE["session"]


def pytest_unconfigure(config) -> None:
    if _KERNEL_CACHE.get("session") is None:
        return
    shutil.rmtree(_KERNEL_CACHE["session"], ignore_errors=True)
    if _KERNEL_CACHE["previous"] is None:
        os.environ.pop("ACTFUSION_KERNEL_CACHE", None)
    else:
        os.environ["ACTFUSION_KERNEL_CACHE"] = _KERNEL_CACHE["previous"]


@pytest.fixture(scope="module")
def kernel() -> None:
    """The fused CPU kernel is built (into the session's cache); only a missing compiler skips."""
    reason = cpu.unavailable_reason()
    if reason is not None and "no C compiler" in reason:
        pytest.skip(reason)
    assert reason is None, reason


@pytest.fixture(scope="session")
def testvectors() -> Path:
    """Directory of the official implementation's outputs (tests/data/official, or $ACTFUSION_TESTVECTORS)."""
    if not (TESTVECTORS / "model_50salads.pt").is_file():
        raise FileNotFoundError(
            f"official test vectors not found at {TESTVECTORS}; set ACTFUSION_TESTVECTORS to the directory"
        )
    return TESTVECTORS


@pytest.fixture(scope="session", autouse=True)
def session_cache_dir(tmp_path_factory) -> None:
    """The SDK's cache (seeded extractor weights) in a per-session directory, never the user's home."""
    os.environ["ACTFUSION_CACHE_DIR"] = str(tmp_path_factory.mktemp("actfusion-cache"))


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
