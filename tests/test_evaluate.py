"""Evaluation: the protocol's wiring (windows, seeds, pooling), the report layout, the CLI on real weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from actfusion_sdk import evaluate as evaluation
from actfusion_sdk.cli import main
from actfusion_sdk.data.mstcn import MSTCNDataset
from actfusion_sdk.data.synthetic import write_synthetic_mstcn
from actfusion_sdk.errors import DatasetError
from actfusion_sdk.evaluate import EvaluationReport, evaluate_model
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.checkpoint import FORMAT_VERSION, ModelCard, save_model
from actfusion_sdk.model.config import preset
from actfusion_sdk.model.inference import FramePrediction

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def salads_like(tmp_path_factory):
    """50salads-shaped videos (19 classes, 2048-d features): one to train on, two to test."""
    root = tmp_path_factory.mktemp("eval") / "salads"
    return write_synthetic_mstcn(
        root, num_videos=3, num_classes=19, feature_dim=2048, frames=(48, 64), test_videos=2, noise=0.3
    )


def test_protocol_with_stubbed_predictions(salads_like, monkeypatch):
    dataset = MSTCNDataset(salads_like, 1, "test")
    calls = []

    def fake_segment(model, features, *, seed):
        calls.append(("segment", seed, features.shape[1]))
        labels = dataset.videos[seed].labels
        return FramePrediction(probs=np.zeros(0), labels=labels.copy())

    def fake_anticipate(model, features, *, total_frames, observation_ratio, seed):
        calls.append(("anticipate", seed, observation_ratio))
        labels = dataset.videos[seed].labels.copy()
        labels[int(observation_ratio * total_frames) :] = -1  # wrong everywhere after the cut
        return FramePrediction(probs=np.zeros(0), labels=labels)

    monkeypatch.setattr(evaluation, "segment", fake_segment)
    monkeypatch.setattr(evaluation, "anticipate", fake_anticipate)
    model = ActFusion(preset("50salads"), 19)
    report = evaluate_model(model, dataset)
    assert report.tas == {"acc": 100.0, "edit": 100.0, "f1@10": 100.0, "f1@25": 100.0, "f1@50": 100.0}
    # Every anticipated frame is wrong, every observed one right.
    assert all(value == 0.0 for row in report.moc.values() for value in row.values())
    assert all(scores["acc"] == 100.0 for scores in report.observed.values())
    assert [c for c in calls if c[0] == "segment"] == [
        ("segment", i, v.num_frames) for i, v in enumerate(dataset.videos)
    ]
    assert sorted(c[1:] for c in calls if c[0] == "anticipate") == sorted(
        (i, alpha) for i in range(2) for alpha in (0.2, 0.3)
    )
    assert report.combined_score() == pytest.approx((100.0 + 0.0) / 2)


def test_report_table_and_json():
    report = EvaluationReport(
        videos=2,
        tas={"acc": 80.0, "edit": 70.0, "f1@10": 60.0, "f1@25": 50.0, "f1@50": 40.0},
        moc={0.2: {0.1: 30.0, 0.5: 10.0}, 0.3: {0.1: 20.0, 0.5: 0.0}},
        observed={0.2: {}, 0.3: {}},
    )
    assert report.tas_score() == 60.0 and report.lta_score() == 15.0 and report.combined_score() == 37.5
    lines = report.table().splitlines()
    assert lines[0].split() == ["TAS", "F1@10", "F1@25", "F1@50", "Edit", "Acc"]
    assert lines[1].split() == ["60.0", "50.0", "40.0", "70.0", "80.0"]
    assert lines[3].split() == ["LTA", "(MoC)", "β=0.1", "β=0.5"]
    assert lines[4].split() == ["α=0.2", "30.0", "10.0"]
    assert json.loads(json.dumps(report.to_dict()))["lta"]["0.3"]["moc"]["0.5"] == 0.0


@pytest.mark.slow
def test_cli_evaluates_an_official_raw_checkpoint(salads_like, testvectors, tmp_path, capsys):
    official = torch.load(testvectors / "model_50salads.pt", weights_only=True)
    weights = tmp_path / "split1.model"
    torch.save(official["state_dict"], weights)
    code = main(
        [
            "evaluate",
            "--data",
            str(salads_like),
            "--split",
            "1",
            "--weights",
            str(weights),
            "--preset",
            "50salads",
            "--json",
            "--quiet",
        ]
    )
    assert code == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["videos"] == 2
    assert set(scores["tas"]) == {"acc", "edit", "f1@10", "f1@25", "f1@50"}
    assert set(scores["lta"]) == {"0.2", "0.3"} and set(scores["lta"]["0.2"]["moc"]) == {
        "0.1",
        "0.2",
        "0.3",
        "0.5",
    }
    assert 0 <= scores["scores"]["combined"] <= 100
    code = main(
        ["evaluate", "--data", str(salads_like), "--weights", str(weights), "--preset", "50salads", "--quiet"]
    )
    assert code == 0 and "LTA (MoC)" in capsys.readouterr().out


def test_cli_train_then_evaluate_our_format(salads_like, tmp_path, capsys):
    config = tmp_path / "config.json"
    # The 50salads recipe with a small encoder, so the CLI run stays short.
    base = preset("50salads").to_dict()
    base["encoder"].update(num_layers=3, width=8, feature_layer_indices=[0, 2])
    base["decoder"].update(num_layers=2, width=8)
    config.write_text(json.dumps(base))
    out = tmp_path / "run"
    rest = ["--epochs", "1", "--val-fraction", "0", "--quiet"]
    code = main(
        [
            "train",
            "--data",
            str(salads_like),
            "--config",
            str(config),
            "--out",
            str(out),
        ]
        + rest
    )
    assert code == 0 and (out / "model" / "model.json").is_file() and (out / "latest.pt").is_file()
    capsys.readouterr()
    args = [
        "evaluate",
        "--data",
        str(salads_like),
        "--weights",
        str(out / "model"),
        "--subset",
        "train",
        "--quiet",
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "TAS"
    # A model card serves as --config: the same configuration and recipe are trained again, under the name
    # of the new run (its --out folder, as no --name is given).
    card = out / "model" / "model.json"
    again = tmp_path / "again"
    code = main(["train", "--data", str(salads_like), "--config", str(card), "--out", str(again)] + rest)
    assert code == 0
    retrained = json.loads((again / "model" / "model.json").read_text())["config"]
    assert retrained == {**json.loads(card.read_text())["config"], "name": "again"}


def test_evaluate_rejects_a_foreign_mapping(salads_like, tmp_path):
    other = write_synthetic_mstcn(
        tmp_path / "other", num_videos=2, num_classes=19, feature_dim=2048, frames=(64, 70), test_videos=1
    )
    (other / "mapping.txt").write_text("".join(f"{i} step_{i}\n" for i in range(19)))
    for path in (other / "groundTruth").iterdir():
        path.write_text(path.read_text().replace("action_", "step_"))
    model = ActFusion(preset("50salads"), 19)
    card = ModelCard(
        format_version=FORMAT_VERSION,
        config=preset("50salads"),
        classes=tuple(f"action_{i}" for i in range(19)),
    )
    save_model(model, card, tmp_path / "model")
    with pytest.raises(DatasetError, match="differ from"):
        evaluation.evaluate(other, 1, tmp_path / "model", progress=False)
