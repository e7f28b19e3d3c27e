"""The SDK's one cache root: `$ACTFUSION_CACHE_DIR`, else `~/.cache/actfusion-sdk`; an empty
`ACTFUSION_CACHE_DIR` disables caching. What lives under it: the seeded extractor weights, the built CPU
kernel (`kernels/`) and per-video features."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "ACTFUSION_CACHE_DIR"


def cache_root() -> Path | None:
    """The cache root, or None where caching is disabled (or no home directory can be found)."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    try:
        return Path.home() / ".cache" / "actfusion-sdk"
    except RuntimeError:  # no home directory to be found
        return None
