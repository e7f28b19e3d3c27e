"""`actfusion train`: train ActFusion on an MS-TCN dataset (works the same under torchrun)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..model.config import PRESETS, ActFusionConfig
from ..train.recipes import SMALL_RECIPE
from ._common import add_compute_arguments, apply_threads

DEFAULT_THREADS = 1
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model on an MS-TCN dataset",
        description="Train ActFusion on the train split of an MS-TCN dataset. A validation subset is carved "
        "from the train split for model selection; the selected model is written to OUT/model. "
        "Run under `torchrun --nproc_per_node=N` for data-parallel training. One torch thread unless "
        "--threads says otherwise (fastest on a busy CPU). Ctrl-C saves OUT/latest.pt for --resume.",
    )
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        help="dataset directory (features/, groundTruth/, ...; `actfusion dataset build` writes one, and the "
        "feature settings its dataset.json records go into the model card)",
    )
    parser.add_argument(
        "--split", default="1", help="split number k of splits/train.split<k>.bundle (default 1)"
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="run directory for checkpoints, log and model"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        metavar="RECIPE",
        help=f"architecture and recipe: {SMALL_RECIPE} (the demo model's, for a few dozen videos or fewer: "
        f"450 epochs) or a released preset ({', '.join(PRESETS)}: thousands of epochs, for their full "
        f"datasets); default {SMALL_RECIPE}, or with --init the configuration of that model",
    )
    source.add_argument(
        "--config",
        type=Path,
        help="a JSON model configuration (ActFusionConfig.to_dict form), or a model card (model.json) "
        "whose configuration and recipe to train again",
    )
    parser.add_argument(
        "--init",
        metavar="WEIGHTS",
        help="start from a trained model (a model directory or model.json, 'demo' for the bundled one, or an "
        "official .model/.pth state_dict with --preset/--config) whose class list may differ: class-"
        "independent weights are copied, class-dependent ones re-initialised",
    )
    parser.add_argument(
        "--name",
        help="the model's name in its card, tables, JSON results and plots (default: the --out folder name)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="number of epochs (default: the recipe's); a cosine learning rate (the small recipe's) anneals "
        "over them",
    )
    parser.add_argument("--eval-every", type=int, help="validate every N epochs (default: the recipe's)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/latest.pt if it exists (Ctrl-C saves it at the last finished epoch)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="share of train videos for validation"
    )
    add_compute_arguments(parser, threads=True)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    # One thread by default: on a busy 2-core machine the small recipe's training steps ran 2.5-16x slower on
    # 2 threads than on 1 (benchmarks/RESULTS.md); give --threads N on a quiet machine or for large presets.
    parser.set_defaults(handler=run, threads=DEFAULT_THREADS)


def run(args: argparse.Namespace) -> int:
    from ..train import TrainingInterrupted, train

    apply_threads(args)
    name = args.name or args.out.resolve().name
    try:
        result = train(
            training_config(args),
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
            name=name,
            init=args.init,
        )
    except TrainingInterrupted as interrupted:
        print(f"actfusion: {interrupted}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    if os.environ.get("RANK", "0") == "0":
        if result.init is not None:
            print(result.init.summary(), file=sys.stderr)
        score = "n/a" if result.best_score is None else f"{result.best_score:.2f}"
        print(
            f"trained {result.epochs} epochs; model {name!r} in {result.model_dir} "
            f"(validation score {score}); log: {result.log}"
        )
    return 0


def training_config(args: argparse.Namespace) -> ActFusionConfig:
    """--config, --preset, the --init model's configuration or the small recipe; under a cosine schedule
    (the small recipe's) --epochs is also the length the learning rate anneals over."""
    from ..train import resolve_config

    source: str | dict | None = args.preset
    if args.config is not None:
        try:
            source = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read the configuration {args.config}: {err}") from err
    config = resolve_config(source, args.init)
    if args.epochs is not None and config.training.lr_schedule == "cosine":
        config = dataclasses.replace(
            config, training=dataclasses.replace(config.training, epochs=args.epochs)
        )
    return config
