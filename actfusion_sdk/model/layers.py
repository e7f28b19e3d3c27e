"""Building blocks of ActFusion: the dilated conv + attention residual layer and the timestep embedding.

Module and parameter names follow the official state_dict (spec §1.2): `conv_block.0`, `att_linear_q/k/v`,
`ffn_block.0/.2`, `rel_pos_emb`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import KernelError
from .attention import (
    cpu_kernel_problem,
    dilated_attention,
    fused_bias_act,
    fused_mixed_norm,
    rel_tap_bias,
    tap_ranges,
)

POSITION_TABLE_SIZE = 20000
NORM_EPS = 1e-5


def pointwise(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution ([O, I, 1] weight, or an [O, I] matrix) on x [B, I, L] as one batched matmul
    (faster than conv1d on CPU).

    `bias` is a per-channel [O] vector or any term broadcastable to the output [B, O, L].
    """
    matrix = weight.reshape(weight.shape[0], -1).expand(x.shape[0], -1, -1)
    if bias is None:
        return torch.bmm(matrix, x)
    return torch.baddbmm(bias[:, None] if bias.dim() == 1 else bias, matrix, x)


class DilatedAttentionLayer(nn.Module):
    """EncLayer / DecLayer (spec §1.3, §1.4): y = x + FFN(IN(DilatedConv(xd) + DilatedAttn(xd))).

    With `cross_dim` > 0 (decoder), queries and keys are projected from [xd ; F] and values from xd alone.
    """

    def __init__(
        self,
        width: int,
        dilation: int,
        kernel_size: int,
        dropout: float,
        cross_dim: int = 0,
        pos: str = "rel",
    ) -> None:
        super().__init__()
        self.width = width
        self.dilation = dilation
        self.kernel_size = kernel_size
        self.cross_dim = cross_dim
        self.attention_impl = "auto"
        padding = (kernel_size // 2) * dilation
        self.conv_block = nn.Sequential(
            nn.Conv1d(width, width, kernel_size, padding=padding, dilation=dilation)
        )
        self.att_linear_q = nn.Conv1d(width + cross_dim, width, 1)
        self.att_linear_k = nn.Conv1d(width + cross_dim, width, 1)
        self.att_linear_v = nn.Conv1d(width, width, 1)
        self.ffn_block = nn.Sequential(nn.Conv1d(width, width, 1), nn.ReLU(), nn.Conv1d(width, width, 1))
        self.rel_pos_emb = nn.Embedding(POSITION_TABLE_SIZE, 1) if pos == "rel" else None
        self.dropout = nn.Dropout(dropout)

    def tap_bias(self) -> torch.Tensor | None:
        """β_j = E[10000 + min(j·d, 100)], one learned bias per tap, shared by all queries (spec §2, §9.4)."""
        if self.rel_pos_emb is None:
            return None
        return rel_tap_bias(self.rel_pos_emb.weight, self.dilation, self.kernel_size)

    def project_cross(self, cross: torch.Tensor) -> torch.Tensor:
        """[W_q^F·Fd + b_q ; W_k^F·Fd + b_k] as [B, 2C, L]: the decoder's q and k projections of the cross
        features, i.e. all of q and k that does not depend on x. At inference (no dropout) it is the same for
        every DDIM step, so it can be computed once (spec §1.4); it is the bias of the x part's matmul.
        """
        width = self.width
        cross = self.dropout(cross)  # its own dropout mask, independent of the one on x (spec §1.4)
        weight = torch.cat([self.att_linear_q.weight[:, width:], self.att_linear_k.weight[:, width:]])
        bias = torch.cat([self.att_linear_q.bias, self.att_linear_k.bias])
        return pointwise(weight, bias, cross)

    def projection_weight(self) -> torch.Tensor:
        """[W_q^x ; W_k^x ; W_v] as a [3C, C] matrix: the q, k, v projections of the layer input."""
        width = self.width
        q_weight, k_weight = self.att_linear_q.weight[:, :width], self.att_linear_k.weight[:, :width]
        return torch.cat([q_weight, k_weight, self.att_linear_v.weight]).reshape(3 * width, width)

    def attention(self, xd: torch.Tensor, cross_projection: torch.Tensor | None = None) -> torch.Tensor:
        """The attention branch on the dropped-out input xd (plus the decoder's `project_cross` term)."""
        width = self.width
        weight = self.projection_weight()
        if cross_projection is None:
            offset = torch.cat([self.att_linear_q.bias, self.att_linear_k.bias, self.att_linear_v.bias])
            query, key, value = pointwise(weight, offset, xd).split(width, dim=1)
        else:
            query, key = pointwise(weight[: 2 * width], cross_projection, xd).split(width, dim=1)
            value = pointwise(weight[2 * width :], self.att_linear_v.bias, xd)
        return dilated_attention(
            query, key, value, self.tap_bias(), self.dilation, self.kernel_size, impl=self.attention_impl
        )

    def dilated_conv(self, xd: torch.Tensor) -> torch.Tensor:
        """conv_block (a 'same' dilated conv) on xd. On CPU as K matmuls accumulated in place over the
        in-range slice of each tap: no padded copy or unfolded buffer, and faster than conv1d here."""
        conv = self.conv_block[0]
        if xd.device.type != "cpu":
            return conv(xd)
        center = self.kernel_size // 2
        out = pointwise(conv.weight[:, :, center], conv.bias, xd)
        for j, (offset, first, stop) in enumerate(tap_ranges(xd.shape[2], self.dilation, self.kernel_size)):
            if j != center and stop > first:
                tap = conv.weight[:, :, j].expand(xd.shape[0], -1, -1)
                out[:, :, first:stop].baddbmm_(tap, xd[:, :, first + offset : stop + offset])
        return out

    def fused_cpu(self, x: torch.Tensor) -> bool:
        """Whether this forward runs the fused CPU kernel: attention "auto" or "cpu", an inference forward
        (eval mode, no autograd) of float32 CPU data, a kernel size it handles, and the kernel built.
        "cpu" where it cannot run is an error; "auto" then takes the torch path."""
        if self.attention_impl not in ("auto", "cpu"):
            return False
        problem = cpu_kernel_problem(x, self.kernel_size)
        if problem is None and (self.training or torch.is_grad_enabled()):
            problem = "it runs inference forwards only (eval mode under torch.no_grad or inference_mode)"
        if problem is not None and self.attention_impl == "cpu":
            raise KernelError(f"attention impl 'cpu' cannot run this layer: {problem}; use 'torch' or 'auto'")
        return problem is None

    def inference_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The fused CPU path's matrices: conv taps and q, k, v weights stacked ([(K+3)·C, C], tap-major),
        the FFN's two [C, C] matrices, and the tap bias. Built once per `reused_buffers` block."""
        cache = getattr(_reuse, "weights", None)
        if cache is not None and id(self) in cache:
            return cache[id(self)]
        width = self.width
        taps = self.conv_block[0].weight.permute(2, 0, 1).reshape(-1, width)
        first, _, second = self.ffn_block
        weights = (
            torch.cat([taps, self.projection_weight()]),
            first.weight.reshape(width, width),
            second.weight.reshape(width, width),
            self.tap_bias(),
        )
        if cache is not None:
            cache[id(self)] = weights
        return weights

    def forward_cpu(self, x: torch.Tensor, cross_projection: torch.Tensor | None) -> torch.Tensor:
        """The inference forward by the fused CPU kernel: one matmul of x by the stacked conv taps and
        q, k, v weights, then conv + attention + instance norm in one kernel pass; the FFN's biases, ReLU
        and the residual are applied in place after its matmuls."""
        x = x.contiguous()
        batch, width, length = x.shape
        stacked, first_weight, second_weight, tap_bias = self.inference_weights()
        conv, (first, _, second) = self.conv_block[0], self.ffn_block
        projections = torch.bmm(
            stacked.expand(batch, -1, -1), x, out=_reused_buffer("projections", (batch, len(stacked), length))
        )
        biases = (
            (None, None) if cross_projection is not None else (self.att_linear_q.bias, self.att_linear_k.bias)
        )
        hidden = fused_mixed_norm(
            projections,
            self.kernel_size,
            self.dilation,
            cross=cross_projection,
            query_bias=biases[0],
            key_bias=biases[1],
            value_bias=self.att_linear_v.bias,
            conv_bias=conv.bias,
            tap_bias=tap_bias,
            norm_eps=NORM_EPS,
            out=_reused_buffer("hidden", x.shape),
        )
        inner = torch.bmm(first_weight.expand(batch, -1, -1), hidden, out=_reused_buffer("inner", x.shape))
        fused_bias_act(inner, first.bias, None, relu=True)
        out = torch.bmm(second_weight.expand(batch, -1, -1), inner)
        fused_bias_act(out, second.bias, x, relu=False)
        return out

    def forward(self, x: torch.Tensor, cross_projection: torch.Tensor | None = None) -> torch.Tensor:
        if self.fused_cpu(x):
            return self.forward_cpu(x, cross_projection)
        xd = self.dropout(x)  # one mask shared by the conv and attention branches; the residual uses x
        # In place on fresh tensors whose producers keep no outputs for backward: fewer allocations.
        hidden = instance_norm(self.dilated_conv(xd).add_(self.attention(xd, cross_projection)))
        first, _, second = self.ffn_block
        inner = F.relu_(pointwise(first.weight, first.bias, hidden))
        return pointwise(second.weight, second.bias, inner).add_(x)


_reuse = threading.local()


@contextlib.contextmanager
def reused_buffers() -> Iterator[None]:
    """Within this block, layers on the fused CPU path build their stacked weights once and reuse one
    buffer per thread for each of their within-layer intermediates (the stacked projections, the
    normalised mix, the FFN's inner activation) instead of allocating them per call: allocations above
    glibc's mmap threshold (32 MiB) are page-faulted afresh every time. All is dropped at the end of the
    outermost block, which must not outlive a change of the weights."""
    outermost = getattr(_reuse, "buffers", None) is None
    if outermost:
        _reuse.buffers, _reuse.weights = {}, {}
    try:
        yield
    finally:
        if outermost:
            _reuse.buffers = _reuse.weights = None


def _reused_buffer(name: str, shape: tuple[int, ...]) -> torch.Tensor | None:
    """A float32 CPU tensor of `shape` from the thread's buffer `name`, or None outside `reused_buffers`."""
    buffers = getattr(_reuse, "buffers", None)
    if buffers is None:
        return None
    size = math.prod(shape)
    if name not in buffers or buffers[name].numel() < size:
        buffers[name] = torch.empty(size)
    return buffers[name][:size].view(shape)


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Per-channel normalisation over time [B, C, L]: biased variance, eps 1e-5, no affine (spec §1.3).

    A single frame normalises to exactly 0 (torch's instance_norm refuses L = 1; so did the official code).
    """
    if x.shape[-1] == 1:
        return torch.zeros_like(x)
    return F.instance_norm(x, eps=NORM_EPS)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding [B, dim]: [sin(t·f), cos(t·f)], f_k = exp(−k·ln(10000)/(dim/2 − 1)) (§1.4)."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=t.device) * -step)
    angles = t[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
