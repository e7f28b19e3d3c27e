"""Shared fixtures. The interpreter flag must be set before triton is first imported."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TESTVECTORS = Path(os.environ.get("ACTFUSION_TESTVECTORS", REPO / "tests" / "data" / "official"))


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
