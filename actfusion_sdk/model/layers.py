"""Building blocks of ActFusion: the dilated conv + attention residual layer and the timestep embedding.

Module and parameter names follow the official state_dict (spec §1.2): `conv_block.0`, `att_linear_q/k/v`,
`ffn_block.0/.2`, `rel_pos_emb`.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import KernelError
from ..kernels import cpu as cpu_kernel
from .attention import (
    cpu_kernel_problem,
    dilated_attention,
    prepare_fused_mixed_norm,
    rel_tap_bias,
    tap_ranges,
)

POSITION_TABLE_SIZE = 20000
NORM_EPS = 1e-5
# The fused CPU path computes the conv by Winograd F(4, K) (kernels/cpu.py) from this width on, where
# its fewer multiply-adds outweigh the transforms (measured per layer: see `winograd_applies`).
WINOGRAD_MIN_WIDTH = 64
# ... and where its tiles cover at most this many times the frames (tiles pad L to a multiple of 4·d).
WINOGRAD_MAX_PADDING = 1.5


def winograd_sized(width: int, kernel_size: int) -> bool:
    """Whether a layer of this width and kernel size takes the Winograd conv at some lengths."""
    return kernel_size in cpu_kernel.WINOGRAD_POINTS and width >= WINOGRAD_MIN_WIDTH


def winograd_applies(width: int, kernel_size: int, dilation: int, length: int) -> bool:
    """Whether the fused CPU path computes a layer's conv by Winograd F(4, K) at `length`: K = 3 or 5,
    C >= WINOGRAD_MIN_WIDTH, and tiles that pad the sequence by at most WINOGRAD_MAX_PADDING (dilations
    near L). It costs (K + 3)/4 instead of K C×C multiply-adds per frame, plus two passes over the data
    (measured per layer: -15 to -21 % at C = 128 and 256, neutral to -12 % at C = 64); its fp32 error is
    about 8x that of the direct sum on the conv, 1.6x in the sampled probabilities (breakfast, L = 2000)."""
    if not winograd_sized(width, kernel_size):
        return False
    padded = cpu_kernel.WINOGRAD_OUTPUTS * cpu_kernel.winograd_tiles(length, dilation)
    return padded <= WINOGRAD_MAX_PADDING * length


def pointwise(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution ([O, I, 1] weight, or an [O, I] matrix) on x [B, I, L] as one batched matmul
    (faster than conv1d on CPU).

    `bias` is a per-channel [O] vector or any term broadcastable to the output [B, O, L].
    """
    matrix = weight.reshape(weight.shape[0], -1).expand(x.shape[0], -1, -1)
    if bias is None:
        return torch.bmm(matrix, x)
    return torch.baddbmm(bias[:, None] if bias.dim() == 1 else bias, matrix, x)


def fused_pointwise(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """`pointwise` on the fused CPU path (the caller has checked that it runs): by `cpu_kernel.gemm` where
    it applies to the input's channels and the bias is per channel, else by `pointwise` itself."""
    if (bias is not None and bias.dim() != 1) or not cpu_kernel.gemm_applies(x.shape[1]):
        return pointwise(weight, bias, x)
    packed = cpu_kernel.pack_matrices(weight.reshape(weight.shape[0], -1))
    return cpu_kernel.gemm(packed, x.contiguous(), bias=bias)


@dataclass(frozen=True)
class FusedWeights:
    """A layer's matrices on the fused CPU path: conv taps (tap-major) and W_q, W_k, W_v stacked
    [(K+3)·C, C]; for decoder layers also the taps, W_q^T W_k and W_v [(K+2)·C, C] (the expanded q·k);
    the conv weight transformed for Winograd [α, C, C] where the layer may use it; the FFN's two [C, C]
    matrices; the tap bias."""

    stacked: torch.Tensor
    expanded: torch.Tensor | None
    winograd: torch.Tensor | None
    ffn_first: torch.Tensor
    ffn_second: torch.Tensor
    tap_bias: torch.Tensor | None
    _packed: dict[tuple[int, ...], cpu_kernel.PackedMatrices] = field(default_factory=dict, repr=False)

    def pack(self, matrix: torch.Tensor) -> cpu_kernel.PackedMatrices:
        """`cpu_kernel.pack_matrices` of one of these matrices (or rows of one), packed once and kept."""
        key = (matrix.data_ptr(), *matrix.shape, *matrix.stride())
        if key not in self._packed:
            self._packed[key] = cpu_kernel.pack_matrices(matrix)
        return self._packed[key]


@dataclass(frozen=True)
class ExpandedCross:
    """The expanded q·k's per-position terms for one cross projection `source` (kept, so that its
    identity stays valid): side [B, 2C, L] = [W_k^T p_q; W_q^T p_k], pair [B, K, L] = p_q(t)·p_k(t + o_j)."""

    source: torch.Tensor
    side: torch.Tensor
    pair: torch.Tensor


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
        self._fused: tuple[tuple[tuple[int, int], ...], FusedWeights] | None = None

    def __getstate__(self) -> dict:
        """Copies and pickles leave out the fused CPU path's weights (rebuilt on use)."""
        return {**super().__getstate__(), "_fused": None}

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
        return (fused_pointwise if self.fused_cpu(cross) else pointwise)(weight, bias, cross)

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

    def inference_weights(self) -> FusedWeights:
        """The fused CPU path's matrices, built on first use and again after any change of the layer's
        parameters (seen in their storage addresses and version counters; checked once per
        `reused_buffers` block, within which the weights must not change)."""
        checked = getattr(_reuse, "checked", None)
        if checked is None or id(self) not in checked:
            key = tuple((parameter.data_ptr(), parameter._version) for parameter in self.parameters())
            if self._fused is None or self._fused[0] != key:
                self._fused = (key, self._build_inference_weights())
            if checked is not None:
                checked[id(self)] = self  # the layer is kept so that its id stays its own
        return self._fused[1]

    def _build_inference_weights(self) -> FusedWeights:
        """The fused CPU path's matrices from the current parameters (`inference_weights` keeps them)."""
        width = self.width
        taps = self.conv_block[0].weight.permute(2, 0, 1).reshape(-1, width)
        q_weight, k_weight, v_weight = self.projection_weight().split(width)
        expanded = None
        if self.expands_query_key():
            # W_q^T W_k in float64, rounded once: the expanded form's single C×C stand-in for W_q and W_k.
            query_key = (q_weight.double().T @ k_weight.double()).to(q_weight.dtype)
            expanded = torch.cat([taps, query_key, v_weight])
        first, _, second = self.ffn_block
        winograd = None
        if winograd_sized(width, self.kernel_size):
            winograd = cpu_kernel.winograd_weight(self.conv_block[0].weight)
        return FusedWeights(
            stacked=torch.cat([taps, q_weight, k_weight, v_weight]),
            expanded=expanded,
            winograd=winograd,
            ffn_first=first.weight.reshape(width, width).clone(),  # snapshots, not views of parameters
            ffn_second=second.weight.reshape(width, width).clone(),
            tap_bias=self.tap_bias(),
        )

    def uses_winograd(self, length: int) -> bool:
        """Whether the fused CPU path takes the Winograd conv here at `length` (`winograd_applies`)."""
        return winograd_applies(self.width, self.kernel_size, self.dilation, length)

    def expands_query_key(self) -> bool:
        """Whether the fused CPU path uses the expanded q·k (a decoder layer only): it saves a C×C matmul
        per step and costs about 3K multiply-adds per channel and position in the kernel, so it pays
        where C is well above K (measured per decoder call: -6 % at breakfast's C = 128, K = 5,
        L = 10k; +5 % at 50salads' C = 24, K = 7)."""
        return self.cross_dim > 0 and self.width >= 8 * self.kernel_size

    def expanded_cross(self, cross_projection: torch.Tensor) -> ExpandedCross | None:
        """The per-position terms of the expanded q·k (kernels/cpu_layer.c) for one cached cross
        projection [p_q; p_k]: [W_k^T p_q; W_q^T p_k] and p_q(t)·p_k(t + o_j). Built once per
        `reused_buffers` block; None outside one (they cost more than they save in a single call) or
        where the layer does not expand q·k."""
        cache = getattr(_reuse, "cross", None)
        if cache is None or not self.expands_query_key():
            return None
        cached = cache.get(id(self))
        if cached is not None and cached.source is cross_projection:
            return cached
        width = self.width
        q_weight, k_weight, _ = self.projection_weight().split(width)
        p_query, p_key = cross_projection.split(width, dim=1)
        if cpu_kernel.gemm_applies(width) and cross_projection.is_contiguous():
            # Both halves in one call: item (b, h) of [B, 2, C, L] takes matrix h (W_k^T, then W_q^T).
            transposed = cpu_kernel.pack_matrices(torch.stack([k_weight.T, q_weight.T]))
            batch, _, length = cross_projection.shape
            halves = cross_projection.view(batch, 2, width, length)
            side = cpu_kernel.gemm(transposed, halves).view(batch, 2 * width, length)
        else:
            side = torch.cat([torch.matmul(k_weight.T, p_query), torch.matmul(q_weight.T, p_key)], dim=1)
        pair = cpu_kernel.tap_products(p_query, p_key, self.kernel_size, self.dilation)
        cache[id(self)] = ExpandedCross(source=cross_projection, side=side, pair=pair)
        return cache[id(self)]

    def forward_cpu(self, x: torch.Tensor, cross_projection: torch.Tensor | None) -> torch.Tensor:
        """The inference forward by the fused CPU kernel (`FusedForward`), prepared once per input shape
        and cross projection within a `reused_buffers` block, else for this call."""
        x = x.contiguous()
        plans = getattr(_reuse, "plans", None)
        # A plan keeps its cross projection alive, so that the id in its key stays that tensor's.
        key = (id(self), tuple(x.shape), None if cross_projection is None else id(cross_projection))
        plan = None if plans is None else plans.get(key)
        if plan is None:
            plan = self.prepare_forward(x, cross_projection)
            if plans is not None:
                plans[key] = plan
        return plan(x)

    def prepare_forward(self, x: torch.Tensor, cross_projection: torch.Tensor | None) -> FusedForward:
        """The fused CPU forward for inputs shaped like x (contiguous): one matmul of x by the stacked
        conv taps and q, k, v weights (or, for the decoder within a `reused_buffers` block, by the taps,
        W_q^T W_k and W_v), the taps' rows left out where the conv goes by Winograd (`uses_winograd`),
        then conv + attention + instance norm in one kernel pass, then the FFN; every matmul with its bias,
        ReLU and residual is a `Product` (the packed-weight kernel where it applies)."""
        shape = x.shape
        batch, width, length = shape
        weights = self.inference_weights()
        conv, (first, _, second) = self.conv_block[0], self.ffn_block
        expansion = None if cross_projection is None else self.expanded_cross(cross_projection)
        stacked = weights.stacked if expansion is None else weights.expanded
        hidden = _buffer("hidden", shape)
        terms: dict[str, torch.Tensor | None] = {}
        winograd = None
        if weights.winograd is not None and self.uses_winograd(length):
            tiles = cpu_kernel.winograd_tiles(length, self.dilation)
            buffers = tuple(
                _buffer(name, (batch, len(weights.winograd), width, tiles))
                for name in ("winograd_inputs", "winograd_products")
            )
            winograd = (*buffers, Product.prepare(weights.winograd, *buffers, pack=weights.pack))
            terms["conv"] = hidden  # the conv goes into the mix's output, read there before overwritten
            stacked = stacked[self.kernel_size * width :]  # q, k, v rows only
        projections = _buffer("projections", (batch, len(stacked), length))
        if expansion is not None:
            terms |= {"cross": expansion.side, "expanded_input": x, "pair": expansion.pair}
        elif cross_projection is not None:
            terms["cross"] = cross_projection
        else:
            terms |= {"query_bias": self.att_linear_q.bias, "key_bias": self.att_linear_k.bias}
        mix = prepare_fused_mixed_norm(
            projections,
            self.kernel_size,
            self.dilation,
            value_bias=self.att_linear_v.bias,
            conv_bias=conv.bias,
            tap_bias=weights.tap_bias,
            norm_eps=NORM_EPS,
            out=hidden,
            **terms,
        )
        inner = _buffer("inner", shape)
        return FusedForward(
            layer=self,
            cross_projection=cross_projection,
            winograd=winograd,
            project=Product.prepare(stacked, x, projections, pack=weights.pack),
            mix=mix,
            expand=Product.prepare(
                weights.ffn_first, hidden, inner, first.bias, relu=True, pack=weights.pack
            ),
            contract=Product.prepare(
                weights.ffn_second, inner, torch.empty_like(x), second.bias, residual=x, pack=weights.pack
            ),
        )

    def forward(self, x: torch.Tensor, cross_projection: torch.Tensor | None = None) -> torch.Tensor:
        if self.fused_cpu(x):
            return self.forward_cpu(x, cross_projection)
        xd = self.dropout(x)  # one mask shared by the conv and attention branches; the residual uses x
        # In place on fresh tensors whose producers keep no outputs for backward: fewer allocations.
        hidden = instance_norm(self.dilated_conv(xd).add_(self.attention(xd, cross_projection)))
        first, _, second = self.ffn_block
        inner = F.relu_(pointwise(first.weight, first.bias, hidden))
        return pointwise(second.weight, second.bias, inner).add_(x)


@dataclass(frozen=True)
class FusedForward:
    """A layer's inference forward on the fused CPU path, prepared for one input shape (and cross
    projection): matrices, buffers and the checked kernel calls, so that a call is the matmuls and kernel
    passes with little Python between them. Its buffers are reused by every call: the result of a call
    is the only fresh tensor."""

    layer: DilatedAttentionLayer
    cross_projection: torch.Tensor | None  # kept: the plan's key holds its id
    winograd: tuple[torch.Tensor, torch.Tensor, Product] | None  # inputs and products buffers, U·inputs
    project: Product  # x -> the stacked projections
    mix: cpu_kernel.PreparedMix  # into its `out`, the layer's hidden buffer
    expand: Product  # the FFN's first matmul, bias and ReLU: hidden -> inner
    contract: Product  # its second, bias and the residual: inner, x -> the result

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        layer, hidden = self.layer, self.mix.out
        if self.winograd is not None:
            inputs, products, conv = self.winograd
            cpu_kernel.winograd_input(x, layer.kernel_size, layer.dilation, out=inputs)
            conv()
            cpu_kernel.winograd_output(products, layer.kernel_size, layer.dilation, x.shape[2], out=hidden)
        self.project(x)
        self.mix.run(x if self.mix.expanded else None)
        self.expand()
        out = torch.empty_like(x)
        self.contract(out=out, residual=x)
        return out


@dataclass(frozen=True)
class Product:
    """out = act(matrix · b + bias (+ residual)) on prepared tensors (b, out and the residual may be
    given anew per call): `cpu_kernel.gemm` on packed matrices where it applies, else a torch matmul
    (MKL) followed by the bias pass. `matrix` [M, K] or [count, M, K] (item i of b's leading dimensions
    takes matrix i mod count)."""

    matrix: torch.Tensor
    b: torch.Tensor
    out: torch.Tensor
    bias: torch.Tensor | None
    residual: torch.Tensor | None
    relu: bool
    kernel: cpu_kernel.PreparedGemm | None

    @classmethod
    def prepare(
        cls,
        matrix: torch.Tensor,
        b: torch.Tensor,
        out: torch.Tensor,
        bias: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
        relu: bool = False,
        pack: Callable[[torch.Tensor], cpu_kernel.PackedMatrices] = cpu_kernel.pack_matrices,
    ) -> Product:
        kernel = None
        if cpu_kernel.gemm_applies(matrix.shape[-1]):
            packed = pack(matrix)
            kernel = cpu_kernel.prepare_gemm(packed, b, out, bias=bias, residual=residual, relu=relu)
        elif matrix.dim() == 2:
            matrix = matrix.expand(b.shape[0], -1, -1)  # for bmm
        return cls(matrix=matrix, b=b, out=out, bias=bias, residual=residual, relu=relu, kernel=kernel)

    def __call__(
        self,
        b: torch.Tensor | None = None,
        out: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
    ) -> None:
        if self.kernel is not None:
            self.kernel.run(b, out, residual)
            return
        out = self.out if out is None else out
        torch.matmul(self.matrix, self.b if b is None else b, out=out)
        if self.bias is not None:
            residual = self.residual if residual is None else residual
            cpu_kernel.bias_act(out, self.bias, residual, relu=self.relu)


_reuse = threading.local()


@contextlib.contextmanager
def reused_buffers() -> Iterator[None]:
    """Within this block, layers on the fused CPU path check their weights for changes once, prepare
    their forward (`FusedForward`) once per input shape and cross projection (decoder layers also build
    the expanded q·k's terms of their cross projection once), and reuse one buffer per thread for each
    of their within-layer intermediates (the stacked projections, the Winograd transforms, the
    normalised mix, the FFN's inner activation) instead of allocating them per call: allocations above
    glibc's mmap threshold (32 MiB) are page-faulted afresh every time. All is dropped at the end of the
    outermost block, which must not outlive a change of the weights."""
    outermost = getattr(_reuse, "buffers", None) is None
    if outermost:
        _reuse.buffers, _reuse.cross, _reuse.checked, _reuse.plans = {}, {}, {}, {}
    try:
        yield
    finally:
        if outermost:
            _reuse.buffers = _reuse.cross = _reuse.checked = _reuse.plans = None


def _buffer(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A float32 CPU tensor of `shape`: a view of the thread's buffer `name` within `reused_buffers`,
    else a new one."""
    buffers = getattr(_reuse, "buffers", None)
    if buffers is None:
        return torch.empty(shape)
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
