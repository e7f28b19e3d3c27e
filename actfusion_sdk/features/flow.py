"""The optical-flow stream's input: TV-L1 flow between consecutive grey frames, as the MS-TCN features had it.

The original extractor (ahsaniqbal/Kinetics-FeatureExtractor) ran OpenCV 2.4's CUDA
``OpticalFlowDual_TVL1_GPU`` with its defaults at full resolution. OpenCV 4's contrib
``cv2.optflow.DualTVL1OpticalFlow`` is the same algorithm on the CPU; `TvL1Settings` maps 2.4's parameters
onto it (docs/mstcn-features.md lists what still differs). Each flow field is resized and cropped like the
RGB frames (vectors not rescaled), clipped to ±20 px and divided by 20, in float32: the cache
stores exactly these values, so cached and freshly computed flow give the same features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .mstcn_frames import FrameGeometry, require_opencv

FLOW_BOUND = 20.0  # pixels; the flow is clipped to ±FLOW_BOUND and divided by it
FLOW_DTYPE = np.float32  # what the network gets; the cache keeps these exact values


@dataclass(frozen=True)
class TvL1Settings:
    """Parameters of OpenCV contrib's DualTVL1OpticalFlow, set as OpenCV 2.4's CUDA TV-L1 defaults were.

    2.4 ran up to ``iterations = 300`` per warp and had no median filter; contrib splits the iterations into
    ``outer_iterations`` × ``inner_iterations`` and median-filters the flow between outer iterations unless
    ``median_filtering`` is 1. One outer loop of 300 inner iterations with the filter off is 2.4's loop.
    2.4 built its pyramid by halving (``pyrDown``): ``scale_step`` 0.5. ``gamma`` 0 is plain TV-L1 (2.4 had
    no illumination term).
    """

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    scales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 300
    outer_iterations: int = 1
    scale_step: float = 0.5
    gamma: float = 0.0
    median_filtering: int = 1
    use_initial_flow: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def create(self) -> Any:
        """A new ``cv2.optflow.DualTVL1OpticalFlow`` with these parameters (one per thread: it keeps
        buffers)."""
        cv2 = require_opencv()
        return cv2.optflow.DualTVL1OpticalFlow_create(
            tau=self.tau,
            lambda_=self.lambda_,
            theta=self.theta,
            nscales=self.scales,
            warps=self.warps,
            epsilon=self.epsilon,
            innnerIterations=self.inner_iterations,  # sic: OpenCV's binding spells it with three n
            outerIterations=self.outer_iterations,
            scaleStep=self.scale_step,
            gamma=self.gamma,
            medianFiltering=self.median_filtering,
            useInitialFlow=self.use_initial_flow,
        )


MSTCN_TVL1 = TvL1Settings()


class FlowField:
    """TV-L1 flow between consecutive grey frames, prepared for the flow network."""

    def __init__(self, settings: TvL1Settings = MSTCN_TVL1) -> None:
        self.settings = settings
        self._tvl1 = settings.create()

    def raw(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """[H, W] uint8 grey frames -> [H, W, 2] float32 flow (x, y) in pixels, from ``previous`` to
        ``current``, at full resolution."""
        return self._tvl1.calc(previous, current, None)

    def network_input(self, previous: np.ndarray, current: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
        """[224, 224, 2] float32: the flow resized and cropped like RGB, clipped to ±20 px, divided by 20."""
        return prepare_flow(self.raw(previous, current), geometry)


def prepare_flow(flow: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """[H, W, 2] flow in pixels -> [224, 224, 2] float32 network input (resize, crop, clip ±20, / 20)."""
    cropped = geometry.resize_and_crop(np.ascontiguousarray(flow, dtype=np.float32))
    return (np.clip(cropped, -FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND).astype(FLOW_DTYPE)
