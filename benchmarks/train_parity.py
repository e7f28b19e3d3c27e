"""Training-parity diagnostics for issue 18: where our trainer's losses and time differ from the official one.

The official mask() (quirk §9.7) rebuilds the encoder input with an unstable CPU argsort over tied mask
values, so on CPU its encoder sees the visible frames of a stream longer than 16 in a shuffled time order.
`official_cpu_order` emulates that (it reproduces losses_50salads.pt's recorded encoder inputs bit for bit)
without changing the package: the "official_cpu" runs wrap the trainer's objective, nothing else.

    export PYTHONPATH=$PWD OMP_NUM_THREADS=1
    .venv/bin/python benchmarks/train_parity.py data /tmp/parity            # 6 classes, 12 + 4 videos
    .venv/bin/python benchmarks/train_parity.py draws /tmp/parity           # masking draws vs the spec
    .venv/bin/python benchmarks/train_parity.py curves /tmp/parity --order in_place --epochs 40
    .venv/bin/python benchmarks/train_parity.py curves /tmp/parity --order official_cpu --epochs 40
    .venv/bin/python benchmarks/train_parity.py fixed-batch /tmp/parity --seeds 20
    .venv/bin/python benchmarks/train_parity.py profile /tmp/parity --epochs 3
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import random
from pathlib import Path

import numpy as np
import torch

from actfusion_sdk.data.mstcn import MSTCNDataset
from actfusion_sdk.data.synthetic import write_synthetic_mstcn
from actfusion_sdk.evaluate import evaluate_model
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.config import preset
from actfusion_sdk.model.losses import class_weights
from actfusion_sdk.model.masking import (
    ANTICIPATION_RATIOS,
    draw_choices,
    draw_mask_type,
    patch_counts,
    present_classes,
    visible_frames,
)
from actfusion_sdk.train import TrainingObjective, stream_losses
from actfusion_sdk.train.trainer import _Trainer

ORDERS = ("in_place", "official_cpu")
PRESET = "50salads"


def write_parity_data(root: Path) -> Path:
    """16 videos (12 train, 4 test), 6 classes, 160–240 frames (20–30 a stream at sr 8): means + noise."""
    return write_synthetic_mstcn(
        root,
        num_videos=16,
        num_classes=6,
        feature_dim=2048,
        frames=(160, 240),
        segment_frames=(24, 80),
        test_videos=4,
        noise=1.0,
        seed=0,
    )


def official_cpu_order(features: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Features [1, D, L] whose visible frames sit where the official CPU mask() puts them.

    The official input is [visible frames in time order ; mask tokens] gathered by the inverse of an
    unstable argsort of the hidden indicator: the visible block lands on the visible positions, but in the
    sort's order of tied entries. Hidden positions are left alone (the model's mask token replaces them).
    """
    hidden = (~visible[0]).to(torch.float32).cpu()
    restore = torch.argsort(torch.argsort(hidden))  # torch's default, unstable CPU sort, as the official
    positions = torch.nonzero(~hidden.bool())[:, 0]
    reordered = features.clone()
    reordered[0, :, positions] = features[0, :, positions[restore[positions]].to(features.device)]
    return reordered


class OfficialOrderObjective(TrainingObjective):
    """Diagnostic: the training objective fed the official CPU frame order (not a package option)."""

    def forward(self, features, visible, t, noisy_labels):  # noqa: ANN001, ANN201 (same as the base)
        return super().forward(official_cpu_order(features, visible), visible, t, noisy_labels)


def parity_trainer(
    data: Path, out: Path, order: str, epochs: int, seed: int, val_fraction: float
) -> _Trainer:
    """The package's trainer on the 50salads recipe; with order 'official_cpu' only its objective differs."""
    trainer = _Trainer(
        preset(PRESET),
        data,
        1,
        out,
        epochs=epochs,
        seed=seed,
        val_fraction=val_fraction,
        eval_every=preset(PRESET).training.eval_every,
        device=torch.device("cpu"),
        attention_impl="auto",
        progress=False,
        description=f"train_parity {order}",
    )
    if order == "official_cpu":
        trainer.objective = OfficialOrderObjective(trainer.state.model)
    return trainer


def curves(args: argparse.Namespace) -> None:
    """Per-epoch mean unweighted losses of one run, then the test scores (TAS) of the final model."""
    out = args.out or args.data.parent / f"parity-run-{args.order}"
    trainer = parity_trainer(args.data, out, args.order, args.epochs, args.seed, args.val_fraction)
    result = trainer.run(resume=False)
    print(f"order={args.order} train_videos={len(trainer.train_data)} epochs={args.epochs} seed={args.seed}")
    print("epoch decoder_ce encoder_ce encoder_mse decoder_mse decoder_boundary")
    epochs = [r for r in result.history if r["event"] == "epoch"]
    for record in epochs:
        loss = record["loss"]
        print(
            f"{record['epoch']:5d} {loss['decoder_ce']:.4f} {loss['encoder_ce']:.4f} "
            f"{loss['encoder_mse']:.4f} {loss['decoder_mse']:.4f} {loss['decoder_boundary']:.4f}"
        )
    first, last = epochs[:3], epochs[-3:]

    def mean(records: list[dict], name: str) -> float:
        return float(np.mean([r["loss"][name] for r in records]))

    print(
        f"summary: decoder_ce first3 {mean(first, 'decoder_ce'):.3f} -> "
        f"last3 {mean(last, 'decoder_ce'):.3f}; encoder_ce last3 {mean(last, 'encoder_ce'):.3f}; "
        f"encoder_mse last3 {mean(last, 'encoder_mse'):.3f}"
    )
    test = MSTCNDataset(args.data, 1, "test", sample_rate=trainer.config.sample_rate)
    report = evaluate_model(result.model, test)
    tas = report.tas
    print(
        "test: Acc {acc:.1f} Edit {edit:.1f} F1@10,25,50 {f1@10:.1f}, {f1@25:.1f}, {f1@50:.1f}".format(**tas)
    )
    torch.save(result.model.state_dict(), out / "final_state.pt")


def fixed_batch(args: argparse.Namespace) -> None:
    """Encoder CE and smoothing loss on one fixed batch (the 12 training videos, fixed streams, masks, t and
    noise) in train mode, over `--seeds` dropout seeds, with in-place and official-CPU frame order."""
    config = preset(PRESET)
    training = config.training
    data = MSTCNDataset(
        args.data, 1, "train", boundary_smooth=training.boundary_smooth, sample_rate=config.sample_rate
    )
    weights = class_weights(data.label_counts())
    rng, np_rng = random.Random(0), np.random.default_rng(0)
    batch = []
    for index in range(len(data)):
        stream = data.training_stream(index, rng)
        kind = draw_mask_type(training.cond_types, rng)
        visible = visible_frames(
            kind, stream.labels, stream.boundaries, rng=rng, np_rng=np_rng, patch_size=training.patch_size
        )
        batch.append((stream, visible))
    models = {"init": None}
    for order in ORDERS:
        path = args.data.parent / f"parity-run-{order}" / "final_state.pt"
        if path.is_file():
            models[f"trained_{order}"] = torch.load(path, weights_only=True)
    print(f"{len(batch)} streams, L = {sorted(len(s.labels) for s, _ in batch)}")
    print("model               input         mode   encoder_ce (mean ± sd)   encoder_mse (mean ± sd)")
    for name, state in models.items():
        torch.manual_seed(0)
        model = ActFusion(config, data.num_classes)
        if state is not None:
            model.load_state_dict(state)
        for order in ORDERS:
            objective = (OfficialOrderObjective if order == "official_cpu" else TrainingObjective)(model)
            for mode, seeds in (("train", range(args.seeds)), ("eval", range(1))):
                objective.train(mode == "train")
                ce, mse = [], []
                for seed in seeds:
                    torch.manual_seed(1000 + seed)
                    with torch.no_grad():
                        terms = [
                            stream_losses(
                                objective,
                                model.schedule,
                                config,
                                data.num_classes,
                                stream,
                                visible,
                                torch.Generator().manual_seed(index),
                                weights=weights,
                            )
                            for index, (stream, visible) in enumerate(batch)
                        ]
                    ce.append(np.mean([float(t["encoder_ce"]) for t in terms]))
                    mse.append(np.mean([float(t["encoder_mse"]) for t in terms]))
                print(
                    f"{name:19s} {order:13s} {mode:5s}  {np.mean(ce):.4f} ± {np.std(ce):.4f}"
                    f"          {np.mean(mse):.4f} ± {np.std(mse):.4f}"
                )


def draws(args: argparse.Namespace) -> None:
    """Frequencies of our masking draws against the spec's (§4), and the visible share per type."""
    training = preset(PRESET).training
    rng, np_rng = random.Random(0), np.random.default_rng(0)
    count = args.draws
    kinds = collections.Counter(draw_mask_type(training.cond_types, rng) for _ in range(count))
    expected = collections.Counter(training.cond_types)
    print(f"{count} draws of the masking type (spec: uniform over {list(training.cond_types)})")
    for kind, n in sorted(kinds.items()):
        p = expected[kind] / len(training.cond_types)
        z = (n - p * count) / np.sqrt(count * p * (1 - p))
        print(f"  {kind:17s} {n / count:.4f}  spec {p:.4f}  z {z:+.2f}")
    labels = np.repeat(np.arange(6), 40)  # L = 240: no cap on the patch counts, 6 classes present
    ratios = collections.Counter(
        draw_choices("ant", labels, rng=rng, np_rng=np_rng).observed_ratio for _ in range(count)
    )
    print(
        "'ant' ratio α (spec: uniform over 0.2..0.8):",
        {a: round(ratios[a] / count, 4) for a in ANTICIPATION_RATIOS},
    )
    patches = collections.Counter(
        len(draw_choices("random_num_patch", labels, rng=rng, np_rng=np_rng).hidden_patches)
        for _ in range(count)
    )
    counts = patch_counts("random_num_patch", training.n_mask)
    print(
        f"'random_num_patch' count (spec: uniform over {counts.start}..{counts.stop - 1}):",
        {n: round(patches[n] / count, 4) for n in sorted(patches)},
    )
    picks = collections.Counter(
        c
        for _ in range(count)
        for c in draw_choices("segment=2", labels, rng=rng, np_rng=np_rng).hidden_classes
    )
    print(
        "'segment=2' picks (spec: 2 independent uniform picks over present classes):",
        {c: round(picks[c] / (2 * count), 4) for c in present_classes(labels).tolist()},
    )
    config = preset(PRESET)
    data = MSTCNDataset(
        args.data, 1, "train", boundary_smooth=training.boundary_smooth, sample_rate=config.sample_rate
    )
    shares = collections.defaultdict(list)
    shuffled = collections.Counter()
    for _ in range(args.draws // 10):
        stream = data.training_stream(rng.randrange(len(data)), rng)
        kind = draw_mask_type(training.cond_types, rng)
        visible = visible_frames(
            kind,
            stream.labels,
            stream.boundaries,
            rng=rng,
            np_rng=np_rng,
            n_mask=training.n_mask,
            patch_size=training.patch_size,
        )
        shares[kind].append(visible.mean())
        features = torch.arange(len(visible), dtype=torch.float32)[None, None]
        moved = official_cpu_order(features, torch.as_tensor(visible)[None])
        shuffled[kind] += bool((moved != features).any())
    print(
        "on the parity data: mean visible share per type, and share of streams whose visible frames the "
        "official CPU mask() reorders"
    )
    for kind, values in sorted(shares.items()):
        print(f"  {kind:17s} visible {np.mean(values):.3f}  reordered {shuffled[kind] / len(values):.3f}")


PROFILE_GROUPS = {
    "data: read stream (mstcn.py)": ("mstcn.py", "training_stream"),
    "masking draws": ("masking.py", "visible_frames"),
    "targets + noising (objective.py)": ("objective.py", "training_targets"),
    "forward": ("objective.py", "forward"),
    "losses": ("losses.py", "actfusion_losses"),
    "backward": ("_tensor.py", "backward"),
    "optimizer step (state.py)": ("state.py", "optimizer_step"),
    "evaluation": ("trainer.py", "validate"),
    "checkpoint write": ("state.py", "save_checkpoint"),
    "model write": ("trainer.py", "save_model"),
    "epoch": ("trainer.py", "run_epoch"),
}


def profile(args: argparse.Namespace) -> None:
    """cProfile shares of a short run of the package's trainer (50salads recipe, the official
    eval_every, so evaluation and checkpoint writes only at the end unless --eval-every is given)."""
    out = args.data.parent / "parity-profile"
    trainer = parity_trainer(args.data, out, "in_place", args.epochs, 0, args.val_fraction)
    if args.eval_every:
        trainer.eval_every = args.eval_every
    profiler = cProfile.Profile()
    profiler.enable()
    trainer.run(resume=False)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(cumtime for _, _, _, cumtime, _ in stats.stats.values())
    print(f"profile of {args.epochs} epochs ({len(trainer.train_data)} videos each), cumulative shares:")
    for group, (filename, function) in PROFILE_GROUPS.items():
        cumtime = sum(
            entry[3]
            for (path, _, name), entry in stats.stats.items()
            if path.endswith(filename) and name == function
        )
        print(f"  {group:34s} {100 * cumtime / total:5.1f} %")
    if args.top:
        stats.sort_stats("tottime").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("data", "draws", "curves", "fixed-batch", "profile"):
        command = commands.add_parser(name)
        command.add_argument("data", type=Path)
    commands.choices["draws"].add_argument("--draws", type=int, default=60000)
    curve = commands.choices["curves"]
    curve.add_argument("--order", choices=ORDERS, default="in_place")
    curve.add_argument("--out", type=Path)
    for command in (curve, commands.choices["profile"]):
        command.add_argument("--epochs", type=int, default=40)
        command.add_argument("--val-fraction", type=float, default=0.0, help="0: all 12 videos (official)")
    curve.add_argument("--seed", type=int, default=0)
    commands.choices["fixed-batch"].add_argument("--seeds", type=int, default=20)
    commands.choices["profile"].add_argument("--eval-every", type=int)
    commands.choices["profile"].add_argument("--top", type=int, default=0)
    args = parser.parse_args()
    if args.command == "data":
        print(write_parity_data(args.data))
    else:
        {"draws": draws, "curves": curves, "fixed-batch": fixed_batch, "profile": profile}[args.command](args)


if __name__ == "__main__":
    main()
