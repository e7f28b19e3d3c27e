"""What `--init` buys with few videos: the small recipe on 8 training videos of the procedural benchmark with
a new class list, started from the bundled demo model vs from scratch, the same epochs; TAS scores (Acc, Edit,
F1@50) on held-out videos.

The new class list merges the 10 step classes in pairs into 5 coarser actions (plus background), so the
class-dependent tensors are re-initialised and only what the demo model learnt of the features carries over.
DATA is a benchmark with its features, made once:

    .venv/bin/actfusion make-benchmark --out DATA --videos 16 --seed 1000 --test-fraction 0.5
    .venv/bin/actfusion extract DATA/videos --out DATA --settings demo
    .venv/bin/python benchmarks/bench_init.py DATA --epochs 40 [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import torch
from harness import timed

from actfusion_sdk.data.mstcn import MSTCNDataset, read_mapping, read_split, split_path
from actfusion_sdk.evaluate import evaluate_model
from actfusion_sdk.model.checkpoint import load_model
from actfusion_sdk.train import resolve_config, train

BACKGROUND = "background"


def coarse_classes(classes: tuple[str, ...]) -> dict[str, str]:
    """Each fine class -> its coarse action: background stays, steps 1+2, 3+4, ... become action_1, 2, ..."""
    steps = [name for name in classes if name != BACKGROUND]
    return {BACKGROUND: BACKGROUND} | {name: f"action_{i // 2 + 1}" for i, name in enumerate(steps)}


def relabelled(source: Path, target: Path) -> Path:
    """`source` with the coarse classes: features linked, groundTruth and mapping rewritten, split 1 kept."""
    mapping = coarse_classes(read_mapping(source / "mapping.txt"))
    classes = list(dict.fromkeys(mapping.values()))
    for folder in ("groundTruth", "splits"):
        (target / folder).mkdir(parents=True)
    (target / "features").symlink_to((source / "features").resolve())
    for subset in ("train", "test"):
        split = split_path(source, 1, subset)
        (target / "splits" / split.name).write_text(split.read_text())
        for video in read_split(split):
            lines = (source / "groundTruth" / f"{video}.txt").read_text().split()
            (target / "groundTruth" / f"{video}.txt").write_text("".join(f"{mapping[x]}\n" for x in lines))
    (target / "mapping.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(classes)))
    return target


def run(data: Path, out: Path, init: str | None, epochs: int, seed: int) -> dict[str, float]:
    """Train (from `init` or from scratch), score on the test split: TAS scores and the training seconds."""
    config = resolve_config(None, init)  # the small recipe, or the demo model's (the same but for its name)
    # The recipe's cosine schedule anneals over `epochs`, as it would over its 450.
    config = dataclasses.replace(config, training=dataclasses.replace(config.training, epochs=epochs))
    result, seconds = timed(
        lambda: train(
            config,
            data,
            1,
            out,
            eval_every=epochs,
            val_fraction=0,
            seed=seed,
            progress=False,
            init=init,
            name="init" if init else "scratch",
        )
    )
    model = load_model(result.model_dir).model
    report = evaluate_model(model, MSTCNDataset(data, 1, "test"), progress=False)
    return {**report.tas, "train_seconds": seconds, "videos": report.videos}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a benchmark with features (see the module docstring)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        data = relabelled(args.data, Path(scratch) / "coarse")
        train_videos = len(read_split(split_path(data, 1, "train")))
        rows = {
            name: run(data, Path(scratch) / name, init, args.epochs, args.seed)
            for name, init in (("from scratch", None), ("--init demo", "demo"))
        }
    if args.json:
        print(json.dumps({"train_videos": train_videos, "epochs": args.epochs, "rows": rows}, indent=1))
        return 0
    print(f"{train_videos} training videos, {args.epochs} epochs, small recipe, 6 classes")
    print(f"{'':14}{'Acc':>7}{'Edit':>7}{'F1@10':>7}{'F1@25':>7}{'F1@50':>7}{'train s':>9}")
    for name, row in rows.items():
        scores = "".join(f"{row[key]:7.1f}" for key in ("acc", "edit", "f1@10", "f1@25", "f1@50"))
        print(f"{name:14}{scores}{row['train_seconds']:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
