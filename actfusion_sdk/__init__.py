"""actfusion-sdk: temporal action segmentation and anticipation from raw video with ActFusion.

Heavy pieces (video decoding, feature extraction, the pipeline) import lazily, so importing the model
or the kernels never pulls in PyAV or pytorchvideo.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .errors import (
    ActFusionError,
    ConfigError,
    DatasetError,
    InputError,
    KernelError,
    VideoError,
    WeightsError,
)

__version__ = "0.1.0"

_LAZY = {
    "Pipeline": "actfusion_sdk.pipeline",
    "Segment": "actfusion_sdk.results",
    "SegmentationResult": "actfusion_sdk.results",
    "AnticipationResult": "actfusion_sdk.results",
    "Predictor": "actfusion_sdk.predictor",
    "AnticipationWindow": "actfusion_sdk.predictor",
    "LiveUpdate": "actfusion_sdk.live",
    "load_model": "actfusion_sdk.model.checkpoint",
    "ActFusion": "actfusion_sdk.model.actfusion",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'actfusion_sdk' has no attribute {name!r}")


__all__ = [
    "ActFusionError",
    "ConfigError",
    "DatasetError",
    "InputError",
    "KernelError",
    "VideoError",
    "WeightsError",
    *_LAZY,
]
