"""Incremental features: each clip is embedded once, as soon as its window is complete (ClipAssembler)."""

from __future__ import annotations

from collections import deque

import numpy as np
import torch

from ..features.i3d import I3DFeatureExtractor
from ..video.clips import ClipAssembler


class FeatureStream:
    """Frames in, [D] features out, in order; keeps the last `keep` features (all when None).

    Clips wait in `pending` until `embed()` runs them through the extractor in batches, so the caller decides
    when to pay for the network (e.g. only up to the features the next update needs).
    """

    def __init__(self, extractor: I3DFeatureExtractor, keep: int | None = None) -> None:
        self.extractor = extractor
        self._assembler: ClipAssembler[torch.Tensor] = ClipAssembler(extractor.schedule)
        self._pending: deque[tuple[list[torch.Tensor], float]] = deque()
        self._features: deque[np.ndarray] = deque(maxlen=keep)
        self.count = 0  # features embedded so far
        self.arrival: float | None = None  # arrival time of the frame that completed the newest feature

    @property
    def pending(self) -> int:
        """Complete clips not yet embedded."""
        return len(self._pending)

    @property
    def ready(self) -> int:
        """Features whose clips are complete: embedded or pending."""
        return self.count + len(self._pending)

    def push(self, image: torch.Tensor, arrival: float) -> None:
        """Add the next frame (which arrived at `arrival`, monotonic seconds)."""
        self._pending.extend((clip, arrival) for clip in self._assembler.push(image))

    def finish(self, arrival: float) -> None:
        """End of the stream: the last clips are edge-padded exactly as offline."""
        self._pending.extend((clip, arrival) for clip in self._assembler.finish())

    def embed(self, until: int) -> None:
        """Embed pending clips in batches of the extractor's batch size, up to feature `until` (excluded)."""
        while self.count < until and self._pending:
            size = min(self.extractor.batch_size, until - self.count, len(self._pending))
            batch = [self._pending.popleft() for _ in range(size)]
            clips = torch.stack([torch.stack(clip) for clip, _ in batch])
            self._features.extend(self.extractor.embed_clips(clips).numpy())
            self.count += size
            self.arrival = batch[-1][1]

    def window(self, end: int, length: int | None) -> tuple[int, np.ndarray]:
        """(first feature index, [D, n] features) of the `length` features before `end` (all when None)."""
        first_kept = self.count - len(self._features)
        first = first_kept if length is None else max(first_kept, end - length)
        if first < first_kept or not first < end <= self.count:
            raise ValueError(f"features [{first}, {end}) are not held (held: [{first_kept}, {self.count}))")
        columns = [self._features[i - first_kept] for i in range(first, end)]
        return first, np.stack(columns, axis=1)
