"""Optional ways to run the DDIM denoiser faster: torch.compile (inductor) and CUDA-graph replay.

Both are off by default. `torch.compile` on this project's CPU targets took minutes to compile for a
~13 % faster decoder call (issue 17), so it only pays for long batch jobs; it falls back to eager
execution, with a warning, where inductor or its C++ compiler is missing or compilation fails.
CUDA graphs remove the per-kernel launch cost of the 25 decoder calls on a GPU: one graph per
(batch, length) is captured after a warm-up and replayed with the step's inputs copied into static
buffers; the random draws stay on the CPU generators in the official order (the sampler draws them).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable

import torch

from ..errors import ConfigError
from .diffusion import Denoiser

WARMUP_CALLS = 2


def compiler_available() -> bool:
    """Whether inductor can build CPU kernels here: torch._inductor imports and a C++ compiler is on PATH."""
    try:
        import torch._inductor  # noqa: F401
    except ImportError:
        return False
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def compiled_denoiser(denoise: Denoiser) -> Denoiser:
    """`denoise` through torch.compile; eager (with a warning) when the compiler is missing or fails."""
    if not compiler_available():
        warnings.warn("torch.compile needs inductor and a C++ compiler; running eagerly", stacklevel=2)
        return denoise
    compiled = torch.compile(denoise, dynamic=False)
    active: list[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = [compiled]

    def run(noisy_labels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        try:
            return active[0](noisy_labels, t)
        except Exception as error:  # inductor/dynamo failures surface as many exception types
            if active[0] is denoise:
                raise
            warnings.warn(f"torch.compile failed ({type(error).__name__}); running eagerly", stacklevel=2)
            active[0] = denoise
            return denoise(noisy_labels, t)

    return run


class CudaGraphDenoiser:
    """Replays one captured CUDA graph of `denoise` per DDIM step (static shapes per batch and length).

    The inputs are copied into static buffers before each replay; the returned logits are a copy, so the
    sampler may keep them across steps.
    """

    def __init__(self, denoise: Denoiser) -> None:
        self.denoise = denoise
        self.graph: torch.cuda.CUDAGraph | None = None
        self.noisy_labels: torch.Tensor | None = None
        self.t: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def _capture(self, noisy_labels: torch.Tensor, t: torch.Tensor) -> None:
        self.noisy_labels, self.t = noisy_labels.clone(), t.clone()
        side = torch.cuda.Stream(device=noisy_labels.device)
        side.wait_stream(torch.cuda.current_stream(noisy_labels.device))
        with torch.cuda.stream(side):  # warm-up outside the graph (lazy init, Triton autotuning)
            for _ in range(WARMUP_CALLS):
                self.denoise(self.noisy_labels, self.t)
        torch.cuda.current_stream(noisy_labels.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self.denoise(self.noisy_labels, self.t)

    def __call__(self, noisy_labels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            self._capture(noisy_labels, t)
        if noisy_labels.shape != self.noisy_labels.shape or t.shape != self.t.shape:
            raise ConfigError(
                f"a CUDA graph replays one shape: captured {tuple(self.noisy_labels.shape)}, "
                f"got {tuple(noisy_labels.shape)}"
            )
        self.noisy_labels.copy_(noisy_labels)
        self.t.copy_(t)
        self.graph.replay()
        return self.logits.clone()


def accelerated(
    denoise: Denoiser, device: torch.device, *, compile: bool = False, cuda_graphs: bool = False
) -> Denoiser:
    """`denoise` wrapped as requested: compiled (any device), or replayed from a CUDA graph (CUDA only)."""
    if cuda_graphs:
        if compile:
            raise ConfigError("choose one of compile and cuda_graphs")
        if torch.device(device).type != "cuda":
            raise ConfigError(f"cuda_graphs needs the model on a CUDA device, not {device}")
        return CudaGraphDenoiser(denoise)
    return compiled_denoiser(denoise) if compile else denoise
