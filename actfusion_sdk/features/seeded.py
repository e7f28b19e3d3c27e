"""The demo extractor's weights: i3d_r50 tensors made deterministically from a seed (issue 7, notes).

No pretrained I3D can be downloaded here, so the demo uses random weights drawn in a way that yields the
same tensors on every machine and torch version: numpy's legacy ``RandomState`` stream is frozen, and the
draw order is ``named_modules()`` order. Every conv/linear weight is ``standard_normal(shape) *
sqrt(2 / fan_out)`` (float64, cast to float32); biases are 0; BatchNorm weight 1, bias 0, running mean 0,
running var 1. pytorchvideo's own init zeroes the last BatchNorm of each bottleneck, which switches the
residual branches off at random weights and gives far weaker features, so it is not used.

Drawing takes seconds, so ``seeded_i3d_state_dict`` keeps each seed's draw in a safetensors file under
``$ACTFUSION_CACHE_DIR`` (default ``~/.cache/actfusion-sdk``; empty: no cache). A cached file is used only if
its recorded seed, key order and fingerprint match its tensors (and, for seed 0, ``SEED0_FINGERPRINT``);
anything else is redrawn. The cache is never required: a directory that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..cache import cache_root
from ..fileio import atomic_write

log = logging.getLogger(__name__)

# sha256 fingerprint (``state_dict_fingerprint``) of ``draw_seeded_i3d_state_dict(0)``, computed once by this
# module (numpy 2.4, torch 2.14). A test recomputes it to catch drift across numpy/torch versions.
SEED0_FINGERPRINT = "e6869fde56ef27c2839a6f841f072446b308b640aa9692ee97bd9455a7a17c2c"
_CACHE_FORMAT = "actfusion-seeded-i3d-r50/1"


def i3d_r50_skeleton() -> nn.Module:
    """pytorchvideo's i3d_r50 architecture on the meta device: shapes only, no storage, no RNG use."""
    with warnings.catch_warnings():
        # pytorchvideo's import calls torch.jit.script, which this torch flags as deprecated.
        warnings.simplefilter("ignore", FutureWarning)
        from pytorchvideo.models.hub.resnet import i3d_r50

    with torch.device("meta"):
        return i3d_r50(pretrained=False)


def _fan_out(weight_shape: torch.Size) -> int:
    """Kaiming fan-out: output channels times the kernel's receptive field (out_features for linear)."""
    return int(np.prod(weight_shape[:1] + weight_shape[2:]))


def draw_seeded_i3d_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A full i3d_r50 state_dict (including the unused 400-way head) drawn from ``RandomState(seed)``."""
    skeleton = i3d_r50_skeleton()
    rng = np.random.RandomState(seed)
    drawn: dict[str, torch.Tensor] = {}
    for name, module in skeleton.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, (nn.Conv3d, nn.Linear)):
            shape = tuple(module.weight.shape)
            weight = rng.standard_normal(shape) * np.sqrt(2.0 / _fan_out(module.weight.shape))
            drawn[prefix + "weight"] = torch.from_numpy(weight.astype(np.float32))
    state: dict[str, torch.Tensor] = {}
    for key, meta in skeleton.state_dict().items():
        if key in drawn:
            state[key] = drawn[key]
        elif key.endswith("running_var") or (key.endswith("weight") and meta.dim() == 1):
            state[key] = torch.ones(meta.shape, dtype=meta.dtype)  # BatchNorm scale and running variance
        else:
            state[key] = torch.zeros(meta.shape, dtype=meta.dtype)  # biases, running means, batch counters
    return state


def state_dict_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over (key, shape, dtype, raw bytes) of every entry in order: same tensors, same hash."""
    digest = hashlib.sha256()
    for key, tensor in state_dict.items():
        array = tensor.detach().cpu().contiguous().numpy()
        header = f"{key}\0{tuple(tensor.shape)}\0{tensor.dtype}\0"
        digest.update(header.encode())
        digest.update(array.reshape(-1).view(np.uint8))  # the raw bytes, without copying them
    return digest.hexdigest()


def seeded_i3d_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """``draw_seeded_i3d_state_dict(seed)``, read from the cache when a verified copy is there (else drawn
    and, where the cache directory can be written, stored for the next call)."""
    path = _cache_path(seed)
    cached = None if path is None else _read_cached(path, seed)
    if cached is not None:
        return cached
    state = draw_seeded_i3d_state_dict(seed)
    if path is not None:
        _write_cached(path, seed, state)
    return state


def _cache_path(seed: int) -> Path | None:
    directory = cache_root()
    return None if directory is None else directory / f"i3d_r50_seeded_{seed}.safetensors"


def _read_cached(path: Path, seed: int) -> dict[str, torch.Tensor] | None:
    """The verified state_dict in ``path``; None when it is missing, unreadable, foreign or corrupted."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            keys = json.loads(meta.get("keys", "null"))
            if meta.get("format") != _CACHE_FORMAT or meta.get("seed") != str(seed):
                raise ValueError("written for another seed or by another format")
            if not isinstance(keys, list) or sorted(keys) != sorted(handle.keys()):
                raise ValueError("its key order does not list its tensors")
            state = {key: handle.get_tensor(key) for key in keys}
    except Exception as err:  # safetensors, json and the OS raise unrelated types for a bad file
        log.debug("ignoring the cached seeded weights %s: %s", path, err)
        return None
    fingerprint = state_dict_fingerprint(state)
    expected = SEED0_FINGERPRINT if seed == 0 else meta.get("fingerprint")
    if fingerprint != meta.get("fingerprint") or fingerprint != expected:
        log.debug("ignoring the cached seeded weights %s: fingerprint mismatch", path)
        return None
    return state


def _write_cached(path: Path, seed: int, state: dict[str, torch.Tensor]) -> None:
    """Store ``state`` in ``path`` atomically; a cache that cannot be written is skipped."""
    from safetensors.torch import save

    meta = {
        "format": _CACHE_FORMAT,
        "seed": str(seed),
        "keys": json.dumps(list(state)),
        "fingerprint": state_dict_fingerprint(state),
    }
    try:
        with atomic_write(path) as handle:
            handle.write(save(state, metadata=meta))
    except OSError as err:
        log.debug("not caching the seeded weights in %s: %s", path, err)
