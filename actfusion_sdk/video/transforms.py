"""Per-frame geometry (short-side resize, centre crop) and per-batch normalisation of video clips."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side scaled to ``short_side`` and the aspect ratio kept (rounded)."""
    if height <= width:
        return short_side, max(short_side, round(width * short_side / height))
    return max(short_side, round(height * short_side / width)), short_side


def resize_and_crop(image: np.ndarray, short_side: int | None, crop_size: int | None) -> torch.Tensor:
    """[H, W, 3] uint8 -> [h, w, 3] uint8: antialiased bilinear resize of the short side, then centre crop.

    Either step is skipped when its size is None. Works on uint8 directly, so a 4K frame never becomes a
    float tensor.
    """
    frame = torch.from_numpy(np.ascontiguousarray(image))
    if short_side is not None:
        height, width = frame.shape[:2]
        size = resized_size(height, width, short_side)
        if size != (height, width):
            # [H, W, 3] viewed as a channels-last [1, 3, H, W] batch, the layout torch's uint8 kernel wants.
            nchw = frame.permute(2, 0, 1).unsqueeze(0)
            resized = F.interpolate(nchw, size=size, mode="bilinear", antialias=True, align_corners=False)
            frame = resized[0].permute(1, 2, 0)
    if crop_size is not None:
        height, width = frame.shape[:2]
        top, left = (height - crop_size) // 2, (width - crop_size) // 2
        frame = frame[top : top + crop_size, left : left + crop_size]
    return frame.contiguous()


def normalize_clips(
    clips: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[B, T, H, W, 3] uint8 clips -> [B, 3, T, H, W] normalised ``(x / 255 - mean) / std``.

    The result is a permuted view of a [B, T, H, W, 3] buffer, i.e. already in channels_last_3d layout.
    """
    mean_t = torch.tensor(mean, dtype=dtype, device=clips.device)
    std_t = torch.tensor(std, dtype=dtype, device=clips.device)
    values = (clips.to(dtype) / 255.0 - mean_t) / std_t
    return values.permute(0, 4, 1, 2, 3)
