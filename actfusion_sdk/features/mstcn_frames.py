"""Per-frame image operations of the MS-TCN feature protocol, by OpenCV as the original extractor did them.

Each frame is resized with OpenCV's 8-bit ``INTER_LINEAR`` so that its short side is 256 (both sizes rounded
half up), then centre-cropped to 224² at ``(w // 2 − 112, h // 2 − 112)`` of the resized frame. A float resize
would move the features by up to 0.015 (the test vectors' README), so the 8-bit OpenCV resize is used as is.
Optical flow fields go through the same resize and crop (their vectors are not rescaled).

OpenCV is an optional dependency (``pip install 'actfusion-sdk[mstcn]'``): `require_opencv` says so clearly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..errors import ConfigError

SHORT_SIDE = 256
CROP = 224
INSTALL_HINT = "pip install 'actfusion-sdk[mstcn]'"


@functools.cache
def require_opencv() -> ModuleType:
    """OpenCV with the contrib modules (TV-L1 lives in ``cv2.optflow``), or a ConfigError saying what to
    install."""
    try:
        import cv2
    except ImportError as err:
        raise ConfigError(
            f"the MS-TCN features (--settings mstcn) need OpenCV with its contrib modules: {INSTALL_HINT} "
            f"(opencv-contrib-python-headless); importing cv2 failed: {err}"
        ) from err
    if not hasattr(cv2, "optflow"):
        raise ConfigError(
            f"the installed OpenCV {cv2.__version__} lacks the contrib module cv2.optflow (TV-L1 optical "
            f"flow): uninstall opencv-python / opencv-python-headless and run {INSTALL_HINT}"
        )
    return cv2


@dataclass(frozen=True)
class FrameGeometry:
    """Where a ``height`` × ``width`` frame goes: its resized size and the crop's top-left corner."""

    height: int
    width: int

    @property
    def resized(self) -> tuple[int, int]:
        """(height, width) with the short side 256 and the aspect ratio kept, rounded half up."""
        scale = SHORT_SIDE / min(self.height, self.width)
        return int(self.height * scale + 0.5), int(self.width * scale + 0.5)

    @property
    def crop_origin(self) -> tuple[int, int]:
        """(top, left) of the 224² crop in the resized frame."""
        height, width = self.resized
        return height // 2 - CROP // 2, width // 2 - CROP // 2

    def resize_and_crop(self, image: np.ndarray) -> np.ndarray:
        """[H, W, C] (uint8 frame or float32 flow) -> [224, 224, C]: OpenCV INTER_LINEAR resize, then the
        centre crop."""
        cv2 = require_opencv()
        height, width = self.resized
        if (height, width) != image.shape[:2]:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        top, left = self.crop_origin
        return np.ascontiguousarray(image[top : top + CROP, left : left + CROP])


def frame_geometry(image: np.ndarray) -> FrameGeometry:
    """The geometry of a frame like ``image`` ([H, W, ...])."""
    return FrameGeometry(int(image.shape[0]), int(image.shape[1]))


def grey(image: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB -> [H, W] uint8 luma (OpenCV's weights, as the extractor's BGR→GRAY)."""
    cv2 = require_opencv()
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
