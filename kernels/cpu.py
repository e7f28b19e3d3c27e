"""The fused CPU kernel of one layer's inference forward (`cpu_layer.c`), built on first use: `mix` (conv +
dilated attention + instance norm from stacked projections; `prepare_mix` sets one up to run repeatedly),
`attention`, `bias_act`, `tap_products` (the expanded q·k's per-position terms), and the transforms of a
Winograd F(4, K) dilated conv (`winograd_weight`, `winograd_input`, `winograd_output`). The same library
holds the layer's matmuls by packed weights (`cpu_gemm.c`: `pack_matrices`, `gemm`, `prepare_gemm`, used
where `gemm_applies`) and the DDIM sampler's elementwise work (`cpu_sampling.c`, wrapped by `sampling`).

The C sources are compiled with the system C compiler (`$CC`, else cc/gcc/clang) with flags for this
machine's architecture (`build_flags`) into the SDK's one cache root (`$ACTFUSION_CACHE_DIR/kernels`, else
`~/.cache/actfusion-sdk/kernels`), keyed by the sources, the compiler, the flags and the CPU's features, built
once under a file lock (concurrent processes wait for one build), and loaded with ctypes; the C side reports
its structs' sizes and field offsets, checked against the ctypes mirrors before any call. Its OpenMP calls
bind to the runtime that torch has already loaded, so it shares torch's threads. Without a compiler, when the
build fails, or with ACTFUSION_CPU_KERNEL=0, `unavailable_reason()` says why (a failure is logged once) and
callers use the torch path. Importing this module does not import triton.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import torch

# The layer kernel, its matmuls (`gemm`) and the sampler's elementwise work (`sampling`), built into one
# library.
SOURCES = tuple(Path(__file__).with_name(name) for name in ("cpu_layer.c", "cpu_gemm.c", "cpu_sampling.c"))
TILE = 512  # columns per tile (sizes the statistics scratch): checked against cpu_layer.c when it loads
MAX_TAPS = 16  # the largest kernel_size it handles: checked against cpu_layer.c when it loads
_POINTER = ctypes.c_void_p
_LOG = logging.getLogger(__name__)
# Where Homebrew puts libomp: Apple clang builds with OpenMP only through it.
_LIBOMP_PREFIXES = (Path("/opt/homebrew/opt/libomp"), Path("/usr/local/opt/libomp"))


class MixArgs(ctypes.Structure):
    """struct mix_args of cpu_layer.c, field for field."""

    _fields_ = [
        ("y", _POINTER),
        ("y_stride", ctypes.c_long),
        *((name, _POINTER) for name in ("q", "k", "v")),
        *((f"{name}_stride", ctypes.c_long) for name in ("q", "k", "v")),
        *(
            field
            for name in ("x", "p", "pair", "conv")
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


class GemmArgs(ctypes.Structure):
    """struct gemm_args of cpu_gemm.c, field for field."""

    _fields_ = [
        ("a", _POINTER),
        *((name, ctypes.c_long) for name in ("a_count", "M", "K")),
        ("b", _POINTER),
        *((name, ctypes.c_long) for name in ("b_stride", "ldb")),
        ("c", _POINTER),
        *((name, ctypes.c_long) for name in ("c_stride", "ldc")),
        *((name, _POINTER) for name in ("bias", "residual")),
        *((name, ctypes.c_long) for name in ("residual_stride", "items", "N")),
        *((name, ctypes.c_int) for name in ("relu", "threads")),
    ]


class CpuKernelError(RuntimeError):
    """The CPU kernel could not be built or loaded here; the message says why."""


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cache_dir() -> Path:
    """The kernels' folder under the SDK's cache root (a per-process folder where the cache is disabled)."""
    from ..cache import cache_root

    root = cache_root()
    if root is None:
        return Path(tempfile.gettempdir()) / f"actfusion-kernels-{os.getpid()}"
    return root / "kernels"


@functools.cache
def _cpu_flags() -> str:
    """The CPU's feature flags (what -march=native compiles for); empty where /proc/cpuinfo is absent."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


def build_flags() -> tuple[str, ...]:
    """Compiler flags for this machine: the host's own instruction set on x86-64 (512-bit vectors preferred
    only where AVX-512 exists) and aarch64 (-mcpu=native); OpenMP, except on macOS without Homebrew's libomp
    (the kernel then runs single-threaded)."""
    flags = ["-O3", "-ffp-contract=fast", "-fPIC", "-shared", "-std=c11"]
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        flags.append("-march=native")
        if "avx512f" in _cpu_flags().split():
            flags.append("-mprefer-vector-width=512")
    elif machine in ("aarch64", "arm64"):
        flags.append("-mcpu=native")
    if sys.platform == "darwin":
        libomp = next((prefix for prefix in _LIBOMP_PREFIXES if (prefix / "lib").is_dir()), None)
        if libomp is not None:
            flags += ["-Xpreprocessor", "-fopenmp", f"-I{libomp}/include", f"-L{libomp}/lib", "-lomp"]
    else:
        flags.append("-fopenmp")
    return tuple(flags)


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (POSIX flock; no lock where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: builds may race; os.replace still leaves one complete file
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    """Compile the sources into `target` unless another process already has (under the folder's lock)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target.parent / "build.lock"):
        if target.exists():
            return
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            built = Path(scratch) / target.name
            command = [compiler, *flags, "-o", str(built), *map(str, SOURCES), "-lm"]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                error = result.stderr.strip()[-400:] or f"exit status {result.returncode}"
                raise CpuKernelError(f"building the CPU kernel with {compiler} failed: {error}")
            os.replace(built, target)


def check_layout(library: ctypes.CDLL, name: str, mirror: type[ctypes.Structure]) -> None:
    """The C struct `name` has the size, fields and field offsets of its ctypes mirror (else calls would
    corrupt memory)."""
    layout, fields = (getattr(library, f"actfusion_{name}_{part}") for part in ("layout", "fields"))
    layout.argtypes, layout.restype = [ctypes.POINTER(ctypes.c_long)], ctypes.c_long
    fields.argtypes, fields.restype = [], ctypes.c_char_p
    values = (ctypes.c_long * layout(None))()
    layout(values)
    names = fields().decode().split()
    mirrored = {field: getattr(mirror, field).offset for field, _ in mirror._fields_}
    in_c = dict(zip(names, values[1:], strict=True))
    if values[0] != ctypes.sizeof(mirror) or in_c != mirrored:
        raise CpuKernelError(
            f"struct {name} of the C sources does not match its ctypes mirror {mirror.__name__} "
            f"(size {values[0]} vs {ctypes.sizeof(mirror)}, offsets {in_c} vs {mirrored}); "
            "the sources and cpu.py are out of step"
        )


@functools.cache
def _library_key() -> str:
    """What the built library depends on (sources, compiler, flags, CPU features), hashed; raises
    CpuKernelError where there is no compiler."""
    compiler = _compiler()
    if compiler is None:
        raise CpuKernelError("no C compiler found (set CC, or install gcc)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    parts = [*(source.read_text() for source in SOURCES), version, " ".join(build_flags()), _cpu_flags()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@functools.cache
def library() -> ctypes.CDLL:
    """The built library (compiled on first use, then cached); CpuKernelError where that fails."""
    key = _library_key()
    compiler, flags = _compiler(), build_flags()
    target = _cache_dir() / f"cpu_layer-{key}.so"
    if not target.exists():
        _build(str(compiler), flags, target)
    library = ctypes.CDLL(str(target))
    library.actfusion_mix.argtypes = [ctypes.POINTER(MixArgs)]
    library.actfusion_mix.restype = ctypes.c_int
    library.actfusion_gemm.argtypes = [ctypes.POINTER(GemmArgs)]
    library.actfusion_gemm.restype = ctypes.c_int
    library.actfusion_gemm_pack.argtypes = [_POINTER, *[ctypes.c_long] * 3, _POINTER]
    library.actfusion_gemm_pack.restype = None
    library.actfusion_gemm_rows.restype = ctypes.c_long
    library.actfusion_bias_act.argtypes = [_POINTER] * 3 + [ctypes.c_long] * 3 + [ctypes.c_int] * 2
    library.actfusion_bias_act.restype = None
    tap_products = [_POINTER, _POINTER, ctypes.c_long, _POINTER, *[ctypes.c_long] * 5, ctypes.c_int]
    library.actfusion_tap_products.argtypes = tap_products
    library.actfusion_tap_products.restype = ctypes.c_int
    for name in ("actfusion_winograd_input", "actfusion_winograd_output"):
        getattr(library, name).argtypes = [_POINTER] * 3 + [ctypes.c_long] * 6 + [ctypes.c_int]
        getattr(library, name).restype = ctypes.c_int
    check_layout(library, "mix_args", MixArgs)
    check_layout(library, "gemm_args", GemmArgs)
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
        library()
    except (CpuKernelError, OSError) as error:
        _LOG.warning("the fused CPU kernel is not used, the torch path runs instead: %s", error)
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


@dataclasses.dataclass(frozen=True)
class PreparedMix:
    """A validated `mix` call on fixed tensors (`prepare_mix`): `run` calls the kernel, as often as needed,
    on whatever the tensors hold then; an expanded form may take a new input x of the same shape per run."""

    arguments: MixArgs
    out: torch.Tensor
    tensors: tuple[torch.Tensor | None, ...]  # every tensor the arguments point to, kept alive

    @property
    def expanded(self) -> bool:
        """Whether it computes q·k in the expanded form (and so takes the layer input x)."""
        return bool(self.arguments.expanded)

    def run(self, expanded_input: torch.Tensor | None = None) -> torch.Tensor:
        """The kernel on the prepared tensors (and this x for the expanded form); returns `out`."""
        if expanded_input is not None:
            if not self.expanded:
                raise CpuKernelError("this mix was not prepared for the expanded form")
            _check("expanded_input", expanded_input, tuple(self.out.shape))
            self.arguments.x = expanded_input.data_ptr()
            self.arguments.x_stride = expanded_input.stride(0)
        _call(self.arguments)
        return self.out


def prepare_mix(
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
    conv: torch.Tensor | None = None,
    log_valid: float,
    log_invalid: float,
    norm_eps: float | None,
    out: torch.Tensor | None = None,
) -> PreparedMix:
    """`mix` checked and set up once, to run later (see `mix` for the arguments)."""
    expanded = expanded_input is not None
    taps = 0 if conv is not None else kernel_size
    blocks = taps + (2 if expanded else 3)
    batch, rows, length = projections.shape
    channels = rows // blocks
    _check("projections", projections, (batch, blocks * channels, length))
    _check("cross", cross, (batch, 2 * channels, length))
    _check("expanded_input", expanded_input, (batch, channels, length))
    _check("pair", pair, (batch, kernel_size, length))
    _check("conv", conv, (batch, channels, length))
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
    arguments = MixArgs(  # the other fields zero/NULL
        y=projections.data_ptr(),
        y_stride=projections.stride(0),
        **_batched("x", expanded_input),
        **_batched("p", cross),
        **_batched("pair", pair),
        **_batched("conv", conv),
        bq=_address(query_bias),
        bk=_address(key_bias),
        bv=_address(value_bias),
        bconv=_address(conv_bias),
        beta=_address(tap_bias),
        B=batch,
        C=channels,
        L=length,
        K=kernel_size,
        taps=taps,
        dilation=dilation,
        expanded=int(expanded),
        log_valid=log_valid,
        log_invalid=log_invalid,
        eps=0.0 if norm_eps is None else norm_eps,
        out=out.data_ptr(),
        stats=_address(stats),
    )
    tensors = (projections, cross, query_bias, key_bias, value_bias, conv_bias, tap_bias)
    return PreparedMix(arguments=arguments, out=out, tensors=(*tensors, expanded_input, pair, conv, stats))


def mix(projections: torch.Tensor, kernel_size: int, dilation: int, **terms) -> torch.Tensor:
    """conv + dilated attention (and instance norm when norm_eps is given) from stacked projections.

    Plain: projections [B, (K+3)·C, L] holds W_j·x for the K conv taps, then W_q·x, W_k·x,
    W_v·x; `cross` [B, 2C, L] is a per-position bias of q and k (instead of query_bias, key_bias).
    Expanded (`expanded_input` is x [B, C, L]): projections hold the taps, then W_q^T W_k·x, W_v·x;
    `cross` holds [W_k^T p_q; W_q^T p_k] and `pair` [B, K, L] p_q(t)·p_k(t + o_j) (cpu_layer.c explains).
    With `conv` [B, C, L] (the conv without its bias, e.g. from `winograd_output`), projections hold no
    tap rows; `conv` may be `out` itself. Keyword arguments as `prepare_mix`; returns out [B, C, L]
    (allocated when not given).
    """
    return prepare_mix(projections, kernel_size, dilation, **terms).run()


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
    arguments = MixArgs(  # the other fields zero/NULL
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
    _call(arguments)
    return out


def _call(arguments: MixArgs) -> None:
    """actfusion_mix on `arguments`, on torch's current thread count."""
    arguments.threads = torch.get_num_threads()
    if library().actfusion_mix(ctypes.byref(arguments)) != 0:
        raise CpuKernelError(
            f"the CPU kernel does not handle kernel_size {arguments.K}, dilation {arguments.dilation}, "
            f"{arguments.B} x {arguments.C} channels x {arguments.L} frames"
        )


def _batched(name: str, tensor: torch.Tensor | None) -> dict[str, int | None]:
    """A MixArgs pointer field and its batch stride."""
    return {name: _address(tensor), f"{name}_stride": 0 if tensor is None else tensor.stride(0)}


def tap_products(query: torch.Tensor, key: torch.Tensor, kernel_size: int, dilation: int) -> torch.Tensor:
    """pair [B, K, L]: pair[b, j, t] = sum_c query[b, c, t] · key[b, c, t + o_j] where t + o_j is in range,
    else 0 (o_j = (j - K//2)·dilation), for query and key [B, C, L] that share their batch stride and are
    contiguous within a batch element (e.g. the two halves of a cross projection)."""
    batch, channels, length = query.shape
    _check("query", query, (batch, channels, length))
    _check("key", key, (batch, channels, length))
    if query.stride(0) != key.stride(0):
        raise CpuKernelError("query and key must share their batch stride")
    pair = query.new_empty((batch, kernel_size, length))
    status = library().actfusion_tap_products(
        query.data_ptr(),
        key.data_ptr(),
        query.stride(0),
        pair.data_ptr(),
        batch,
        channels,
        length,
        kernel_size,
        dilation,
        torch.get_num_threads(),
    )
    if status != 0:
        raise CpuKernelError(f"tap_products does not handle kernel_size {kernel_size}, dilation {dilation}")
    return pair


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
    library().actfusion_bias_act(
        values.data_ptr(),
        bias.data_ptr(),
        _address(residual),
        batch,
        channels,
        length,
        int(relu),
        torch.get_num_threads(),
    )


GEMM_MIN_DEPTH = 64  # `gemm` is used for K >= this (measured slower than MKL at K = 24)


def gemm_applies(depth: int) -> bool:
    """Whether the fused CPU path multiplies by `gemm` (else torch's matmuls) for K = `depth`: the kernel
    loaded, K >= GEMM_MIN_DEPTH, and ACTFUSION_CPU_GEMM=1 (0: never) or, without it, `gemm_decision`
    measured it faster than torch's matmul here for K's size class."""
    if depth < GEMM_MIN_DEPTH or unavailable_reason() is not None:
        return False
    choice = os.environ.get("ACTFUSION_CPU_GEMM")
    if choice in ("0", "1"):
        return choice == "1"
    return gemm_decision(depth).packed


@dataclasses.dataclass(frozen=True)
class GemmDecision:
    """Packed-weight `gemm` or torch's matmul for one size class of K (a power of two): the best of
    GEMM_TRIALS timed runs of each on a layer-sized product, measured on this machine at first use and
    kept beside the built library (`source` says which)."""

    depth_class: int
    packed: bool
    packed_seconds: float
    torch_seconds: float
    source: str  # "measured" now, or "cached" from an earlier process


GEMM_TRIALS = 5
GEMM_TRIAL_COLUMNS = 2048  # frames of the trial product: [3K, K] weights (q, k, v) by [K, 2048]


def _decisions_path() -> Path:
    return _cache_dir() / f"gemm-decisions-{_library_key()}.json"


def gemm_decision(depth: int) -> GemmDecision:
    """The measured choice for K's size class (read from the library's cache, else timed now and kept)."""
    return _class_decision(1 << (depth.bit_length() - 1))


@functools.cache
def _class_decision(depth_class: int) -> GemmDecision:
    path = _decisions_path()
    known = _read_decisions(path)
    if str(depth_class) in known:
        packed_seconds, torch_seconds = known[str(depth_class)]
        source = "cached"
    else:
        packed_seconds, torch_seconds = _time_products(depth_class)
        source = "measured"
        with contextlib.suppress(OSError), _build_lock(path.parent / "build.lock"):
            known = _read_decisions(path) | {str(depth_class): [packed_seconds, torch_seconds]}
            scratch = path.with_name(f".{path.name}.{os.getpid()}")
            scratch.write_text(json.dumps(known, indent=1))
            os.replace(scratch, path)
    return GemmDecision(depth_class, packed_seconds < torch_seconds, packed_seconds, torch_seconds, source)


def _read_decisions(path: Path) -> dict[str, list[float]]:
    """The kept measurements {K class: [packed s, torch s]}; an unreadable file counts as none."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: value
        for key, value in data.items()
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value)
    }


def _time_products(depth: int) -> tuple[float, float]:
    """Best-of-GEMM_TRIALS seconds of one layer-sized product with bias by `gemm` and by torch.matmul
    plus the bias pass (the two ways a `Product` runs), alternated so that both see the same machine."""
    generator = torch.Generator().manual_seed(0)
    matrix = torch.randn(3 * depth, depth, generator=generator)
    b = torch.randn(1, depth, GEMM_TRIAL_COLUMNS, generator=generator)
    bias = torch.randn(3 * depth, generator=generator)
    out = torch.empty(1, 3 * depth, GEMM_TRIAL_COLUMNS)
    packed = prepare_gemm(pack_matrices(matrix), b, out, bias=bias)
    batched = matrix.expand(1, -1, -1)

    def by_torch() -> None:
        torch.matmul(batched, b, out=out)
        bias_act(out, bias, None, relu=False)

    best = [math.inf, math.inf]
    for trial in range(GEMM_TRIALS + 1):  # the first round warms up
        for index, run in enumerate((packed.run, by_torch)):
            started = time.perf_counter()
            run()
            if trial:
                best[index] = min(best[index], time.perf_counter() - started)
    return best[0], best[1]


@dataclasses.dataclass(frozen=True)
class PackedMatrices:
    """`count` matrices [rows, depth] packed for `gemm` (blocks of the kernel's register rows)."""

    data: torch.Tensor
    count: int
    rows: int
    depth: int


def pack_matrices(matrices: torch.Tensor) -> PackedMatrices:
    """Packs float32 matrices [M, K] or [count, M, K] (copied; the packing is done once per weight)."""
    if matrices.dtype != torch.float32 or matrices.device.type != "cpu" or matrices.dim() not in (2, 3):
        raise CpuKernelError(f"gemm packs float32 CPU matrices, got {matrices.dtype} {tuple(matrices.shape)}")
    stack = matrices.reshape(-1, *matrices.shape[-2:]).contiguous()
    count, rows, depth = stack.shape
    block = library().actfusion_gemm_rows()
    data = stack.new_empty(count * -(-rows // block) * block * depth)
    library().actfusion_gemm_pack(stack.data_ptr(), count, rows, depth, data.data_ptr())
    return PackedMatrices(data=data, count=count, rows=rows, depth=depth)


@dataclasses.dataclass(frozen=True)
class PreparedGemm:
    """A validated `gemm` on fixed tensors (`prepare_gemm`): `run` calls the kernel, as often as needed;
    it may take a new input, output or residual of the prepared shape per run."""

    arguments: GemmArgs
    shapes: tuple[tuple[int, ...], tuple[int, ...]]  # of the input and of the output (and residual)
    tensors: tuple[torch.Tensor | None, ...]  # every tensor the arguments point to, kept alive

    def run(
        self,
        b: torch.Tensor | None = None,
        out: torch.Tensor | None = None,
        residual: torch.Tensor | None = None,
    ) -> None:
        """The kernel on the prepared tensors, or on these in their place."""
        arguments = self.arguments
        for field, name, tensor, shape in (
            ("b", "b", b, 0),
            ("c", "out", out, 1),
            ("residual", "residual", residual, 1),
        ):
            if tensor is not None:
                if field == "residual" and not arguments.residual:
                    raise CpuKernelError("this gemm was not prepared with a residual")
                _check_items(name, tensor, self.shapes[shape])
                setattr(arguments, field, tensor.data_ptr())
        arguments.threads = torch.get_num_threads()
        if library().actfusion_gemm(ctypes.byref(arguments)) != 0:
            raise CpuKernelError("gemm could not allocate its per-thread panel buffers")


def prepare_gemm(
    packed: PackedMatrices,
    b: torch.Tensor,
    out: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    relu: bool = False,
) -> PreparedGemm:
    """`gemm` checked and set up once, to run later (see `gemm` for the arguments)."""
    *outer, depth, columns = b.shape
    items = math.prod(outer)
    if depth != packed.depth or items % packed.count:
        raise CpuKernelError(
            f"gemm of {packed.count} x [{packed.rows}, {packed.depth}] matrices cannot take an input "
            f"of shape {tuple(b.shape)}"
        )
    shapes = (tuple(b.shape), (*outer, packed.rows, columns))
    _check_items("b", b, shapes[0])
    _check_items("out", out, shapes[1])
    _check_items("residual", residual, shapes[1])
    _check("bias", bias, (packed.rows,))
    arguments = GemmArgs(
        a=packed.data.data_ptr(),
        a_count=packed.count,
        M=packed.rows,
        K=depth,
        b=b.data_ptr(),
        b_stride=depth * columns,
        ldb=columns,
        c=out.data_ptr(),
        c_stride=packed.rows * columns,
        ldc=columns,
        bias=_address(bias),
        residual=_address(residual),
        residual_stride=packed.rows * columns,
        items=items,
        N=columns,
        relu=int(relu),
    )
    return PreparedGemm(arguments=arguments, shapes=shapes, tensors=(packed.data, b, out, bias, residual))


def gemm(
    packed: PackedMatrices,
    b: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    relu: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """out[..., M, N] = act(A_i · b[..., K, N] + bias[M] (+ residual)) for contiguous b, item i (of the
    leading dimensions, flattened) taking packed matrix i mod count; act = ReLU or identity. Returns out
    (allocated when not given)."""
    if out is None:
        out = b.new_empty((*b.shape[:-2], packed.rows, b.shape[-1]))
    prepare_gemm(packed, b, out, bias=bias, residual=residual, relu=relu).run()
    return out


def _check_items(name: str, tensor: torch.Tensor | None, shape: tuple[int, ...]) -> None:
    """`_check`, and the whole tensor contiguous."""
    _check(name, tensor, shape)
    if tensor is not None and not tensor.is_contiguous():
        raise CpuKernelError(f"{name} must be contiguous")


# Winograd F(4, K) for the 'same' dilated conv: 4 outputs per tile from K + 3 products, i.e. 2 (K = 5)
# instead of K C×C multiply-adds per output. The interpolation points (with infinity) are those of the
# smallest error among the sets tried for K = 5, C = 128 (about 8x that of the direct sum in fp32).
WINOGRAD_OUTPUTS = 4
WINOGRAD_POINTS = {
    3: (0, 1, -1, 2, -2),
    5: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)),
}


def _polynomial(roots: list[Fraction]) -> list[Fraction]:
    """Coefficients (lowest degree first) of prod (x - root)."""
    coefficients = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0), *coefficients]
        coefficients = [
            high - root * low for high, low in zip(shifted, [*coefficients, Fraction(0)], strict=True)
        ]
    return coefficients


@functools.cache
def winograd_matrices(kernel_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(AT [m, α], G [α, K], BT [α, α]) in float64 for F(m = 4, K), α = m + K − 1 points (the last one
    infinity): y_r = sum_k AT[r, k] · (G·w)_k · (BT·d)_k for the correlation y_r = sum_j w_j d_{r+j}.
    BT's rows are scaled to coprime integers, G's rows by the inverse factor (G is applied once to the
    weights, in float64)."""
    if kernel_size not in WINOGRAD_POINTS:
        raise CpuKernelError(f"no Winograd points for kernel_size {kernel_size}")
    outputs, points = WINOGRAD_OUTPUTS, [Fraction(p) for p in WINOGRAD_POINTS[kernel_size]]
    size = outputs + kernel_size - 1

    def evaluation(columns: int) -> list[list[Fraction]]:
        rows = [[point**power for power in range(columns)] for point in points]
        return [*rows, [Fraction(0)] * (columns - 1) + [Fraction(1)]]

    after, weights = evaluation(outputs), evaluation(kernel_size)
    # BT = V^-T: row k holds the coefficients of the k-th Lagrange basis polynomial on the finite points,
    # the last row those of prod (x - point) (the leading coefficient comes from infinity).
    basis = []
    for k, point in enumerate(points):
        others = points[:k] + points[k + 1 :]
        scale = Fraction(1)
        for other in others:
            scale *= point - other
        basis.append([value / scale for value in _polynomial(others)] + [Fraction(0)])
    basis.append(_polynomial(points))
    for k, row in enumerate(basis):
        factor = math.lcm(*(value.denominator for value in row)) / Fraction(
            math.gcd(*(value.numerator for value in row))
        )
        basis[k] = [value * factor for value in row]
        weights[k] = [value / factor for value in weights[k]]
    as_tensor = functools.partial(torch.tensor, dtype=torch.float64)
    after_t = as_tensor([[float(after[k][r]) for k in range(size)] for r in range(outputs)])
    return (
        after_t,
        as_tensor([[float(v) for v in row] for row in weights]),
        as_tensor([[float(v) for v in row] for row in basis]),
    )


def winograd_tiles(length: int, dilation: int) -> int:
    """Tiles of 4 outputs that cover `length` frames at `dilation` (tile rows of the transformed data)."""
    return dilation * -(-length // (WINOGRAD_OUTPUTS * dilation))


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight [O, C, K] transformed for `winograd_output`: U = G·W as [α, O, C], computed in float64
    and rounded once."""
    _, g, _ = winograd_matrices(weight.shape[2])
    return torch.einsum("kj,ocj->koc", g, weight.double()).to(weight.dtype).contiguous()


def winograd_input(
    x: torch.Tensor, kernel_size: int, dilation: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The input transform of x [B, C, L]: V [B, α, C, tiles], multiplied by `winograd_weight` (U[k]·V[k])."""
    batch, channels, length = x.shape
    _, bt = _transform_matrices(kernel_size)
    shape = (batch, len(bt), channels, winograd_tiles(length, dilation))
    _check("x", x, (batch, channels, length))
    if out is None:
        out = x.new_empty(shape)
    if out.shape != shape or not out.is_contiguous() or not x.is_contiguous():
        raise CpuKernelError(f"winograd_input needs contiguous x and out of shape {shape}")
    _transform("actfusion_winograd_input", x, out, bt, batch, channels, length, kernel_size, dilation)
    return out


def winograd_output(
    products: torch.Tensor, kernel_size: int, dilation: int, length: int, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The output transform of the products M [B, α, C, tiles]: the conv [B, C, length] without its bias."""
    batch, points, channels, tiles = products.shape
    at, _ = _transform_matrices(kernel_size)
    if points != at.shape[1] or tiles != winograd_tiles(length, dilation) or not products.is_contiguous():
        raise CpuKernelError(
            f"winograd_output needs contiguous products [B, {at.shape[1]}, C, "
            f"{winograd_tiles(length, dilation)}], got {tuple(products.shape)}"
        )
    if out is None:
        out = products.new_empty((batch, channels, length))
    _check("out", out, (batch, channels, length))
    if not out.is_contiguous():
        raise CpuKernelError("out must be contiguous")
    _transform("actfusion_winograd_output", products, out, at, batch, channels, length, kernel_size, dilation)
    return out


@functools.cache
def _transform_matrices(kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """AT and BT of `winograd_matrices` in float32 (exact: small integers and powers of two)."""
    at, _, bt = winograd_matrices(kernel_size)
    return at.float(), bt.float()


def _transform(
    name: str, source: torch.Tensor, target: torch.Tensor, matrix: torch.Tensor, *sizes: int
) -> None:
    batch, channels, length, kernel_size, dilation = sizes
    status = getattr(library(), name)(
        source.data_ptr(),
        target.data_ptr(),
        matrix.data_ptr(),
        batch,
        channels,
        length,
        kernel_size,
        WINOGRAD_OUTPUTS,
        dilation,
        torch.get_num_threads(),
    )
    if status != 0:
        raise CpuKernelError(f"{name} does not handle kernel_size {kernel_size}, dilation {dilation}")
