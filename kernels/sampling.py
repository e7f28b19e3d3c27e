"""The DDIM sampler's elementwise CPU work in C (`cpu_sampling.c`, built with the layer kernel by `cpu`):
float64 standard-normal draws and the fused update of one sampling step. Both give exactly the numbers of
the torch operations they replace; where they cannot run here, or where this torch draws differently
(checked once against torch.randn), the callers keep the torch operations.
"""

from __future__ import annotations

import ctypes
import functools

import torch

from . import cpu

MIN_DRAW = 16  # torch's CPU sampler takes the Box-Muller path for contiguous draws of 16 values and more


class DDIMArgs(ctypes.Structure):
    """struct ddim_args of cpu_sampling.c, field for field."""

    _fields_ = [
        ("probs", ctypes.c_void_p),
        ("state", ctypes.c_void_p),
        ("noise", ctypes.c_void_p),
        ("wide_state", ctypes.c_int),
        ("wide_noise", ctypes.c_int),
        *((name, ctypes.c_double) for name in ("recip", "recipm1", "c", "sigma", "scale")),
        *((name, ctypes.c_float) for name in ("sqrt_alpha_next", "sigma_float", "scale_float")),
        ("x0", ctypes.c_void_p),
        ("next", ctypes.c_void_p),
        ("input", ctypes.c_void_p),
        ("n", ctypes.c_long),
        ("threads", ctypes.c_int),
    ]


@functools.cache
def _functions() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    """(normal_fill, ddim_update) from the built library, or None where it is unavailable."""
    if cpu.unavailable_reason() is not None:
        return None
    library = cpu.library()
    cpu.check_layout(library, "ddim_args", DDIMArgs)
    normal_fill, ddim_update = library.actfusion_normal_fill, library.actfusion_ddim_update
    normal_fill.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
    normal_fill.restype = ctypes.c_int
    ddim_update.argtypes = [ctypes.POINTER(DDIMArgs)]
    ddim_update.restype = None
    return normal_fill, ddim_update


def normal_draw(generator: torch.Generator, out: torch.Tensor) -> None:
    """torch.randn(out.shape, generator=generator, dtype=torch.float64, out=out) with the transform on
    torch's threads, for a contiguous float64 CPU `out` of MIN_DRAW values or more where
    `draws_like_torch` holds: the same numbers, the generator left in the same state."""
    count = out.numel()
    if out.dtype != torch.float64 or out.device.type != "cpu" or not out.is_contiguous() or count < MIN_DRAW:
        raise cpu.CpuKernelError(f"normal_draw needs a contiguous float64 CPU tensor of {MIN_DRAW}+ values")
    extra = MIN_DRAW if count % MIN_DRAW else 0
    uniforms = torch.rand(count + extra, generator=generator, dtype=torch.float64)
    normal_fill, _ = _functions()
    normal_fill(out.data_ptr(), uniforms.data_ptr(), count, torch.get_num_threads())


@functools.cache
def _reproduces_torch() -> bool:
    """Whether `normal_draw` gives torch.randn's values and generator state here (checked once, on sizes
    with and without a partial block of 16); False where the library is unavailable."""
    if _functions() is None:
        return False
    for count in (MIN_DRAW, 3 * MIN_DRAW, 5 * MIN_DRAW + 7):
        ours, theirs = torch.Generator().manual_seed(count), torch.Generator().manual_seed(count)
        drawn = torch.empty(count, dtype=torch.float64)
        normal_draw(ours, out=drawn)
        expected = torch.randn(count, generator=theirs, dtype=torch.float64)
        if not torch.equal(drawn, expected) or not torch.equal(ours.get_state(), theirs.get_state()):
            return False
    return True


def draws_like_torch(count: int) -> bool:
    """Whether `normal_draw` can stand in for torch.randn on float64 draws of `count` values here."""
    return count >= MIN_DRAW and _reproduces_torch()


def ddim_update(
    probs: torch.Tensor,
    state: torch.Tensor,
    noise: torch.Tensor,
    *,
    recip: float,
    recipm1: float,
    sqrt_alpha_next: float,
    c: float,
    sigma: float,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """One DDIM step's elementwise work (cpu_sampling.c spells it out) from the softmax `probs` (float32)
    and the float32 or float64 `state` and `noise` of its shape: (x0 float32, next state float64, the next
    decoder input float32). None where the library is unavailable or the tensors do not suit it."""
    functions = _functions()
    tensors = (probs, state, noise)
    if (
        functions is None
        or probs.dtype != torch.float32
        or any(t.dtype not in (torch.float32, torch.float64) for t in (state, noise))
        or any(t.device.type != "cpu" or not t.is_contiguous() or t.shape != probs.shape for t in tensors)
    ):
        return None
    x0, next_state = torch.empty_like(probs), torch.empty(probs.shape, dtype=torch.float64)
    decoder_in = torch.empty_like(probs)
    arguments = DDIMArgs(
        probs=probs.data_ptr(),
        state=state.data_ptr(),
        noise=noise.data_ptr(),
        wide_state=int(state.dtype == torch.float64),
        wide_noise=int(noise.dtype == torch.float64),
        recip=recip,
        recipm1=recipm1,
        c=c,
        sigma=sigma,
        scale=scale,
        sqrt_alpha_next=sqrt_alpha_next,
        sigma_float=sigma,
        scale_float=scale,
        x0=x0.data_ptr(),
        next=next_state.data_ptr(),
        input=decoder_in.data_ptr(),
        n=probs.numel(),
        threads=torch.get_num_threads(),
    )
    functions[1](ctypes.byref(arguments))
    return x0, next_state, decoder_in
