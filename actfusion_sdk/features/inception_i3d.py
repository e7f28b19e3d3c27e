"""DeepMind's Kinetics-400 Inception-I3D (Carreira & Zisserman 2017) in torch, inference only, up to Mixed_5c.

This is the network behind the "MS-TCN features": the RGB and optical-flow streams, each taken at Mixed_5c and
pooled by `InceptionI3d.features`. It reproduces the Sonnet original (deepmind/kinetics-i3d `i3d.py`) exactly:

- TensorFlow's SAME padding for every convolution and max-pool, computed from the input size of each call:
  total max(k - s, 0) when n % s == 0, else max(k - n % s, 0), the odd element at the end;
- a max-pool's padding never wins over a real value (padded with -inf);
- BatchNorm with eps 1e-3 and no scale (gamma fixed at 1; only the bias beta is learnt), then ReLU;
- the logits: average pool [2, 7, 7] stride 1 VALID, a 1x1x1 convolution with bias, the mean over time.

Module names follow Sonnet's endpoints (`Conv3d_1a_7x7`, ..., `Mixed_5c`), so a TF variable
`RGB/inception_i3d/Mixed_4b/Branch_1/Conv3d_0b_3x3/conv_3d/w` is the module `Mixed_4b.Branch_1.Conv3d_0b_3x3`.
Inputs are [N, C, T, 224, 224] float, already scaled to [-1, 1]; N windows run in one forward. On CUDA, torch
lets cuDNN convolutions use TF32 by default (`torch.backends.cudnn.allow_tf32`), which moves the outputs far
more than float32 rounding does; turn it off where the reference values matter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BATCH_NORM_EPS = 1e-3
MIXED_5C_CHANNELS = 1024
# The MS-TCN pooling window over Mixed_5c: [time, height, width], stride 1, VALID.
FEATURE_POOL = (2, 7, 7)

Size3 = tuple[int, int, int]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding of one dimension: (before, after), the odd element after."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _same_pads(x: torch.Tensor, kernel: Size3, stride: Size3) -> list[tuple[int, int]]:
    """SAME padding of the last three dimensions (T, H, W) of `x`."""
    return [same_padding(n, k, s) for n, k, s in zip(x.shape[-3:], kernel, stride, strict=True)]


def _pad_argument(pads: list[tuple[int, int]]) -> list[int]:
    """`F.pad`'s argument for (T, H, W) pads: last dimension first."""
    return [side for before_after in reversed(pads) for side in before_after]


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm (eps 1e-3, no scale) + ReLU, with SAME padding: Sonnet's `Unit3D`."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: Size3 = (1, 1, 1), stride: Size3 = (1, 1, 1)
    ):
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.conv_3d = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, bias=False)
        self.batch_norm = BiasOnlyBatchNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x, self.kernel, self.stride)
        if all(before == after for before, after in pads):
            # Symmetric padding: let the convolution pad, saving a copy of the input.
            x = F.conv3d(x, self.conv_3d.weight, None, self.stride, [before for before, _ in pads])
        else:
            x = F.conv3d(F.pad(x, _pad_argument(pads)), self.conv_3d.weight, None, self.stride)
        return F.relu(self.batch_norm(x), inplace=True)


class BiasOnlyBatchNorm(nn.Module):
    """Inference BatchNorm with a learnt bias (beta) and no scale, eps 1e-3, as Sonnet's `BatchNorm()`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(channels))
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.moving_mean, self.moving_variance, None, self.beta, training=False, eps=BATCH_NORM_EPS
        )


class MaxPool3dSame(nn.Module):
    """Max-pool with SAME padding whose padded cells never win (they hold -inf)."""

    def __init__(self, kernel: Size3, stride: Size3) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x, self.kernel, self.stride)
        symmetric = all(before == after for before, after in pads)
        if symmetric and all(2 * before <= k for (before, _), k in zip(pads, self.kernel, strict=True)):
            # torch's own padding of a max-pool is implicit -inf; it allows at most half a kernel.
            return F.max_pool3d(x, self.kernel, self.stride, [before for before, _ in pads])
        return F.max_pool3d(F.pad(x, _pad_argument(pads), value=float("-inf")), self.kernel, self.stride)


class Branch3(nn.Module):
    """A Mixed block's pooling branch: max-pool 3x3x3 stride 1 (SAME), then a 1x1x1 unit."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.MaxPool3d_0a_3x3 = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.Conv3d_0b_1x1 = Unit3D(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Conv3d_0b_1x1(self.MaxPool3d_0a_3x3(x))


class Mixed(nn.Module):
    """An Inception block: four branches concatenated along channels.

    `widths` = (branch 0, branch 1 reduce, branch 1, branch 2 reduce, branch 2, branch 3).
    """

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.Branch_0 = nn.Sequential()
        self.Branch_0.add_module("Conv3d_0a_1x1", Unit3D(in_channels, b0))
        self.Branch_1 = nn.Sequential()
        self.Branch_1.add_module("Conv3d_0a_1x1", Unit3D(in_channels, b1a))
        self.Branch_1.add_module("Conv3d_0b_3x3", Unit3D(b1a, b1b, (3, 3, 3)))
        self.Branch_2 = nn.Sequential()
        self.Branch_2.add_module("Conv3d_0a_1x1", Unit3D(in_channels, b2a))
        self.Branch_2.add_module("Conv3d_0b_3x3", Unit3D(b2a, b2b, (3, 3, 3)))
        self.Branch_3 = Branch3(in_channels, b3)
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


# (endpoint, widths) of the Mixed blocks, in order; max-pools sit before Mixed_3b, Mixed_4b and Mixed_5b.
MIXED_WIDTHS: tuple[tuple[str, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


class Logits(nn.Module):
    """Kinetics classifier: a 1x1x1 convolution with bias (no BatchNorm, no ReLU)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.Conv3d_0c_1x1 = nn.Conv3d(in_channels, num_classes, 1, bias=True)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.Conv3d_0c_1x1(pooled)


class InceptionI3d(nn.Module):
    """Inception-I3D up to Mixed_5c, with the MS-TCN feature pooling and the Kinetics logits.

    `in_channels` is 3 for the RGB stream and 2 for optical flow (x, y). Call `.eval()` (inference only).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 400) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = 192
        for name, widths in MIXED_WIDTHS:
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = Mixed(channels, widths)
            self.add_module(name, block)
            channels = block.out_channels
        self.Logits = Logits(channels, num_classes)
        self.eval()

    def mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """The Mixed_5c endpoint: [N, C, T, 224, 224] -> [N, 1024, T', 7, 7] (T' = ceil(ceil(T / 2) / 4))."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"InceptionI3d expects [N, {self.in_channels}, T, H, W] input, got {tuple(x.shape)}"
            )
        if x.device.type == "cpu":
            # oneDNN runs these 3D convolutions faster on channels-last activations (the layout propagates).
            x = x.contiguous(memory_format=torch.channels_last_3d)
        # Registration order is the network's order (stem, pools and Mixed blocks), Logits last.
        for name, module in self.named_children():
            if name == "Logits":
                break
            x = module(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The MS-TCN feature [N, 1024] of windows [N, C, T, 224, 224] (see `pool_features`)."""
        return self.pool_features(self.mixed_5c(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Kinetics-400 logits [N, num_classes] of windows [N, C, T, 224, 224] (see `classify`)."""
        return self.classify(self.mixed_5c(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The MS-TCN feature [N, 1024] (see `features`)."""
        return self.features(x)

    @staticmethod
    def pool_features(mixed_5c: torch.Tensor) -> torch.Tensor:
        """Mixed_5c [N, 1024, T', 7, 7] -> the MS-TCN feature [N, 1024]: average-pooled [2, 7, 7], stride 1,
        VALID, then the mean over time. For a 21-frame window T' = 3, which this weighs 1/4, 1/2, 1/4."""
        return _valid_pool(mixed_5c).mean(dim=(2, 3, 4))

    def classify(self, mixed_5c: torch.Tensor) -> torch.Tensor:
        """Mixed_5c -> Kinetics logits [N, num_classes]: that pooling, the 1x1x1 classifier, the time mean.
        With `pool_features`, both outputs come from one Mixed_5c pass."""
        return self.Logits(_valid_pool(mixed_5c)).mean(dim=(2, 3, 4))


def _valid_pool(mixed_5c: torch.Tensor) -> torch.Tensor:
    if mixed_5c.shape[2] < FEATURE_POOL[0]:
        raise ValueError(
            f"Mixed_5c has {mixed_5c.shape[2]} time step(s), the [2, 7, 7] pooling needs 2: "
            "give the network at least 9 frames"
        )
    return F.avg_pool3d(mixed_5c, FEATURE_POOL, stride=1)
