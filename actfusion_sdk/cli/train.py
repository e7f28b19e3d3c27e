"""`actfusion train`: train ActFusion on an MS-TCN dataset (works the same under torchrun)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..errors import ConfigError
from ._common import add_compute_arguments, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on an MS-TCN dataset",
        description="Train ActFusion on the train split of an MS-TCN dataset. A validation subset is carved "
        "from the train split for model selection; the selected model is written to OUT/model. "
        "Run under `torchrun --nproc_per_node=N` for data-parallel training.",
    )
    parser.add_argument(
        "--data", required=True, type=Path, help="dataset directory (features/, groundTruth/, ...)"
    )
    parser.add_argument(
        "--split", default="1", help="split number k of splits/train.split<k>.bundle (default 1)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="run directory for checkpoints, log and model"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--preset", default="50salads", help="architecture and recipe (default 50salads)")
    source.add_argument(
        "--config",
        type=Path,
        help="a JSON model configuration (ActFusionConfig.to_dict form), or a model card (model.json) "
        "whose configuration and recipe to train again",
    )
    parser.add_argument("--epochs", type=int, help="number of epochs (default: the preset's)")
    parser.add_argument("--eval-every", type=int, help="validate every N epochs (default: the preset's)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/latest.pt if it exists")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of train videos for validation"
    )
    add_compute_arguments(parser, threads=True)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..train import train

    apply_threads(args)
    config: str | dict = args.preset
    if args.config is not None:
        try:
            config = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read the configuration {args.config}: {err}") from err
    result = train(
        config,
        args.data,
        args.split,
        args.out,
        epochs=args.epochs,
        eval_every=args.eval_every,
        resume=args.resume,
        seed=args.seed,
        val_fraction=args.val_fraction,
        device=args.device,
        attention_impl=args.attention_impl,
        progress=not args.quiet,
    )
    if os.environ.get("RANK", "0") == "0":
        score = "n/a" if result.best_score is None else f"{result.best_score:.2f}"
        print(
            f"trained {result.epochs} epochs; model: {result.model_dir} (validation score {score}); "
            f"log: {result.log}"
        )
    return 0
