"""Shared fixtures. The interpreter flag must be set before triton is first imported."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TESTVECTORS = Path(os.environ.get("ACTFUSION_TESTVECTORS", REPO.parent / "shared" / "testvectors"))


@pytest.fixture(scope="session")
def testvectors() -> Path:
    """Directory of the official implementation's outputs (../shared/testvectors)."""
    if not (TESTVECTORS / "model_50salads.pt").is_file():
        raise FileNotFoundError(
            f"official test vectors not found at {TESTVECTORS}; set ACTFUSION_TESTVECTORS to the directory"
        )
    return TESTVECTORS
