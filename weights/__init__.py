"""Shipped weights (installed as `actfusion_sdk.weights`): where to find a checkpoint and how to trust it.

Resolution order: an explicit path (the `weights=` argument or `--weights`), then $ACTFUSION_WEIGHTS, then the
bundled default `demo/` next to this file. The first one given is used; the bundled default only when neither
is given. `manifest.json` lists the sha256 of every shipped file, checked by `verify_manifest`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import WeightsError
from ..fileio import sha256_file

ENVIRONMENT_VARIABLE = "ACTFUSION_WEIGHTS"
WEIGHTS_DIR = Path(__file__).resolve().parent
BUNDLED_DEFAULT = WEIGHTS_DIR / "demo"
MANIFEST = WEIGHTS_DIR / "manifest.json"
MANIFEST_FORMAT = "actfusion-sdk/manifest/1"
# The container comment of the procedural demo's videos: the only videos the bundled model knows.
DEMO_VIDEO_TAG = "actfusion-sdk procedural demo"


def resolve_weights(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint to load: a directory with model.json, a model card, or a weights file.

    Raises WeightsError listing every candidate tried and why it was not usable.
    """
    tried: list[str] = []
    candidates = [
        ("weights argument", None if explicit is None else Path(explicit)),
        (f"${ENVIRONMENT_VARIABLE}", _environment_path()),
        ("bundled default", BUNDLED_DEFAULT),
    ]
    for source, path in candidates:
        if path is None:
            tried.append(f"{source}: not given")
            continue
        problem = _problem(path)
        if problem is None:
            return path
        tried.append(f"{source}: {path} ({problem})")
        if source != "bundled default":
            break  # a path the user named must not silently fall back to another checkpoint
    raise WeightsError(
        "no usable weights; tried "
        + "; ".join(tried)
        + ". Pass --weights PATH (a directory with model.json, "
        f"a model.json or a .safetensors file) or set ${ENVIRONMENT_VARIABLE}."
    )


def _environment_path() -> Path | None:
    value = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    return Path(value) if value else None


def _problem(path: Path) -> str | None:
    """Why `path` cannot be a checkpoint, or None when it can."""
    if path.is_dir():
        return None if (path / "model.json").is_file() else "directory without model.json"
    if path.is_file():
        return None
    if path.exists():
        return "exists, but is a device, FIFO or socket, not a model file or folder"
    return "does not exist"


def shipped_files(root: Path = WEIGHTS_DIR) -> list[Path]:
    """Every shipped weights file under `root` (not the manifest itself, nor Python files or caches)."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path != root / MANIFEST.name
        and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts
    )


def build_manifest(root: Path = WEIGHTS_DIR) -> dict[str, object]:
    """The manifest document for `root`: {"format", "files": {relative path: {"sha256", "bytes"}}}."""
    return {
        "format": MANIFEST_FORMAT,
        "files": {
            path.relative_to(root).as_posix(): {"sha256": sha256_file(path), "bytes": path.stat().st_size}
            for path in shipped_files(root)
        },
    }


def write_manifest(root: Path = WEIGHTS_DIR) -> Path:
    """Write `root`/manifest.json for the files shipped there now."""
    path = root / MANIFEST.name
    path.write_text(json.dumps(build_manifest(root), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def verify_manifest(root: Path = WEIGHTS_DIR) -> int:
    """Check every file listed in `root`/manifest.json and that no shipped file is unlisted.

    Returns the number of files verified; raises WeightsError naming each mismatch.
    """
    path = root / MANIFEST.name
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise WeightsError(f"weights manifest {path} is missing; reinstall actfusion-sdk") from err
    except json.JSONDecodeError as err:
        raise WeightsError(f"weights manifest {path} is not valid JSON ({err})") from err
    if manifest.get("format") != MANIFEST_FORMAT:
        raise WeightsError(
            f"weights manifest {path} has format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}"
        )
    expected = build_manifest(root)["files"]
    listed = manifest.get("files", {})
    problems = [f"{name}: missing" for name in sorted(set(listed) - set(expected))]
    problems += [f"{name}: not in the manifest" for name in sorted(set(expected) - set(listed))]
    problems += [
        f"{name}: sha256 {expected[name]['sha256']} != listed {entry['sha256']}"
        for name, entry in sorted(listed.items())
        if name in expected and expected[name]["sha256"] != entry["sha256"]
    ]
    if problems:
        raise WeightsError(f"shipped weights under {root} do not match {path}: " + "; ".join(problems))
    return len(listed)
