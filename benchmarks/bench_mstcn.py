"""Cost of the MS-TCN features (issue 30): seconds of work per second of 320×240 15 fps video, for the RGB
stream's network, the flow stream's network and TV-L1 optical flow, beside the matmul rate of the same run.

    .venv/bin/python benchmarks/bench_mstcn.py                  # this CPU
    .venv/bin/python benchmarks/bench_mstcn.py --device cuda    # networks on the GPU (TV-L1 stays on the CPU)
    .venv/bin/python benchmarks/bench_mstcn.py --quick          # one repeat, batch 1 (proves it runs)

Every frame of the video gets one 21-frame window per stream, so a second of 15 fps video is 15 windows per
network and 15 TV-L1 fields (at the video's full 320×240 resolution). Work per video second = seconds per
window (or field) × 15; below 1 the stream runs faster than real time. Random weights: the cost does not
depend on their values. Achieved GFLOP/s = FLOPs of one window (torch.utils.flop_counter, 2 per
multiply-add) / time. TV-L1 is OpenCV contrib's CPU implementation (the pip wheels have no CUDA): it
bounds a GPU run.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch
from harness import best_seconds, matmul_gflops
from torch.utils.flop_counter import FlopCounterMode

from actfusion_sdk.errors import ConfigError
from actfusion_sdk.features.flow import FlowField
from actfusion_sdk.features.inception_i3d import InceptionI3d
from actfusion_sdk.features.mstcn_frames import FrameGeometry, require_opencv

VIDEO_FPS = 15
WIDTH, HEIGHT = 320, 240
WINDOW = 21


def window_batch(channels: int, batch: int, device: torch.device) -> torch.Tensor:
    """Random network input [batch, channels, 21, 224, 224] in [-1, 1]."""
    return torch.rand(batch, channels, WINDOW, 224, 224, device=device) * 2 - 1


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def network_row(name: str, channels: int, batch: int, repeats: int, device: torch.device) -> dict:
    """Seconds per window of one stream's network, and its achieved GFLOP/s."""
    network = InceptionI3d(channels).to(device).eval()
    inputs = window_batch(channels, batch, device)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            network.features(inputs[:1])
        window_flops = counter.get_total_flops()

        def run() -> None:
            network.features(inputs)
            synchronize(device)

        seconds = best_seconds(run, repeats) / batch
    return {
        "what": f"{name} network (batch {batch}, {device.type})",
        "per_item": seconds,
        "gflops": window_flops / seconds / 1e9,
    }


def textured_pair(shift: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Two 320×240 grey frames: smoothed noise, the second moved ``shift`` px right."""
    cv2 = require_opencv()
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH + shift)).astype(np.uint8), (5, 5), 1.5)
    return np.ascontiguousarray(image[:, shift:]), np.ascontiguousarray(image[:, :-shift])


def tvl1_row(repeats: int) -> dict:
    """Seconds per TV-L1 field at 320×240 (with the resize, crop and clip the flow stream applies)."""
    field, geometry = FlowField(), FrameGeometry(HEIGHT, WIDTH)
    previous, current = textured_pair()
    seconds = best_seconds(lambda: field.network_input(previous, current, geometry), repeats)
    return {
        "what": f"TV-L1 {WIDTH}x{HEIGHT} (OpenCV {require_opencv().__version__}, CPU)",
        "per_item": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="where the networks run (cpu, cuda)")
    parser.add_argument("--batch", type=int, default=4, help="windows per forward")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="batch 1, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = 1, 1
    device = torch.device(args.device)
    cpu = platform.processor() or platform.machine()
    machine = torch.cuda.get_device_name() if device.type == "cuda" else f"{cpu}, {os.cpu_count()} CPUs"
    rate = matmul_gflops()
    rows = [
        network_row("RGB", 3, args.batch, args.repeats, device),
        network_row("flow", 2, args.batch, args.repeats, device),
    ]
    try:
        rows.append(tvl1_row(args.repeats))
    except ConfigError as err:  # no OpenCV contrib here (e.g. a bare GPU machine): the networks still count
        print(f"TV-L1 not measured: {err}")
    print(f"### MS-TCN features on {machine}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"CPU fp32 matmul (2048²) in the same run: {rate:.0f} GFLOP/s\n")
    print("| stage | s per window/field | s of work per s of 320x240 15 fps video | GFLOP/s |")
    print("|---|---|---|---|")
    for row in rows:
        gflops = f"{row['gflops']:.0f}" if "gflops" in row else "-"
        print(f"| {row['what']} | {row['per_item']:.3f} | {row['per_item'] * VIDEO_FPS:.2f} | {gflops} |")
    total = sum(row["per_item"] for row in rows) * VIDEO_FPS
    print(f"| all of the above (sequential sum) | | {total:.2f} | |")
    print(f"\nreal-time factor of the whole two-stream extraction (sequential): {1 / total:.3g}x")


if __name__ == "__main__":
    main()
