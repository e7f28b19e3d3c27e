"""Checkpoints: our safetensors + model card format, official raw state_dicts, and every WeightsError."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from actfusion_sdk.errors import ConfigError, WeightsError
from actfusion_sdk.fileio import sha256_file
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.checkpoint import (
    FORMAT_VERSION,
    ModelCard,
    load_model,
    load_official_state_dict,
    save_model,
)
from actfusion_sdk.model.config import preset

from .helpers import small_model

pytestmark = pytest.mark.usefixtures("single_thread")

CLASSES = ("background", "cut", "peel", "mix", "serve")


def card_for(model: ActFusion, **changes) -> ModelCard:
    fields = {
        "format_version": FORMAT_VERSION,
        "config": model.config,
        "classes": CLASSES,
        "features": {"extractor": "i3d_r50", "fps": 2.0},
        "fps": 15.0,
        "description": "test model",
        "training": {"epochs": 3},
    }
    return ModelCard(**(fields | changes))


def same_weights(a: ActFusion, b: ActFusion) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return list(first) == list(second) and all(
        torch.equal(first[k], second[k]) and first[k].dtype == second[k].dtype for k in first
    )


@pytest.fixture
def saved(tmp_path) -> tuple[ActFusion, Path]:
    model = small_model(seed=3)
    return model, save_model(model, card_for(model), tmp_path / "model")


def test_save_and_load_round_trip(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["model.json", "model.safetensors"]
    for path in (directory, directory / "model.json", directory / "model.safetensors"):
        loaded, card = load_model(path)
        assert same_weights(loaded, model) and not loaded.training
        assert card == card_for(model, sha256=sha256_file(directory / "model.safetensors"))
    assert loaded.alphas_cumprod.dtype == torch.float64
    features = torch.randn(1, 2048, 20)
    loaded.attention_impl = model.attention_impl
    with torch.no_grad():
        assert torch.equal(loaded.encode(features).logits, model.encode(features).logits)


def test_model_card_json_round_trip(saved):
    _, directory = saved
    data = json.loads((directory / "model.json").read_text())
    assert data["classes"] == list(CLASSES) and data["config"]["name"] == "small"
    assert ModelCard.from_dict(data).to_dict() == data


def test_truncated_safetensors_fails_the_checksum(saved):
    _, directory = saved
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="truncated or was modified"):
        load_model(directory)


def test_unreadable_safetensors_with_a_matching_checksum(saved):
    _, directory = saved
    (directory / "model.safetensors").write_text("not safetensors at all")
    card = json.loads((directory / "model.json").read_text())
    card["sha256"] = sha256_file(directory / "model.safetensors")
    (directory / "model.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_model(directory)


def test_card_and_model_disagreeing_on_classes(saved, tmp_path):
    model, directory = saved
    card = json.loads((directory / "model.json").read_text())
    card["classes"] = card["classes"][:4]
    (directory / "model.json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=r"encoder.conv_out.weight: file has shape \[5, 16, 1\]"):
        load_model(directory)
    with pytest.raises(ConfigError, match="names 4 classes"):
        save_model(model, card_for(model, classes=CLASSES[:4]), tmp_path / "other")


def test_missing_or_invalid_card(tmp_path, saved):
    _, directory = saved
    (directory / "model.json").unlink()
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(directory)
    (directory / "model.json").write_text("{broken")
    with pytest.raises(WeightsError, match="not a valid model card"):
        load_model(directory)


def test_official_state_dict_loads_strictly(tmp_path):
    model = ActFusion(preset("50salads"), 19)
    path = tmp_path / "split1.model"
    torch.save(model.state_dict(), path)
    loaded, card = load_model(path, preset="50salads", classes=[f"c{i}" for i in range(19)])
    assert same_weights(loaded, model) and card.classes[3] == "c3" and card.sha256 == sha256_file(path)
    wrapped = tmp_path / "latest.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, wrapped)
    assert same_weights(load_model(wrapped, preset="50salads", classes=19).model, model)


def test_official_file_with_the_wrong_preset_names_key_and_fitting_preset(tmp_path):
    path = tmp_path / "split1.model"
    torch.save(ActFusion(preset("50salads"), 19).state_dict(), path)
    with pytest.raises(
        WeightsError, match=r"decoder\.module\.layers\.0\.conv_block\.0\.weight.*fits preset '50salads'"
    ):
        load_model(path, preset="gtea")
    with pytest.raises(WeightsError, match="does not match preset 'breakfast'"):
        load_model(path, preset="breakfast")
    with pytest.raises(WeightsError, match="fits preset '50salads'.*convert it first"):
        load_model(path)


def test_official_file_with_the_wrong_class_count(tmp_path):
    path = tmp_path / "split1.model"
    torch.save(ActFusion(preset("50salads"), 19).state_dict(), path)
    with pytest.raises(WeightsError, match="has 19 classes.*but 48 were given"):
        load_model(path, preset="50salads", classes=48)


def test_official_file_missing_a_key(tmp_path):
    state = ActFusion(preset("gtea"), 11).state_dict()
    del state["decoder.conv_out.bias"]
    path = tmp_path / "split1.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing keys \['decoder.conv_out.bias'\]"):
        load_model(path, preset="gtea")


def test_truncated_official_file(tmp_path):
    path = tmp_path / "split1.model"
    torch.save(ActFusion(preset("gtea"), 11).state_dict(), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_official_state_dict(path)


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are my notes, not weights\n")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint"):
        load_official_state_dict(path)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="is empty"):
        load_official_state_dict(empty)


class Payload:
    """A class a weights-only unpickler must refuse to construct."""


def test_pickle_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weights": Payload()}, path)
    with pytest.raises(WeightsError, match="needs code to load"):
        load_official_state_dict(path)
    legacy = tmp_path / "legacy.pth"
    with open(legacy, "wb") as handle:
        pickle.dump({"weights": Payload()}, handle, protocol=2)
    with pytest.raises(WeightsError, match="needs code to load"):
        load_official_state_dict(legacy)


def test_a_pickle_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError, match="holds a list, not a state_dict"):
        load_official_state_dict(path)


def test_preset_and_classes_are_only_for_official_files(saved):
    _, directory = saved
    with pytest.raises(ConfigError, match="official state_dicts"):
        load_model(directory, preset="50salads")


def test_unknown_path_kind(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 10)
    with pytest.raises(WeightsError, match="is not a model"):
        load_model(path)
