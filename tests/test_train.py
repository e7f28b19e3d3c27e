"""The trainer on a tiny synthetic MS-TCN dataset: loss falls, checkpoints reload, resume is exact, DDP."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_sdk.data.synthetic import write_synthetic_mstcn
from actfusion_sdk.errors import ConfigError
from actfusion_sdk.features.settings import FeatureSettings
from actfusion_sdk.model.checkpoint import load_model
from actfusion_sdk.train import Distributed, WeightAverage, carve_validation, epoch_shard, train

from .helpers import TRAIN_FEATURE_DIM as FEATURE_DIM
from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "toy"
    return write_synthetic_mstcn(
        root, num_videos=7, num_classes=3, feature_dim=FEATURE_DIM, frames=(40, 70), test_videos=2, noise=0.3
    )


def parameters(state: dict) -> dict:
    return {k: v for k, v in state.items() if v.dtype != torch.float64}


@pytest.mark.slow
def test_training_lowers_the_loss_and_the_model_reloads(toy_data, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(batch_size=2)
    result = train(
        config, toy_data, 1, out, epochs=24, eval_every=12, seed=3, val_fraction=0.2, progress=False
    )
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"]["total"] for r in records if r["event"] == "epoch"]
    assert len(losses) == 24 and result.epochs == 24
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4])
    validations = [r for r in records if r["event"] == "validation"]
    assert [r["epoch"] for r in validations] == [12, 24]
    assert all(r["scores"]["tas"]["acc"] >= 0 for r in validations)
    loaded = load_model(result.model_dir)
    assert loaded.card.classes == ("action_0", "action_1", "action_2")
    assert loaded.card.config == config
    # One of the 5 training-split videos validates; the test split (video_005, video_006) is never used.
    used = loaded.card.training["train_videos"] + loaded.card.training["validation_videos"]
    assert len(loaded.card.training["validation_videos"]) == 1
    assert sorted(used) == [f"video_{i:03d}" for i in range(5)]
    best = [r for r in validations if r["best"]][-1]
    assert result.best_score == pytest.approx(best["score"])
    if best["epoch"] == 24:
        final = torch.load(result.checkpoint, weights_only=True)["model"]
        for key, value in parameters(final).items():
            assert torch.equal(loaded.model.state_dict()[key], value), key


@pytest.mark.parametrize("recipe", [{}, {"ema_decay": 0.9, "lr_schedule": "cosine"}], ids=["official", "ema"])
def test_resume_continues_exactly(toy_data, tmp_path, recipe):
    # batch_size 3 with 4 training videos leaves accumulated gradients across epoch ends.
    config = tiny_config(batch_size=3, **recipe)
    common = dict(eval_every=2, seed=5, val_fraction=0.2, progress=False)
    straight = train(config, toy_data, 1, tmp_path / "straight", epochs=4, **common)
    train(config, toy_data, 1, tmp_path / "resumed", epochs=2, **common)
    resumed = train(config, toy_data, 1, tmp_path / "resumed", epochs=4, resume=True, **common)
    assert resumed.steps == straight.steps == 16
    first = torch.load(straight.checkpoint, weights_only=True)
    second = torch.load(resumed.checkpoint, weights_only=True)
    for key, value in parameters(first["model"]).items():
        assert torch.equal(value, second["model"][key]), key
    assert any(g is not None and g.abs().sum() > 0 for g in first["pending_gradients"])
    assert epoch_losses(first["history"]) == epoch_losses(second["history"])
    if recipe:
        assert first["average"]["updates"] == second["average"]["updates"] == 5
        for key, value in first["average"]["model"].items():
            assert torch.equal(value, second["average"]["model"][key]), key


def epoch_losses(history: list[dict]) -> list[dict]:
    return [record["loss"] for record in history if record["event"] == "epoch"]


def test_weight_average_follows_its_warmup_decay():
    layer = torch.nn.Linear(2, 1)
    start = {k: v.clone() for k, v in layer.state_dict().items()}
    average = WeightAverage(layer, decay=0.5)
    steps = [{k: torch.randn_like(v) for k, v in start.items()} for _ in range(3)]
    expected = dict(start)
    for n, weights in enumerate(steps, start=1):
        layer.load_state_dict(weights)
        average.update(layer)
        keep = min(0.5, (1 + n) / (10 + n))  # 2/11, 3/12, 4/13: all below 0.5
        expected = {k: keep * expected[k] + (1 - keep) * weights[k] for k in start}
    for key, value in average.model.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert average.updates == 3 and not any(p.requires_grad for p in average.model.parameters())


def test_weight_average_is_validated_and_saved_and_cosine_anneals(toy_data, tmp_path):
    config = tiny_config(batch_size=2, ema_decay=0.8, lr_schedule="cosine", epochs=4)
    with pytest.raises(ConfigError, match="anneals over training.epochs = 4"):
        train(config, toy_data, 1, tmp_path / "long", epochs=5, progress=False)
    result = train(config, toy_data, 1, tmp_path / "run", val_fraction=0, progress=False)
    rates = [record["lr"] for record in result.history if record["event"] == "epoch"]
    base = config.training.learning_rate
    assert rates[0] == base and rates[2] == pytest.approx(base / 2)
    assert rates == sorted(rates, reverse=True) and rates[-1] > 0
    checkpoint = torch.load(result.checkpoint, weights_only=True)
    saved = load_model(result.model_dir).model.state_dict()
    trained = parameters(checkpoint["model"])
    assert all(torch.equal(saved[k], v) for k, v in parameters(checkpoint["average"]["model"]).items())
    assert any(not torch.equal(saved[k], v) for k, v in trained.items())
    assert all(torch.equal(result.model.state_dict()[k], v) for k, v in trained.items())


def test_no_validation_trains_on_every_training_video(toy_data, tmp_path):
    # val_fraction=0 is the official setting: all of the train split trains, the last model is kept.
    result = train(tiny_config(), toy_data, 1, tmp_path / "run", epochs=1, val_fraction=0, progress=False)
    training = load_model(result.model_dir).card.training
    assert training["train_videos"] == [f"video_{i:03d}" for i in range(5)]
    assert training["validation_videos"] == [] and result.best_score is None
    start = next(r for r in result.history if r["event"] == "start")
    assert (start["train_videos"], start["validation_videos"]) == (5, 0)


def test_resume_rejects_another_configuration(toy_data, tmp_path):
    train(tiny_config(batch_size=2), toy_data, 1, tmp_path / "run", epochs=1, val_fraction=0, progress=False)
    with pytest.raises(ConfigError, match="another configuration"):
        train(tiny_config(batch_size=4), toy_data, 1, tmp_path / "run", epochs=2, resume=True, progress=False)


def test_card_records_the_feature_settings_of_extracted_features(toy_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(toy_data, data)
    settings = FeatureSettings.demo()
    for features in (data / "features").glob("*.npy"):
        features.with_suffix(".json").write_text(json.dumps({"settings": settings.to_dict()}))
    result = train(tiny_config(), data, 1, tmp_path / "run", epochs=1, val_fraction=0, progress=False)
    card = load_model(result.model_dir).card
    assert card.features == settings.to_dict() and card.fps == settings.features_per_second == 2.0


def test_soft_label_recipe_trains(toy_data, tmp_path):
    # The Breakfast/GTEA path: soft labels (no class weights) and their masking types.
    config = tiny_config(
        batch_size=2, soft_label=1.4, cond_types=("boundary03-", "segment=1", "random_patch")
    )
    result = train(config, toy_data, 1, tmp_path / "run", epochs=2, val_fraction=0, progress=False)
    losses = [r["loss"] for r in result.history if r["event"] == "epoch"]
    assert len(losses) == 2 and all(np.isfinite(list(loss.values())).all() for loss in losses)


def test_validation_is_carved_from_the_training_split():
    names = [f"v{i}" for i in range(10)]
    train_names, val_names = carve_validation(names, 0.2, seed=1)
    assert len(val_names) == 2 and sorted(train_names + val_names) == names
    assert carve_validation(names, 0.2, seed=1) == (train_names, val_names)
    assert carve_validation(["a"], 0.5, seed=0) == (["a"], [])
    assert carve_validation(["a", "b"], 0.01, seed=0)[1] != []


def test_epoch_shards_cover_every_video_with_equal_counts():
    shards = [epoch_shard(7, random.Random(4), Distributed(rank, 3)) for rank in range(3)]
    assert {len(s) for s in shards} == {3}
    assert set().union(*shards) == set(range(7))
    tiny = [epoch_shard(1, random.Random(0), Distributed(rank, 3)) for rank in range(3)]
    assert tiny == [[0], [0], [0]]


def test_zero_masking_is_rejected(toy_data, tmp_path):
    with pytest.raises(ConfigError, match="'zero'"):
        train(
            tiny_config(cond_types=("full", "zero")), toy_data, 1, tmp_path / "run", epochs=1, progress=False
        )


RANK_SCRIPT = """
import sys, torch
from actfusion_sdk.model.config import ActFusionConfig
from actfusion_sdk.train import train
import json, os
config = ActFusionConfig.from_dict(json.loads(open(sys.argv[1]).read()))
result = train(config, sys.argv[2], 1, sys.argv[3], epochs=2, eval_every=2, seed=1, val_fraction=0.2,
               progress=False)
torch.save(result.model.state_dict(), f"{sys.argv[3]}/final-rank{os.environ['RANK']}.pt")
"""


@pytest.mark.slow
def test_torchrun_two_processes_agree(toy_data, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(tiny_config(batch_size=2).to_dict()))
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(config_path),
            str(toy_data),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rank0 = torch.load(out / "final-rank0.pt", weights_only=True)
    rank1 = torch.load(out / "final-rank1.pt", weights_only=True)
    for key, value in rank0.items():
        assert torch.equal(value, rank1[key]), key
    checkpoint = torch.load(out / "latest.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    # 4 training videos over 2 ranks: each rank sees 2 per epoch.
    assert checkpoint["step"] == 4
    assert (out / "model" / "model.json").is_file()
