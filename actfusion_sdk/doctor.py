"""`actfusion doctor`: what this installation runs and why, for a bug report (like `torch.utils.collect_env`).

`report(weights)` collects versions, devices, the CPU kernel's build status, which conv / attention / matmul
path each layer of the model takes and why, optional packages, and the weights and feature settings found;
`format_report` prints it as text. Nothing here changes state beyond building the CPU kernel where it has not
been built yet (that is what is being diagnosed) and timing the matmul choice once.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from .cache import cache_root
from .errors import ActFusionError

# What the report lists, in order: the packages the SDK needs, then the optional ones and what they enable.
REQUIRED_PACKAGES = ("torch", "torchvision", "pytorchvideo", "av", "numpy", "scipy", "safetensors")
OPTIONAL_PACKAGES = {
    "triton": "attention on CUDA (the Triton kernels)",
    "ray": "actfusion batch on a Ray cluster",
    "opencv-contrib-python-headless": "--settings mstcn (TV-L1 flow, OpenCV's resize)",
    "pympi-ling": "ELAN .eaf annotations",
    "selenium": "the viewer's browser tests",
}
TYPICAL_LENGTH = 2000  # frames per sampling stream at which the layer paths are reported


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _devices() -> dict[str, Any]:
    devices: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if devices["cuda"]:
        devices["gpus"] = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    return devices


def _kernel() -> dict[str, Any]:
    """The CPU kernel: whether it runs here, why not, where it is built and with which flags."""
    from .kernels import cpu

    reason = cpu.unavailable_reason()
    kernel: dict[str, Any] = {"available": reason is None, "reason": reason, "compiler": cpu._compiler()}
    try:
        kernel["flags"] = list(cpu.build_flags())
    except ActFusionError as error:
        kernel["flags"] = str(error)
    kernel["cache"] = str(cpu._cache_dir())
    if reason is None:
        kernel["library"] = str(next(cpu._cache_dir().glob(f"cpu_layer-{cpu._library_key()}.so"), ""))
    return kernel


def _matmul_path(depth: int) -> str:
    from .kernels import cpu

    if cpu.unavailable_reason() is not None:
        return "torch matmul (the CPU kernel is not built)"
    if depth < cpu.GEMM_MIN_DEPTH:
        return f"torch matmul (K = {depth} < {cpu.GEMM_MIN_DEPTH}, below the packed gemm's range)"
    choice = os.environ.get("ACTFUSION_CPU_GEMM")
    if choice in ("0", "1"):
        return f"{'packed gemm' if choice == '1' else 'torch matmul'} (ACTFUSION_CPU_GEMM={choice})"
    decision = cpu.gemm_decision(depth)
    name = "packed gemm" if decision.packed else "torch matmul"
    packed, by_torch = decision.packed_seconds * 1e3, decision.torch_seconds * 1e3
    timing = f"{packed:.2f} ms vs torch {by_torch:.2f} ms"
    return f"{name} ({decision.source} for K ~ {decision.depth_class}: {timing})"


def _layer_paths(config: Any, cross_dim: int, device: torch.device) -> dict[str, Any]:
    """Per stack of layers: the attention, conv and matmul paths of an inference forward at TYPICAL_LENGTH."""
    from .kernels import cpu, engine

    paths: dict[str, Any] = {}
    for name, stack, cross in (("encoder", config.encoder, 0), ("decoder", config.decoder, cross_dim)):
        if device.type == "cuda":
            triton = importlib.util.find_spec("triton") is not None
            paths[name] = {"attention": "triton (CUDA)" if triton else "torch (CUDA; triton not installed)"}
            continue
        reason = cpu.unavailable_reason()
        if reason is not None:
            paths[name] = {"attention": f"torch ({reason})", "conv": "torch taps", "matmul": "torch matmul"}
            continue
        winograd = [
            2**i
            for i in range(stack.num_layers)
            if engine.winograd_applies(stack.width, stack.kernel_size, 2**i, TYPICAL_LENGTH)
        ]
        conv = (
            f"Winograd F(4, {stack.kernel_size}) at dilations {winograd}, taps elsewhere"
            if winograd
            else f"taps (Winograd needs K in {sorted(cpu.WINOGRAD_POINTS)} and width >= "
            f"{engine.WINOGRAD_MIN_WIDTH})"
        )
        expanded = cross > 0 and stack.width >= 8 * stack.kernel_size
        paths[name] = {
            "attention": "fused CPU kernel (conv + attention + norm in one pass)"
            + (", expanded q·k" if expanded else ""),
            "conv": conv,
            "matmul": _matmul_path(stack.width),
        }
    return paths


def _weights(explicit: str | None) -> dict[str, Any]:
    from .model.checkpoint import load_card
    from .weights import resolve_weights

    try:
        path = resolve_weights(explicit)
        card = load_card(path)
    except ActFusionError as error:
        return {"error": str(error)}
    return {
        "path": str(path),
        "name": card.config.name,
        "classes": len(card.classes),
        "fps": card.fps,
        "features": card.features,
        "card": card,
    }


def report(weights: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Everything `actfusion doctor` prints, as a JSON-ready dict (`weights`: as `--weights`)."""
    from . import __version__
    from .runtime import resolve_device

    found = _weights(weights)
    card = found.pop("card", None)
    resolved = resolve_device(device)
    result: dict[str, Any] = {
        "actfusion_sdk": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in REQUIRED_PACKAGES},
        "optional": {name: _version(name) for name in OPTIONAL_PACKAGES},
        "opencv_tvl1": _tvl1_available(),
        "devices": _devices(),
        "device": str(resolved),
        "cache_root": str(cache_root()),
        "cpu_kernel": _kernel(),
        "weights": found,
    }
    if card is not None:
        result["paths"] = _layer_paths(
            card.config, card.config.encoder.cross_dim(len(card.classes)), resolved
        )
    return result


def _tvl1_available() -> bool:
    """Whether OpenCV's contrib TV-L1 (cv2.optflow) imports: what --settings mstcn needs for flow."""
    if importlib.util.find_spec("cv2") is None:
        return False
    import cv2

    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def format_report(data: dict[str, Any]) -> str:
    """The report as indented `key: value` lines."""
    lines: list[str] = []

    def emit(value: Any, indent: int) -> None:
        for key, item in value.items():
            if isinstance(item, dict):
                lines.append(f"{'  ' * indent}{key}:")
                emit(item, indent + 1)
            else:
                shown = "not installed" if item is None and indent and key in _PACKAGE_NAMES else item
                lines.append(f"{'  ' * indent}{key}: {shown}")

    emit(data, 0)
    return "\n".join(lines)


_PACKAGE_NAMES = set(REQUIRED_PACKAGES) | set(OPTIONAL_PACKAGES)
