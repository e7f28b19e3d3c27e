"""Building blocks of ActFusion: the dilated conv + attention residual layer and the timestep embedding.

Module and parameter names follow the official state_dict (spec §1.2): `conv_block.0`, `att_linear_q/k/v`,
`ffn_block.0/.2`, `rel_pos_emb`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import (
    dilated_attention,
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
        cross = self.dropout(cross)  # its own dropout mask, independent of the one on x (spec §1.4)
        return pointwise(*self.cross_weights(), cross)

    def cross_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[W_q^F ; W_k^F] [2C, X, 1] and [b_q ; b_k] [2C]: the parts of the q and k projections that act
        on the cross features."""
        width = self.width
        weight = torch.cat([self.att_linear_q.weight[:, width:], self.att_linear_k.weight[:, width:]])
        return weight, torch.cat([self.att_linear_q.bias, self.att_linear_k.bias])

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

    def forward(self, x: torch.Tensor, cross_projection: torch.Tensor | None = None) -> torch.Tensor:
        xd = self.dropout(x)  # one mask shared by the conv and attention branches; the residual uses x
        # In place on fresh tensors whose producers keep no outputs for backward: fewer allocations.
        hidden = instance_norm(self.dilated_conv(xd).add_(self.attention(xd, cross_projection)))
        first, _, second = self.ffn_block
        inner = F.relu_(pointwise(first.weight, first.bias, hidden))
        return pointwise(second.weight, second.bias, inner).add_(x)


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
