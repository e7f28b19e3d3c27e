"""`actfusion bench`: time whole-model segmentation on random features on this machine and device."""

from __future__ import annotations

import argparse
import time

import torch

from ..errors import ConfigError
from ..limits import MAX_FRAMES
from ._common import add_compute_arguments

MAX_REPEATS = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time segmentation (encoder + 25 DDIM steps) on random features",
        description="Time Pipeline-free segmentation of random [2048, L] features: a preset with random "
        "weights, or a trained model. benchmarks/ holds the detailed scripts.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", default="50salads", help="breakfast, 50salads or gtea (default 50salads)")
    source.add_argument("--weights", default=None, help="a model directory or card instead of a preset")
    parser.add_argument("--length", type=int, default=2000, help="feature frames L (default 2000)")
    add_compute_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default 3)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..model.actfusion import ActFusion
    from ..model.checkpoint import load_model
    from ..model.config import PRESET_CLASSES, preset
    from ..model.inference import segment
    from ..runtime import resolve_device

    if not (1 <= args.length <= MAX_FRAMES and 1 <= args.repeats <= MAX_REPEATS):
        raise ConfigError(
            f"--length must be 1 to {MAX_FRAMES} frames and --repeats 1 to {MAX_REPEATS}, "
            f"got {args.length} and {args.repeats}"
        )
    device = resolve_device(args.device)
    if args.weights is not None:
        model, name = load_model(args.weights, device=device).model, args.weights
    else:
        config = preset(args.preset)
        model, name = ActFusion(config, PRESET_CLASSES[config.name]).to(device), args.preset
    model.attention_impl = args.attention_impl
    features = torch.randn(model.config.encoder.input_dim, args.length, device=device)

    def timed() -> float:
        started = time.perf_counter()
        segment(model, features, seed=0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    timed()
    best = min(timed() for _ in range(args.repeats))
    print(
        f"{name}: L={args.length} on {device} ({args.attention_impl} attention, {torch.get_num_threads()} "
        f"threads): {best:.3f} s per video (best of {args.repeats}), {args.length / best:.0f} frames/s"
    )
    return 0
