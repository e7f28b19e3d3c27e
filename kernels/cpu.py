"""The fused CPU kernel of one layer's inference forward (`cpu_layer.c`), built on first use.

The C source is compiled with the system C compiler (`$CC`, else cc/gcc/clang) for this machine's CPU into a
per-user cache (`$ACTFUSION_KERNEL_CACHE`, else `$XDG_CACHE_HOME/actfusion-sdk/kernels`), keyed by the
source, the compiler and the CPU's flags, and loaded with ctypes. Its OpenMP calls bind to the runtime that
torch has already loaded, so it shares torch's threads. Without a compiler, when the build fails, or with
ACTFUSION_CPU_KERNEL=0, `unavailable_reason()` says why and callers use the torch path. Importing this
module does not import triton.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_layer.c")
TILE = 256  # columns per tile (sizes the statistics scratch): checked against cpu_layer.c when it loads
MAX_TAPS = 16  # the largest kernel_size it handles: checked against cpu_layer.c when it loads
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c11")
_POINTER = ctypes.c_void_p


class MixArgs(ctypes.Structure):
    """struct mix_args of cpu_layer.c, field for field."""

    _fields_ = [
        ("y", _POINTER),
        ("y_stride", ctypes.c_long),
        *((name, _POINTER) for name in ("q", "k", "v")),
        *((f"{name}_stride", ctypes.c_long) for name in ("q", "k", "v")),
        *(
            field
            for name in ("x", "p", "pair")
            for field in ((name, _POINTER), (f"{name}_stride", ctypes.c_long))
        ),
        *((name, _POINTER) for name in ("bq", "bk", "bv", "bconv", "beta")),
        *((name, ctypes.c_long) for name in ("B", "C", "L", "K", "taps", "dilation")),
        ("expanded", ctypes.c_int),
        *((name, ctypes.c_float) for name in ("log_valid", "log_invalid", "eps")),
        ("out", _POINTER),
        ("stats", _POINTER),
        ("threads", ctypes.c_int),
    ]


class CpuKernelError(RuntimeError):
    """The CPU kernel could not be built or loaded here; the message says why."""


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    if os.environ.get("ACTFUSION_KERNEL_CACHE"):
        return Path(os.environ["ACTFUSION_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "actfusion-sdk" / "kernels"


def _cpu_flags() -> str:
    """The CPU's feature flags (what -march=native compiles for); empty where /proc/cpuinfo is absent."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


@functools.cache
def _library() -> ctypes.CDLL:
    compiler = _compiler()
    if compiler is None:
        raise CpuKernelError("no C compiler found (set CC, or install gcc)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), version, " ".join(FLAGS), _cpu_flags()]).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"cpu_layer-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = Path(scratch) / target.name
            command = [compiler, *FLAGS, "-o", str(built), str(SOURCE), "-lm"]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise CpuKernelError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
            os.replace(built, target)  # atomic: concurrent builders leave one complete file
    library = ctypes.CDLL(str(target))
    library.actfusion_mix.argtypes = [ctypes.POINTER(MixArgs)]
    library.actfusion_mix.restype = ctypes.c_int
    library.actfusion_bias_act.argtypes = [_POINTER] * 3 + [ctypes.c_long] * 3 + [ctypes.c_int] * 2
    library.actfusion_bias_act.restype = None
    for name, expected in (("actfusion_tile", TILE), ("actfusion_max_taps", MAX_TAPS)):
        getattr(library, name).restype = ctypes.c_long
        if getattr(library, name)() != expected:
            raise CpuKernelError(
                f"{target} disagrees with cpu.py on {name} ({getattr(library, name)()} vs {expected})"
            )
    return library


@functools.cache
def unavailable_reason() -> str | None:
    """None when the kernel is built and loaded, else why not (it is then never tried again)."""
    if os.environ.get("ACTFUSION_CPU_KERNEL", "1") == "0":
        return "disabled by ACTFUSION_CPU_KERNEL=0"
    try:
        _library()
    except (CpuKernelError, OSError) as error:
        return str(error)
    return None


def _address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _check(name: str, tensor: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    if tensor is None:
        return
    if tensor.dtype != torch.float32 or tensor.device.type != "cpu" or tensor.shape != shape:
        raise CpuKernelError(
            f"{name} must be a float32 CPU tensor of shape {shape}, got {tensor.dtype} on {tensor.device} "
            f"with shape {tuple(tensor.shape)}"
        )
    if not _rows_contiguous(tensor):
        raise CpuKernelError(f"{name} must be contiguous within each batch element")


def _rows_contiguous(tensor: torch.Tensor) -> bool:
    """Whether each batch element of a [B, C, L] tensor (or a vector) is one contiguous block."""
    return tensor.stride(-1) == 1 and (tensor.dim() != 3 or tensor.stride(1) == tensor.shape[2])


def mix(
    projections: torch.Tensor,
    kernel_size: int,
    dilation: int,
    *,
    cross: torch.Tensor | None = None,
    query_bias: torch.Tensor | None = None,
    key_bias: torch.Tensor | None = None,
    value_bias: torch.Tensor | None = None,
    conv_bias: torch.Tensor | None = None,
    tap_bias: torch.Tensor | None = None,
    expanded_input: torch.Tensor | None = None,
    pair: torch.Tensor | None = None,
    log_valid: float,
    log_invalid: float,
    norm_eps: float | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """conv + dilated attention (and instance norm when norm_eps is given) from stacked projections.

    Plain: projections [B, (K+3)·C, L] holds W_j·x for the K conv taps, then W_q·x, W_k·x,
    W_v·x; `cross` [B, 2C, L] is a per-position bias of q and k (instead of query_bias, key_bias).
    Expanded (`expanded_input` is x [B, C, L]): projections hold the taps, then W_q^T W_k·x, W_v·x;
    `cross` holds [W_k^T p_q; W_q^T p_k] and `pair` [B, K, L] p_q(t)·p_k(t + o_j) (cpu_layer.c explains).
    Returns out [B, C, L] (allocated when not given).
    """
    expanded = expanded_input is not None
    blocks = kernel_size + (2 if expanded else 3)
    batch, rows, length = projections.shape
    channels = rows // blocks
    _check("projections", projections, (batch, blocks * channels, length))
    _check("cross", cross, (batch, 2 * channels, length))
    _check("expanded_input", expanded_input, (batch, channels, length))
    _check("pair", pair, (batch, kernel_size, length))
    if expanded and (cross is None or pair is None):
        raise CpuKernelError("the expanded form needs cross and pair")
    for name, vector in (("query_bias", query_bias), ("key_bias", key_bias), ("value_bias", value_bias)):
        _check(name, vector, (channels,))
    _check("conv_bias", conv_bias, (channels,))
    _check("tap_bias", tap_bias, (kernel_size,))
    if out is None:
        out = projections.new_empty((batch, channels, length))
    _check("out", out, (batch, channels, length))
    if not out.is_contiguous():
        raise CpuKernelError("out must be contiguous")
    tiles = -(-length // TILE)
    stats = None if norm_eps is None else torch.empty(2 * batch * tiles * channels, dtype=torch.float64)
    _run(
        y=projections.data_ptr(),
        y_stride=projections.stride(0),
        **_batched("x", expanded_input),
        **_batched("p", cross),
        **_batched("pair", pair),
        bq=_address(query_bias),
        bk=_address(key_bias),
        bv=_address(value_bias),
        bconv=_address(conv_bias),
        beta=_address(tap_bias),
        B=batch,
        C=channels,
        L=length,
        K=kernel_size,
        taps=kernel_size,
        dilation=dilation,
        expanded=int(expanded),
        log_valid=log_valid,
        log_invalid=log_invalid,
        eps=0.0 if norm_eps is None else norm_eps,
        out=out.data_ptr(),
        stats=_address(stats),
    )
    return out


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int,
    dilation: int,
    *,
    tap_bias: torch.Tensor | None,
    log_valid: float,
    log_invalid: float,
) -> torch.Tensor:
    """Dilated attention alone on q, k, v [B, C, L] (copied where not contiguous within a batch element)."""
    q, k, v = (tensor if _rows_contiguous(tensor) else tensor.contiguous() for tensor in (q, k, v))
    shape = tuple(q.shape)
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        _check(name, tensor, shape)
    _check("tap_bias", tap_bias, (kernel_size,))
    out = q.new_empty(shape)
    _run(
        **_batched("q", q),
        **_batched("k", k),
        **_batched("v", v),
        beta=_address(tap_bias),
        B=shape[0],
        C=shape[1],
        L=shape[2],
        K=kernel_size,
        dilation=dilation,
        log_valid=log_valid,
        log_invalid=log_invalid,
        out=out.data_ptr(),
    )
    return out


def _run(**fields: int | float | None) -> None:
    """actfusion_mix on the given MixArgs fields (the rest zero/NULL), on torch's thread count."""
    arguments = MixArgs(**fields, threads=torch.get_num_threads())
    if _library().actfusion_mix(ctypes.byref(arguments)) != 0:
        raise CpuKernelError(
            f"the CPU kernel does not handle kernel_size {fields['K']}, dilation {fields['dilation']}, "
            f"{fields['B']} x {fields['C']} channels x {fields['L']} frames"
        )


def _batched(name: str, tensor: torch.Tensor | None) -> dict[str, int | None]:
    """A MixArgs pointer field and its batch stride."""
    return {name: _address(tensor), f"{name}_stride": 0 if tensor is None else tensor.stride(0)}


def bias_act(values: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None, relu: bool) -> None:
    """In place: values = act(values + bias[channel] (+ residual)), for contiguous [B, C, L] values."""
    batch, channels, length = values.shape
    if not values.is_contiguous():
        raise CpuKernelError("values must be contiguous")
    _check("values", values, (batch, channels, length))
    _check("bias", bias, (channels,))
    if residual is not None and not residual.is_contiguous():
        raise CpuKernelError("residual must be contiguous")
    _check("residual", residual, (batch, channels, length))
    _library().actfusion_bias_act(
        values.data_ptr(),
        bias.data_ptr(),
        _address(residual),
        batch,
        channels,
        length,
        int(relu),
        torch.get_num_threads(),
    )
