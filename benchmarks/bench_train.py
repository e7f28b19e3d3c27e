"""Training throughput on CPU: videos/s and frames/s of full training steps (spec §3, §7).

Each step is one video: masking, q_sample, encoder + decoder forward, all losses, backward, and an Adam
step every `batch_size` videos, exactly as the trainer runs it. Synthetic features of L frames (the length
the model sees, i.e. one temporal-augmentation stream).

    .venv/bin/python benchmarks/bench_train.py --preset 50salads --length 1000 --videos 12 --threads 2
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch
from harness import timed

from actfusion_sdk.data.mstcn import Stream
from actfusion_sdk.data.targets import boundary_targets
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.losses import class_weights
from actfusion_sdk.model.masking import draw_mask_type, visible_frames
from actfusion_sdk.train import TrainingObjective, stream_losses
from actfusion_sdk.train.recipes import recipe


def synthetic_stream(
    length: int, num_classes: int, feature_dim: int, sigma: float, rng: np.random.Generator
) -> Stream:
    labels = np.repeat(rng.integers(0, num_classes, size=length // 50 + 1), 50)[:length]
    features = rng.standard_normal((feature_dim, length)).astype(np.float32)
    return Stream(features, labels.astype(np.int64), boundary_targets(labels, sigma))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="50salads", help="a recipe: small or a released preset")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--length", type=int, default=1000, help="frames per training stream (L)")
    parser.add_argument("--videos", type=int, default=12, help="timed videos (after 2 warm-up videos)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--attention-impl", default="auto")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = recipe(args.preset)
    model = ActFusion(config, args.classes)
    model.attention_impl = args.attention_impl
    objective = TrainingObjective(model).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.training.learning_rate)
    rng = np.random.default_rng(0)
    stream = synthetic_stream(
        args.length, args.classes, config.encoder.input_dim, config.training.boundary_smooth, rng
    )
    weights = class_weights(np.bincount(stream.labels, minlength=args.classes))
    python_rng = random.Random(0)
    generator = torch.Generator().manual_seed(0)
    batch = config.training.batch_size

    def step(index: int) -> None:
        kind = draw_mask_type(config.training.cond_types, python_rng)
        visible = visible_frames(
            kind,
            stream.labels,
            stream.boundaries,
            rng=python_rng,
            np_rng=rng,
            n_mask=config.training.n_mask,
            patch_size=config.training.patch_size,
        )
        terms = stream_losses(
            objective, model.schedule, config, args.classes, stream, visible, generator, weights=weights
        )
        (terms["total"] / batch).backward()
        if (index + 1) % batch == 0:
            optimizer.step()
            optimizer.zero_grad()

    def steps(count: int) -> None:
        for index in range(count):
            step(index)

    steps(2)  # warm-up
    _, elapsed = timed(lambda: steps(args.videos))
    print(
        f"train {args.preset}: L={args.length} classes={args.classes} threads={args.threads} "
        f"attention={args.attention_impl} batch_size={batch}"
    )
    print(
        f"  {args.videos} videos in {elapsed:.2f} s: {args.videos / elapsed:.2f} videos/s, "
        f"{args.videos * args.length / elapsed:.0f} frames/s ({elapsed / args.videos * 1000:.0f} ms/video)"
    )


if __name__ == "__main__":
    main()
