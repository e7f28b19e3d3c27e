"""The CPU inference engine: runs a model's inference fast on a CPU from the outside, by the C kernels of
`cpu.py` and `sampling.py`. The model does not know it exists.

`engine_for(model)` gives the engine of a model (one per model, kept in a weak-key map), or the plain torch
engine where the fused path cannot run (another device, attention impl other than "auto", the kernel not
built here: `cpu.unavailable_reason()`). Inference runs inside `with engine.running():`, where

- each dilated attention layer's inference forward (eval mode, no autograd, float32 CPU data) runs one
  matmul of its input by its stacked conv taps and q, k, v weights, then conv + attention + instance norm in
  one kernel pass (`cpu.prepare_mix`), then the FFN, every matmul with its bias, ReLU and residual as a
  `Product`; decoder layers compute q·k in the expanded form where it pays (`expands_query_key`), and the conv
  goes by Winograd F(4, K) where it pays (`winograd_applies`);
- a layer's plan (`FusedForward`) is prepared once per input shape and cross projection, its weights are
  checked for changes once, and each thread reuses one buffer per intermediate (allocations above glibc's
  mmap threshold, 32 MiB, are page-faulted afresh every time);
- the decoder's cross projections and class logits go by the packed-weight gemm where it applies;

and `sampler_steps()` gives the DDIM sampler its elementwise work in C (the same numbers as torch's).
Outside a `running()` block the model runs its own torch code.

Choices: the packed-weight gemm against torch's matmul is measured here at first use (`cpu.gemm_decision`);
the Winograd conv and the expanded q·k are arithmetic decisions (fewer multiply-adds), not CPU flags.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from ..model.attention import log_mask_terms
from ..model.diffusion import DDIMStep, SamplerSteps, StepCoefficients
from ..model.layers import NORM_EPS, DilatedAttentionLayer, pointwise
from . import cpu, sampling

# The fused path computes the conv by Winograd F(4, K) from this width on, where its fewer multiply-adds
# outweigh the transforms (measured per layer: see `winograd_applies`).
WINOGRAD_MIN_WIDTH = 64
# ... and where its tiles cover at most this many times the frames (tiles pad L to a multiple of 4·d).
WINOGRAD_MAX_PADDING = 1.5


def winograd_sized(width: int, kernel_size: int) -> bool:
    """Whether a layer of this width and kernel size takes the Winograd conv at some lengths."""
    return kernel_size in cpu.WINOGRAD_POINTS and width >= WINOGRAD_MIN_WIDTH


def winograd_applies(width: int, kernel_size: int, dilation: int, length: int) -> bool:
    """Whether the fused path computes a layer's conv by Winograd F(4, K) at `length`: K = 3 or 5,
    C >= WINOGRAD_MIN_WIDTH, and tiles that pad the sequence by at most WINOGRAD_MAX_PADDING (dilations
    near L). It costs (K + 3)/4 instead of K C×C multiply-adds per frame, plus two passes over the data
    (measured per layer: -15 to -21 % at C = 128 and 256, neutral to -12 % at C = 64); its fp32 error is
    about 8x that of the direct sum on the conv, 1.6x in the sampled probabilities (breakfast, L = 2000)."""
    if not winograd_sized(width, kernel_size):
        return False
    padded = cpu.WINOGRAD_OUTPUTS * cpu.winograd_tiles(length, dilation)
    return padded <= WINOGRAD_MAX_PADDING * length


def expands_query_key(layer: DilatedAttentionLayer) -> bool:
    """Whether the fused path uses the expanded q·k (a decoder layer only): it saves a C×C matmul per step
    and costs about 3K multiply-adds per channel and position in the kernel, so it pays where C is well
    above K (measured per decoder call: -6 % at breakfast's C = 128, K = 5, L = 10k; +5 % at 50salads'
    C = 24, K = 7)."""
    return layer.cross_dim > 0 and layer.width >= 8 * layer.kernel_size


def kernel_problem(x: torch.Tensor, kernel_size: int) -> str | None:
    """None when the fused kernel can run on `x` with `kernel_size` taps, else why not."""
    problem = cpu.unavailable_reason()
    if problem is not None:
        return problem
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return f"it runs on float32 CPU tensors, got {x.dtype} on {x.device}"
    if kernel_size > cpu.MAX_TAPS:
        return f"it handles up to {cpu.MAX_TAPS} taps, got kernel_size {kernel_size}"
    return None


def fused_pointwise(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """The model's `pointwise` on the fused path: by `cpu.gemm` where it applies to the input's channels
    and the bias is per channel, else by `pointwise` itself."""
    if (bias is not None and bias.dim() != 1) or not cpu.gemm_applies(x.shape[1]):
        return pointwise(weight, bias, x)
    packed = cpu.pack_matrices(weight.reshape(weight.shape[0], -1))
    return cpu.gemm(packed, x.contiguous(), bias=bias)


@dataclass(frozen=True)
class FusedWeights:
    """A layer's matrices on the fused path: conv taps (tap-major) and W_q, W_k, W_v stacked [(K+3)·C, C];
    for decoder layers also the taps, W_q^T W_k and W_v [(K+2)·C, C] (the expanded q·k); the conv weight
    transformed for Winograd [α, C, C] where the layer may use it; the FFN's two [C, C] matrices; the tap
    bias."""

    stacked: torch.Tensor
    expanded: torch.Tensor | None
    winograd: torch.Tensor | None
    ffn_first: torch.Tensor
    ffn_second: torch.Tensor
    tap_bias: torch.Tensor | None
    _packed: dict[tuple[int, ...], cpu.PackedMatrices] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, layer: DilatedAttentionLayer) -> FusedWeights:
        """The matrices from the layer's current parameters."""
        width = layer.width
        taps = layer.conv_block[0].weight.permute(2, 0, 1).reshape(-1, width)
        q_weight, k_weight, v_weight = layer.projection_weight().split(width)
        expanded = None
        if expands_query_key(layer):
            # W_q^T W_k in float64, rounded once: the expanded form's single C×C stand-in for W_q and W_k.
            query_key = (q_weight.double().T @ k_weight.double()).to(q_weight.dtype)
            expanded = torch.cat([taps, query_key, v_weight])
        first, _, second = layer.ffn_block
        winograd = None
        if winograd_sized(width, layer.kernel_size):
            winograd = cpu.winograd_weight(layer.conv_block[0].weight)
        return cls(
            stacked=torch.cat([taps, q_weight, k_weight, v_weight]),
            expanded=expanded,
            winograd=winograd,
            ffn_first=first.weight.reshape(width, width).clone(),  # snapshots, not views of parameters
            ffn_second=second.weight.reshape(width, width).clone(),
            tap_bias=layer.tap_bias(),
        )

    def pack(self, matrix: torch.Tensor) -> cpu.PackedMatrices:
        """`cpu.pack_matrices` of one of these matrices (or rows of one), packed once and kept."""
        key = (matrix.data_ptr(), *matrix.shape, *matrix.stride())
        if key not in self._packed:
            self._packed[key] = cpu.pack_matrices(matrix)
        return self._packed[key]


@dataclass(frozen=True)
class ExpandedCross:
    """The expanded q·k's per-position terms for one cross projection `source` (kept, so that its identity
    stays valid): side [B, 2C, L] = [W_k^T p_q; W_q^T p_k], pair [B, K, L] = p_q(t)·p_k(t + o_j)."""

    source: torch.Tensor
    side: torch.Tensor
    pair: torch.Tensor


@dataclass(frozen=True)
class Product:
    """out = act(matrix · b + bias (+ residual)) on prepared tensors (b, out and the residual may be given
    anew per call): `cpu.gemm` on packed matrices where it applies, else a torch matmul (MKL) followed by
    the bias pass. `matrix` [M, K] or [count, M, K] (item i of b's leading dimensions takes matrix i mod
    count)."""

    matrix: torch.Tensor
    b: torch.Tensor
    out: torch.Tensor
    bias: torch.Tensor | None
    residual: torch.Tensor | None
    relu: bool
    kernel: cpu.PreparedGemm | None

    @classmethod
    def prepare(
        cls,
        matrix: torch.Tensor,
        b: torch.Tensor,
        out: torch.Tensor,
        bias: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
        relu: bool = False,
        pack: Callable[[torch.Tensor], cpu.PackedMatrices] = cpu.pack_matrices,
    ) -> Product:
        kernel = None
        if cpu.gemm_applies(matrix.shape[-1]):
            kernel = cpu.prepare_gemm(pack(matrix), b, out, bias=bias, residual=residual, relu=relu)
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
            cpu.bias_act(out, self.bias, residual, relu=self.relu)


@dataclass(frozen=True)
class FusedForward:
    """A layer's inference forward on the fused path, prepared for one input shape (and cross projection):
    matrices, buffers and the checked kernel calls, so that a call is the matmuls and kernel passes with
    little Python between them. Its buffers are reused by every call: the result of a call is the only
    fresh tensor."""

    kernel_size: int
    dilation: int
    cross_projection: torch.Tensor | None  # kept: the plan's key holds its id
    winograd: tuple[torch.Tensor, torch.Tensor, Product] | None  # inputs and products buffers, U·inputs
    project: Product  # x -> the stacked projections
    mix: cpu.PreparedMix  # into its `out`, the layer's hidden buffer
    expand: Product  # the FFN's first matmul, bias and ReLU: hidden -> inner
    contract: Product  # its second, bias and the residual: inner, x -> the result

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.mix.out
        if self.winograd is not None:
            inputs, products, conv = self.winograd
            cpu.winograd_input(x, self.kernel_size, self.dilation, out=inputs)
            conv()
            cpu.winograd_output(products, self.kernel_size, self.dilation, x.shape[2], out=hidden)
        self.project(x)
        self.mix.run(x if self.mix.expanded else None)
        self.expand()
        out = torch.empty_like(x)
        self.contract(out=out, residual=x)
        return out


class Block:
    """One thread's state inside `CpuEngine.running`: its buffers, the plans prepared, the expanded q·k
    terms built and the layers whose weights were checked, all dropped when the block ends."""

    def __init__(self) -> None:
        self.buffers: dict[str, torch.Tensor] = {}
        self.plans: dict[tuple, FusedForward] = {}
        self.cross: dict[DilatedAttentionLayer, ExpandedCross] = {}
        self.checked: set[DilatedAttentionLayer] = set()

    def buffer(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 tensor of `shape`: a view of this thread's buffer `name`."""
        size = math.prod(shape)
        if name not in self.buffers or self.buffers[name].numel() < size:
            self.buffers[name] = torch.empty(size)
        return self.buffers[name][:size].view(shape)


class _Route:
    """One of a module's methods routed through the engine while blocks run (set in the instance's
    __dict__, so the class's own method stays the torch path). A deep copy of the module gets a route
    of its own (which, outside a block, is the class's method)."""

    def __init__(self, engine: CpuEngine, module: nn.Module, name: str) -> None:
        self.engine, self.module, self.name = engine, module, name

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return getattr(self.engine, f"_routed_{self.name}")(self.module, *args, **kwargs)

    def __deepcopy__(self, memo: dict) -> _Route:
        return _Route(self.engine, memo.get(id(self.module), self.module), self.name)


class TorchEngine:
    """No engine: the model's own torch code and the sampler's torch operations."""

    def running(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def sampler_steps(self) -> SamplerSteps:
        return SamplerSteps()


class CpuEngine(TorchEngine):
    """The fused CPU path for one model (see the module's docstring); `engine_for` builds it once."""

    def __init__(self, model: nn.Module) -> None:
        self._model = weakref.ref(model)
        self._weights: weakref.WeakKeyDictionary[DilatedAttentionLayer, tuple[tuple, FusedWeights]] = (
            weakref.WeakKeyDictionary()
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._users = 0

    # ---- entering and leaving ------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Within this block, on this thread, the model's inference goes by the fused path where it can."""
        if self.block() is not None:  # nested: the outer block's state serves
            yield
            return
        self._local.block = Block()
        self._install()
        try:
            yield
        finally:
            self._local.block = None
            self._uninstall()

    def _install(self) -> None:
        """Route the model's layers, and its decoder's class logits, through this engine (once for all
        threads in a block)."""
        with self._lock:
            self._users += 1
            model = self._model()
            if self._users > 1 or model is None:
                return
            for module in model.modules():
                if isinstance(module, DilatedAttentionLayer):
                    module.forward = _Route(self, module, "forward")
                    module.project_cross = _Route(self, module, "project_cross")
            decoder = getattr(model, "decoder", None)
            if decoder is not None and hasattr(decoder, "logits"):
                decoder.logits = _Route(self, decoder, "logits")

    def _uninstall(self) -> None:
        with self._lock:
            self._users -= 1
            model = self._model()
            if self._users > 0 or model is None:
                return
            for module in model.modules():
                for name in ("forward", "project_cross", "logits"):
                    if isinstance(module.__dict__.get(name), _Route):
                        del module.__dict__[name]

    def block(self) -> Block | None:
        """This thread's state inside `running` (None outside a block)."""
        return getattr(self._local, "block", None)

    def runs(self, layer: DilatedAttentionLayer, x: torch.Tensor) -> bool:
        """Whether this call of `layer` on x goes by the fused path: inside a block on this thread,
        attention "auto", an inference forward of data the kernel takes."""
        return (
            self.block() is not None
            and layer.attention_impl == "auto"
            and not layer.training
            and not torch.is_grad_enabled()
            and kernel_problem(x, layer.kernel_size) is None
        )

    # ---- the routed methods --------------------------------------------------------------------------

    def _routed_forward(
        self, layer: DilatedAttentionLayer, x: torch.Tensor, cross_projection: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.runs(layer, x):
            return type(layer).forward(layer, x, cross_projection)
        x = x.contiguous()
        block = self.block()
        # A plan keeps its cross projection alive, so that the id in its key stays that tensor's.
        key = (layer, tuple(x.shape), None if cross_projection is None else id(cross_projection))
        plan = block.plans.get(key)
        if plan is None:
            plan = block.plans[key] = self.prepare_forward(layer, x, cross_projection)
        return plan(x)

    def _routed_project_cross(self, layer: DilatedAttentionLayer, cross: torch.Tensor) -> torch.Tensor:
        if not self.runs(layer, cross):
            return type(layer).project_cross(layer, cross)
        weight, bias = layer.cross_weights()
        return fused_pointwise(weight, bias, cross)

    def _routed_logits(self, decoder: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        # conv_out takes the fused path exactly where the layers before it did (same impl, same data)
        if not self.runs(decoder.module.layers[-1], hidden):
            return type(decoder).logits(decoder, hidden)
        return fused_pointwise(decoder.conv_out.weight, decoder.conv_out.bias, hidden)

    # ---- plans ---------------------------------------------------------------------------------------

    def weights(self, layer: DilatedAttentionLayer) -> FusedWeights:
        """The layer's fused matrices, built on first use and again after any change of its parameters
        (seen in their storage addresses and version counters; checked once per block, within which the
        weights must not change)."""
        block = self.block()
        cached = self._weights.get(layer)
        if block is not None and layer in block.checked and cached is not None:
            return cached[1]
        key = tuple((parameter.data_ptr(), parameter._version) for parameter in layer.parameters())
        if cached is None or cached[0] != key:
            cached = (key, FusedWeights.of(layer))
            self._weights[layer] = cached
        if block is not None:
            block.checked.add(layer)
        return cached[1]

    def expanded_cross(
        self, layer: DilatedAttentionLayer, cross_projection: torch.Tensor
    ) -> ExpandedCross | None:
        """The per-position terms of the expanded q·k (kernels/cpu_layer.c) for one cached cross
        projection [p_q; p_k]: [W_k^T p_q; W_q^T p_k] and p_q(t)·p_k(t + o_j). Built once per block; None
        outside one (they cost more than they save in a single call) or where the layer does not expand
        q·k."""
        block = self.block()
        if block is None or not expands_query_key(layer):
            return None
        cached = block.cross.get(layer)
        if cached is not None and cached.source is cross_projection:
            return cached
        width = layer.width
        q_weight, k_weight, _ = layer.projection_weight().split(width)
        p_query, p_key = cross_projection.split(width, dim=1)
        if cpu.gemm_applies(width) and cross_projection.is_contiguous():
            # Both halves in one call: item (b, h) of [B, 2, C, L] takes matrix h (W_k^T, then W_q^T).
            transposed = cpu.pack_matrices(torch.stack([k_weight.T, q_weight.T]))
            batch, _, length = cross_projection.shape
            halves = cross_projection.view(batch, 2, width, length)
            side = cpu.gemm(transposed, halves).view(batch, 2 * width, length)
        else:
            side = torch.cat([torch.matmul(k_weight.T, p_query), torch.matmul(q_weight.T, p_key)], dim=1)
        pair = cpu.tap_products(p_query, p_key, layer.kernel_size, layer.dilation)
        block.cross[layer] = ExpandedCross(source=cross_projection, side=side, pair=pair)
        return block.cross[layer]

    def prepare_forward(
        self, layer: DilatedAttentionLayer, x: torch.Tensor, cross_projection: torch.Tensor | None
    ) -> FusedForward:
        """The fused forward for inputs shaped like x (contiguous): one matmul of x by the stacked conv
        taps and q, k, v weights (or, for the decoder, by the taps, W_q^T W_k and W_v), the taps' rows
        left out where the conv goes by Winograd (`winograd_applies`), then conv + attention + instance
        norm in one kernel pass, then the FFN; every matmul with its bias, ReLU and residual is a
        `Product` (the packed-weight kernel where it applies)."""
        block = self.block() or Block()
        shape = x.shape
        batch, width, length = shape
        weights = self.weights(layer)
        conv, (first, _, second) = layer.conv_block[0], layer.ffn_block
        expansion = None if cross_projection is None else self.expanded_cross(layer, cross_projection)
        stacked = weights.stacked if expansion is None else weights.expanded
        hidden = block.buffer("hidden", shape)
        terms: dict[str, torch.Tensor | None] = {}
        winograd = None
        by_winograd = winograd_applies(width, layer.kernel_size, layer.dilation, length)
        if weights.winograd is not None and by_winograd:
            tiles = cpu.winograd_tiles(length, layer.dilation)
            buffers = tuple(
                block.buffer(name, (batch, len(weights.winograd), width, tiles))
                for name in ("winograd_inputs", "winograd_products")
            )
            winograd = (*buffers, Product.prepare(weights.winograd, *buffers, pack=weights.pack))
            terms["conv"] = hidden  # the conv goes into the mix's output, read there before overwritten
            stacked = stacked[layer.kernel_size * width :]  # q, k, v rows only
        projections = block.buffer("projections", (batch, len(stacked), length))
        if expansion is not None:
            terms |= {"cross": expansion.side, "expanded_input": x, "pair": expansion.pair}
        elif cross_projection is not None:
            terms["cross"] = cross_projection
        else:
            terms |= {"query_bias": layer.att_linear_q.bias, "key_bias": layer.att_linear_k.bias}
        log_invalid, log_valid = log_mask_terms()  # the official log-mask terms (spec §2)
        mix = cpu.prepare_mix(
            projections,
            layer.kernel_size,
            layer.dilation,
            value_bias=layer.att_linear_v.bias,
            conv_bias=conv.bias,
            tap_bias=weights.tap_bias,
            log_valid=log_valid,
            log_invalid=log_invalid,
            norm_eps=NORM_EPS,
            out=hidden,
            **terms,
        )
        inner = block.buffer("inner", shape)
        return FusedForward(
            kernel_size=layer.kernel_size,
            dilation=layer.dilation,
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

    # ---- the sampler ---------------------------------------------------------------------------------

    def sampler_steps(self) -> SamplerSteps:
        return CpuSamplerSteps()


class CpuSamplerSteps(SamplerSteps):
    """The DDIM sampler's elementwise work by `sampling.py`'s C functions where they run (the same numbers
    as the torch operations), else by torch."""

    def fill_normal(self, rows: Sequence[torch.Tensor], generators: Sequence[torch.Generator]) -> None:
        if rows[0].dtype != torch.float64 or not sampling.draws_like_torch(rows[0].numel()):
            super().fill_normal(rows, generators)
            return
        for row, generator in zip(rows, generators, strict=True):
            sampling.normal_draw(generator, out=row)

    def update(
        self,
        probs: torch.Tensor,
        state: torch.Tensor,
        noise: torch.Tensor,
        coefficients: StepCoefficients,
        scale: float,
    ) -> DDIMStep | None:
        if state.device.type != "cpu":
            return None
        values = {item.name: getattr(coefficients, item.name).item() for item in fields(coefficients)}
        fused = sampling.ddim_update(probs, state, noise, **values, scale=scale)
        if fused is None:
            return None
        x0, next_state, noisy_labels = fused
        return DDIMStep(state=next_state, x0=x0, noisy_labels=noisy_labels)


_ENGINES: weakref.WeakKeyDictionary[nn.Module, CpuEngine] = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def engine_for(model: nn.Module) -> TorchEngine:
    """The model's CPU engine (built once per model) where its parameters are float32 on the CPU and the
    kernel is built here, else the torch engine. Layers decide per call (`CpuEngine.runs`)."""
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        return TorchEngine()
    if cpu.unavailable_reason() is not None:
        return TorchEngine()
    with _ENGINES_LOCK:
        engine = _ENGINES.get(model)
        if engine is None:
            engine = _ENGINES[model] = CpuEngine(model)
    return engine
