"""Official ActFusion checkpoints as models of ours: the checkpoint, its dataset's mapping.txt and the two I3D
weights files become a model card that runs on raw video.

The official checkpoints were trained on the MS-TCN features (two-stream Inception-I3D, rgb_imagenet +
flow_imagenet) of their dataset: Breakfast and GTEA at 15 fps, 50 Salads at 30 fps (its models subsample by 8,
the preset's ``sample_rate``). The card records those feature settings with the I3D weights' fingerprints and
absolute paths, so `Predictor`, `Pipeline`, `actfusion segment` / `anticipate` / `batch` make the right
features from any video without further options. Moving the I3D files means importing again (or editing the
two ``path`` fields of the card's ``features``); the fingerprints make sure other weights are refused.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .data.mstcn import read_mapping
from .errors import ConfigError
from .features.i3d_weights import I3dWeightsInfo, check_mstcn_pair
from .features.mstcn import load_stream
from .features.settings import MSTCN_STREAMS, FeatureSettings, WeightsSource
from .model.checkpoint import load_model, save_model

# Frame rate of each dataset's released MS-TCN features (the official loaders use every feature frame).
OFFICIAL_FEATURE_FPS = {"breakfast": 15.0, "50salads": 30.0, "gtea": 15.0}

PathLike = str | os.PathLike[str]


def import_official_checkpoint(
    checkpoint: PathLike,
    mapping: PathLike,
    preset: str,
    out_dir: PathLike,
    rgb_weights: PathLike,
    flow_weights: PathLike,
    fps: float | None = None,
) -> Path:
    """Write ``out_dir``/model.safetensors + model.json for an official checkpoint (raw state_dict) of
    ``preset``, with the classes of ``mapping`` (mapping.txt) and MS-TCN feature settings at ``fps`` (default:
    the rate of the preset's dataset) made with ``rgb_weights`` and ``flow_weights``; returns ``out_dir``."""
    if preset not in OFFICIAL_FEATURE_FPS:
        raise ConfigError(f"preset {preset!r} is unknown; choose one of {', '.join(OFFICIAL_FEATURE_FPS)}")
    fps = OFFICIAL_FEATURE_FPS[preset] if fps is None else float(fps)
    classes = read_mapping(Path(mapping))
    loaded = load_model(checkpoint, preset=preset, classes=classes)
    rgb, rgb_info = _identified(rgb_weights, "rgb")
    flow, flow_info = _identified(flow_weights, "flow")
    check_mstcn_pair(rgb_info, flow_info)  # warns when these are not rgb_imagenet + flow_imagenet
    settings = FeatureSettings.mstcn(fps, MSTCN_STREAMS, rgb, flow)
    if loaded.card.config.encoder.input_dim != settings.feature_dim:
        raise ConfigError(
            f"{checkpoint} takes {loaded.card.config.encoder.input_dim}-d features, the MS-TCN features are "
            f"{settings.feature_dim}-d; this is not an official checkpoint of the MS-TCN feature datasets"
        )
    card = replace(
        loaded.card,
        features=settings.to_dict(),
        fps=settings.features_per_second,
        description=(
            f"official ActFusion checkpoint {Path(checkpoint).name} ({preset}, {len(classes)} classes) on "
            f"MS-TCN two-stream I3D features at {fps:g} fps"
        ),
    )
    return save_model(loaded.model, card, out_dir)


def _identified(path: PathLike, stream: str) -> tuple[WeightsSource, I3dWeightsInfo]:
    """The weights at ``path`` as the card records them (format-free fingerprint, absolute path) and what
    loading them found."""
    _, info, fingerprint = load_stream(path, WeightsSource("file"), stream)
    return WeightsSource("file", sha256=fingerprint, path=str(Path(path).absolute())), info
