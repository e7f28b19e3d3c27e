"""`actfusion selfcheck`: the shipped vectors, vector files of other configurations, failures, bad input."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_sdk.cli import main
from actfusion_sdk.data.targets import boundary_targets, soft_label_targets
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.config import (
    ActFusionConfig,
    DecoderConfig,
    DiffusionConfig,
    EncoderConfig,
    preset,
)
from actfusion_sdk.model.inference import sample_probs, seeded_generators
from actfusion_sdk.model.layers import DilatedAttentionLayer
from actfusion_sdk.model.losses import actfusion_losses, class_weights
from actfusion_sdk.model.masking import visible_frames

pytestmark = pytest.mark.usefixtures("single_thread")

ACTFUSION = Path(sys.executable).parent / "actfusion"


def run_selfcheck(capsys, *args: str) -> tuple[int, dict]:
    code = main(["selfcheck", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_shipped_vectors_through_the_console_script(testvectors):
    files = [
        testvectors / name
        for name in (
            "model_50salads.pt",
            "attention_layers.pt",
            "metrics.json",
            "lta.json",
            "losses_50salads.pt",
        )
    ]
    result = subprocess.run(
        [str(ACTFUSION), "selfcheck", "--attention-impl", "reference", "--json", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    model = report[str(files[0])]
    assert set(model) == {
        "encoder_logits",
        "cross_features",
        "decoder_logits",
        "segment_probs",
        "anticipate_probs",
    }
    assert max(model.values()) <= 1e-5
    assert len(report[str(files[1])]) == 120 and max(report[str(files[1])].values()) <= 1e-5
    assert max(report[str(files[2])].values()) <= 1e-9 and max(report[str(files[3])].values()) <= 1e-9
    losses = report[str(files[4])]
    assert len(losses) == 5 * 9 and max(losses.values()) <= 1e-5
    assert {name.split(".", 1)[1] for name in losses} >= {"feature_mask", "event_diffused", "decoder_ce_loss"}


def small_breakfast_config() -> ActFusionConfig:
    """An unshipped configuration: raw-feature and probability cross inputs, s = 0.5, soft labels."""
    return dataclasses.replace(
        preset("breakfast"),
        name="breakfast-small",
        encoder=EncoderConfig(6, 32, 5, 0.5, 0.1, 0.1, (-1, 2, -2)),
        decoder=DecoderConfig(4, 16, 3, 0.1),
        diffusion=DiffusionConfig(snr_scale=0.5),
    )


def write_model_vectors(path: Path) -> None:
    """A model file in the shipped format for an unshipped configuration, from our float64 reference."""
    config = small_breakfast_config()
    torch.manual_seed(0)
    model = ActFusion(config, 7)
    reference = copy.deepcopy(model).double().eval()
    reference.attention_impl = "reference"
    length, seed, observed = 101, 3, 31
    features = torch.randn(1, 2048, length)
    decoder_t, decoder_input = torch.tensor([321]), torch.rand(1, 7, length)
    with torch.no_grad():
        encoded = reference.encode(features.double())
        cross = encoded.cross.float()
        decoder_logits = reference.decode(cross.double(), decoder_t, decoder_input.double())
    visible = torch.arange(length)[None] < observed
    segment_probs = sample_probs(reference, features.double(), generators=seeded_generators(1, seed))
    anticipate_probs = sample_probs(
        reference, features.double(), generators=seeded_generators(1, seed), visible=visible
    )
    torch.save(
        {
            "config": config.to_official(),
            "num_classes": 7,
            "length": length,
            "state_dict": model.state_dict(),
            "features": features,
            "encoder_logits": encoded.logits.float(),
            "cross_features": cross,
            "decoder_t": decoder_t,
            "decoder_input": decoder_input,
            "decoder_logits": decoder_logits.float(),
            "ddim_seed": seed,
            "segment_probs": segment_probs.float(),
            "anticipate_observed": observed,
            "anticipate_probs": anticipate_probs.float(),
        },
        path,
    )


def write_attention_vectors(path: Path) -> None:
    """Attention-layer cases in the shipped format: C = 12, odd and 1-frame lengths, far-out taps, no bias."""
    torch.manual_seed(1)
    cases = []
    shapes = [(k, d, 77, "rel") for k in (3, 7) for d in (1, 32, 128)] + [
        (5, 2, 1, "rel"),
        (5, 4, 40, "none"),
    ]
    for kind in ("encoder", "decoder"):
        for kernel, dilation, length, pos in shapes:
            cross_dim = 5 if kind == "decoder" else 0
            layer = DilatedAttentionLayer(12, dilation, kernel, 0.1, cross_dim=cross_dim, pos=pos).eval()
            reference = copy.deepcopy(layer).double()
            reference.attention_impl = "reference"
            case = {"kind": kind, "K": kernel, "dilation": dilation, "C": 12, "L": length}
            case["x"] = torch.randn(1, 12, length)
            cross = None
            if cross_dim:
                case["x_cross"] = torch.randn(1, cross_dim, length)
                cross = reference.project_cross(case["x_cross"].double())
            with torch.no_grad():
                case["attention"] = reference.attention(case["x"].double(), cross).float()
                case["layer"] = reference(case["x"].double(), cross).float()
            case["state_dict"] = layer.state_dict()
            cases.append(case)
    torch.save(cases, path)


LOSS_CASES = ("full", "ant", "boundary03-", "segment=1", "random_patch", "random_num_patch")


def write_loss_vectors(path: Path) -> None:
    """A loss file in the shipped format: soft labels, 7 classes, 8-frame patches of which 2 are hidden,
    L = 45 (5 full patches and a tail); losses from our float64 reference, noising from the spec formula."""
    base = small_breakfast_config()
    config = dataclasses.replace(base, training=dataclasses.replace(base.training, n_mask=2, patch_size=8))
    num_classes, length, snr = 7, 45, config.diffusion.snr_scale
    torch.manual_seed(2)
    model = ActFusion(config, num_classes)
    reference = copy.deepcopy(model).double().eval()
    reference.attention_impl = "reference"
    weights = class_weights(np.arange(20, 20 + 30 * num_classes, 30))
    rng, np_rng = random.Random(4), np.random.default_rng(4)
    cases = []
    for kind in LOSS_CASES:
        labels = np.repeat(rng.sample(range(num_classes), 4), [9, 14, 7, 15])
        boundaries = boundary_targets(labels, config.training.boundary_smooth)
        visible = visible_frames(kind, labels, boundaries, rng=rng, np_rng=np_rng, n_mask=2, patch_size=8)
        features = torch.randn(1, 2048, length)
        masked = torch.where(torch.as_tensor(visible), features, model.mask_token.detach())
        t, noise = torch.randint(0, 1000, (1,)), torch.randn(1, num_classes, length)
        x0 = (2 * torch.nn.functional.one_hot(torch.as_tensor(labels), num_classes).T[None] - 1.0) * snr
        alpha_bar = reference.alphas_cumprod[t]
        noisy = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
        event_diffused = (noisy.clamp(-snr, snr) / snr + 1) / 2
        soft = torch.as_tensor(soft_label_targets(labels, num_classes, config.training.soft_label))
        with torch.no_grad():
            encoded = reference.encode(masked.double())
            decoder_logits = reference.decode(encoded.cross, t, event_diffused.float().double())
            terms = actfusion_losses(
                encoded.logits,
                decoder_logits,
                torch.as_tensor(labels)[None],
                torch.as_tensor(boundaries, dtype=torch.float64)[None],
                config.training.loss_weights,
                soft_targets=soft.double()[None],
            )
        losses = {f"{name}_loss": float(value) for name, value in terms.items() if name != "total"}
        cases.append(
            {
                "cond_type": kind,
                "features": features,
                "labels": torch.as_tensor(labels)[None],
                "boundary": torch.as_tensor(boundaries)[None, None],
                "feature_mask": torch.as_tensor(visible, dtype=torch.float32)[None, None],
                "masked_input": masked,
                "t": t,
                "noise": noise,
                "event_diffused": event_diffused,
                "losses": {**losses, "encoder_boundary_loss": 0.0},
            }
        )
    torch.save(
        {
            "config": config.to_official(),
            "num_classes": num_classes,
            "class_weights": weights,
            "state_dict": model.state_dict(),
            "cases": cases,
        },
        path,
    )


@pytest.fixture(scope="module")
def unshipped(tmp_path_factory) -> tuple[Path, Path, Path]:
    directory = tmp_path_factory.mktemp("vectors")
    write_model_vectors(directory / "model_breakfast_small.pt")
    write_attention_vectors(directory / "attention_small.pt")
    write_loss_vectors(directory / "losses_breakfast_small.pt")
    return (
        directory / "model_breakfast_small.pt",
        directory / "attention_small.pt",
        directory / "losses_breakfast_small.pt",
    )


@pytest.mark.parametrize("impl", ["reference", "torch"])
def test_unshipped_vectors_pass_in_float32(capsys, unshipped, impl):
    code, report = run_selfcheck(capsys, "--attention-impl", impl, *map(str, unshipped))
    model, attention, losses = (report[str(path)] for path in unshipped)
    assert len(model) == 5 and len(attention) == 32 and len(losses) == len(LOSS_CASES) * 9
    assert max(model.values()) <= 1e-5 and max(attention.values()) <= 1e-5
    assert max(losses.values()) <= 1e-5, losses
    assert code == 0


def test_a_wrong_loss_or_an_impossible_mask_fails_the_check(capsys, unshipped, tmp_path):
    data = torch.load(unshipped[2], weights_only=True)
    data["cases"][0]["losses"]["decoder_mse_loss"] += 1e-3
    patches = data["cases"][4]["feature_mask"]
    patches[..., :8] = 1.0 - patches[..., :8]  # one patch more or fewer than random_patch hides
    broken = tmp_path / "broken_losses.pt"
    torch.save(data, broken)
    assert main(["selfcheck", "--attention-impl", "torch", str(broken)]) == 1
    failed = [line.split()[1] for line in capsys.readouterr().out.splitlines() if line.endswith("FAIL")]
    assert failed == ["0:full.decoder_mse_loss", "4:random_patch.feature_mask", "4:random_patch.masked_input"]


def test_a_wrong_output_fails_the_check(capsys, unshipped, tmp_path):
    data = torch.load(unshipped[0], weights_only=True)
    data["segment_probs"][0, 0, 5] += 1e-3
    broken = tmp_path / "broken.pt"
    torch.save(data, broken)
    assert main(["selfcheck", "--attention-impl", "reference", str(broken)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any("segment_probs" in line and line.endswith("FAIL") for line in lines)
    assert any("encoder_logits" in line and line.endswith("ok") for line in lines)
    assert lines[-1] == "selfcheck: 4 of 5 outputs within tolerance"


def test_unreadable_files_exit_with_3(capsys, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a tensor file\n")
    assert main(["selfcheck", str(text)]) == 3
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    assert main(["selfcheck", str(other)]) == 3
    assert "is not a test-vector file" in capsys.readouterr().err


@pytest.mark.slow
def test_selfcheck_runs_where_av_and_pytorchvideo_are_missing(testvectors):
    """The GPU machine has no av or pytorchvideo: the CLI must build and selfcheck without importing them."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('av', 'pytorchvideo'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from actfusion_sdk.cli import main\n"
        "sys.exit(main(['selfcheck', '--attention-impl', 'torch', sys.argv[1]]))\n"
    )
    path = testvectors / "attention_layers.pt"
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "within tolerance" in result.stdout
