"""Training for one's own classes: the small recipe, `--init` from trained weights with another class list,
the dataset card's feature settings, `--name`, and Ctrl-C saving a resumable checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from actfusion_sdk.cli import main
from actfusion_sdk.data.builder import DatasetCard
from actfusion_sdk.data.synthetic import write_synthetic_mstcn
from actfusion_sdk.errors import DatasetError, WeightsError
from actfusion_sdk.features.settings import FeatureSettings
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.checkpoint import load_card, load_model
from actfusion_sdk.model.config import ActFusionConfig
from actfusion_sdk.predictor import Predictor
from actfusion_sdk.train import SMALL, resolve_config, train, warm_start
from actfusion_sdk.weights import BUNDLED_DEFAULT

from .helpers import TRAIN_FEATURE_DIM as FEATURE_DIM
from .helpers import tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")

# The tiny configuration's tensors whose shapes follow the class count: the encoder's class projection, the
# decoder's input (noisy class probabilities) and its output (spec §1.2-1.3).
CLASS_DEPENDENT = {
    "encoder.conv_out.weight",
    "encoder.conv_out.bias",
    "decoder.conv_in.weight",
    "decoder.conv_out.weight",
    "decoder.conv_out.bias",
}


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "three"
    return write_synthetic_mstcn(
        root, num_videos=5, num_classes=3, feature_dim=FEATURE_DIM, frames=(40, 60), test_videos=1, noise=0.3
    )


@pytest.fixture(scope="module")
def four_classes(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "four"
    return write_synthetic_mstcn(
        root,
        num_videos=5,
        num_classes=4,
        feature_dim=FEATURE_DIM,
        frames=(40, 60),
        test_videos=1,
        noise=0.3,
        seed=1,
    )


@pytest.fixture(scope="module")
def source_model(three_classes, tmp_path_factory):
    """A tiny model trained for 2 epochs on three classes: the weights to start from."""
    out = tmp_path_factory.mktemp("runs") / "source"
    return train(tiny_config(), three_classes, 1, out, epochs=2, val_fraction=0, progress=False).model_dir


def test_small_recipe_is_the_demo_models_and_the_default():
    demo = ActFusionConfig.from_dict(json.loads((BUNDLED_DEFAULT / "model.json").read_text())["config"])
    # The demo was validated every 25 epochs by benchmarks/train_demo.sh (its card's model says 20).
    expected = dataclasses.replace(
        demo, name="small", training=dataclasses.replace(demo.training, eval_every=25)
    )
    assert expected == SMALL
    assert resolve_config(None) == resolve_config("small") == SMALL
    assert resolve_config(None, init="demo") == demo


def test_init_copies_class_independent_weights_and_reinitialises_the_others(source_model):
    source = load_model(source_model).model.state_dict()
    torch.manual_seed(7)
    model = ActFusion(tiny_config(), 4)
    fresh = {key: value.clone() for key, value in model.state_dict().items()}
    report = warm_start(model, ["a", "b", "c", "d"], source_model)
    after = model.state_dict()
    assert set(report.reinitialised) == CLASS_DEPENDENT
    assert len(report.copied) == len(after) - len(CLASS_DEPENDENT)
    for key, value in after.items():
        expected = fresh[key] if key in CLASS_DEPENDENT else source[key]
        assert torch.equal(value, expected), key
    copied = len(report.copied)
    assert report.summary().startswith(f"initialised from {source_model}: copied {copied} tensors")
    assert "re-initialised 5: " in report.summary()


def test_init_with_the_same_classes_copies_everything(source_model):
    source = load_model(source_model)
    model = ActFusion(tiny_config(), 3)
    report = warm_start(model, source.card.classes, source_model)
    assert report.reinitialised == ()
    assert all(torch.equal(v, source.model.state_dict()[k]) for k, v in model.state_dict().items())


def test_init_refuses_another_architecture(source_model):
    wider = dataclasses.replace(tiny_config(), encoder=dataclasses.replace(tiny_config().encoder, width=16))
    with pytest.raises(WeightsError, match=r"does not fit the configuration .*encoder\..* \[16"):
        warm_start(ActFusion(wider, 4), ["a", "b", "c", "d"], source_model)


def test_official_state_dict_keeps_no_class_dependent_weights(source_model, tmp_path):
    # An official checkpoint names no classes, so even an equal count cannot be trusted to mean the same.
    official = tmp_path / "official.model"
    torch.save(load_model(source_model).model.state_dict(), official)
    report = warm_start(ActFusion(tiny_config(), 3), ["x", "y", "z"], official)
    assert set(report.reinitialised) == CLASS_DEPENDENT and report.source_classes is None


def test_cli_init_name_and_card_travel_to_results(source_model, four_classes, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config().to_dict()))
    out = tmp_path / "kitchen"
    code = main(
        ["train", "--data", str(four_classes), "--config", str(config), "--init", str(source_model)]
        + ["--out", str(out), "--epochs", "1", "--val-fraction", "0", "--quiet", "--threads", "1"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"copied {105 - 5} tensors, re-initialised 5: " in captured.err
    assert "model 'kitchen'" in captured.out  # named after --out
    card = load_card(out / "model")
    assert card.config.name == "kitchen" and card.training["init"]["reinitialised"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log][:2] == ["start", "init"] and log[1]["copied"] == 100
    predictor = Predictor(out / "model", device="cpu")
    features = np.load(four_classes / "features" / "video_004.npy")
    result = predictor.segment(predictor.load_features(features, fps=2.0))
    assert result.model == "kitchen" and json.loads(result.to_json())["model"] == "kitchen"


def test_dataset_card_feature_settings_reach_the_model_card(three_classes, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(three_classes, data)
    settings = FeatureSettings.demo().to_dict()
    classes = ("action_0", "action_1", "action_2")
    card = DatasetCard(data, FeatureSettings.demo(), classes, "action_0", {}, (), ())
    (data / "dataset.json").write_text(json.dumps(card.to_dict()))
    result = train(
        tiny_config(), data, 1, tmp_path / "run", epochs=1, val_fraction=0, progress=False, name="mine"
    )
    card = load_card(result.model_dir)
    assert card.features == settings and card.fps == 2.0 and card.config.name == "mine"
    sidecar = dict(settings, clip_frames=16)
    for features in (data / "features").glob("*.npy"):
        features.with_suffix(".json").write_text(json.dumps({"settings": sidecar}))
    with pytest.raises(DatasetError, match="other feature settings than the sidecars"):
        train(tiny_config(), data, 1, tmp_path / "other", epochs=1, val_fraction=0, progress=False)


# `actfusion train`, held at the start of its third epoch (reading stdin, which the test keeps open) until
# the test's Ctrl-C arrives: the interrupt lands inside an epoch whatever the machine's speed.
INTERRUPTED_RUN = """
import signal, sys
# Ctrl-C as in a terminal, even where this test runs in the background (a shell starts background jobs
# with SIGINT ignored, and Python then leaves it ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
from actfusion_sdk.cli import main
from actfusion_sdk.train import trainer

run_epoch = trainer._Trainer.run_epoch

def held_run_epoch(self):
    if self.state.epoch == 2:
        sys.stderr.write("holding in epoch 3\\n")
        sys.stderr.flush()
        sys.stdin.buffer.read()
    return run_epoch(self)

trainer._Trainer.run_epoch = held_run_epoch
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(three_classes, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(batch_size=2).to_dict()))
    common = ["--data", str(three_classes), "--config", str(config), "--epochs", "20", "--eval-every", "20"]
    common += ["--val-fraction", "0", "--threads", "1", "--seed", "3", "--name", "run"]
    assert main(["train", *common, "--out", str(tmp_path / "straight"), "--quiet"]) == 0
    out = tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUN, "train", *common, "--out", str(out)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    seen = b""
    while b"holding in epoch 3" not in seen:
        chunk = process.stderr.read1(4096)
        assert chunk, f"training ended before its third epoch: {seen.decode()[-500:]}"
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    rest = rest.decode()
    assert process.returncode == 130
    saved = torch.load(out / "latest.pt", weights_only=True)
    assert saved["epoch"] == 2  # the last finished epoch
    assert f"saved a resumable checkpoint {out / 'latest.pt'} after epoch {saved['epoch']} of 20" in rest
    assert "--resume" in rest
    assert main(["train", *common, "--out", str(out), "--resume", "--quiet"]) == 0
    first = torch.load(tmp_path / "straight" / "latest.pt", weights_only=True)
    second = torch.load(out / "latest.pt", weights_only=True)
    assert first["step"] == second["step"]
    for key, value in first["model"].items():
        assert torch.equal(value, second["model"][key]), key


def test_unknown_recipe_names_the_choices(three_classes, tmp_path, capsys):
    code = main(["train", "--data", str(three_classes), "--out", str(tmp_path / "r"), "--preset", "tiny"])
    assert code == 2
    assert "unknown recipe 'tiny'; choose one of small, breakfast, 50salads, gtea" in capsys.readouterr().err


def test_small_recipe_is_the_cli_default(three_classes, tmp_path, monkeypatch):
    seen = {}

    def fake_train(config, *args, **kwargs):
        seen["config"] = resolve_config(config, kwargs["init"])
        raise KeyboardInterrupt

    monkeypatch.setattr("actfusion_sdk.train.train", fake_train)
    assert main(["train", "--data", str(three_classes), "--out", str(tmp_path / "r")]) == 130
    assert seen["config"] == SMALL


def test_cli_epochs_set_the_length_of_a_cosine_schedule(three_classes, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(tiny_config(lr_schedule="cosine").to_dict()))  # anneals over 7001 epochs
    out = tmp_path / "run"
    options = ["--config", config, "--epochs", "2", "--val-fraction", "0", "--quiet"]
    assert main(["train", "--data", str(three_classes), "--out", str(out), *map(str, options)]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rates = [record["lr"] for record in log if record["event"] == "epoch"]
    base = tiny_config().training.learning_rate
    assert rates == pytest.approx([base, base / 2])  # cos(pi * epoch / 2) over the 2 epochs asked for
    assert load_card(out / "model").config.training.epochs == 2
