"""Parity with the official `get_training_loss` (losses_50salads.pt): masks, noising, every loss term."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from actfusion_sdk.model.losses import actfusion_losses
from actfusion_sdk.model.masking import MaskChoices, build_mask, visible_frames
from actfusion_sdk.runtime import inference
from actfusion_sdk.testing import (
    check_loss_vectors,
    noisy_labels,
    official_model,
    recorded_choices,
    unordered,
)

pytestmark = pytest.mark.usefixtures("single_thread")

TERMS = (
    "encoder_ce_loss",
    "encoder_mse_loss",
    "encoder_boundary_loss",
    "decoder_ce_loss",
    "decoder_mse_loss",
    "decoder_boundary_loss",
)
# The official mask() keeps these streams' visible frames in place; it permutes those of the others (§9.7).
IN_ORDER = ("boundary05-", "random_num_patch")


@pytest.fixture(scope="module")
def official(testvectors) -> dict:
    return torch.load(testvectors / "losses_50salads.pt", weights_only=True)


def case_arrays(case: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels [L], boundaries [L] and the recorded mask [L] (True = visible) of one case."""
    return case["labels"][0].numpy(), case["boundary"][0, 0].numpy(), case["feature_mask"][0, 0].numpy() > 0.5


def test_the_file_has_one_case_per_masking_type(official):
    kinds = [case["cond_type"] for case in official["cases"]]
    assert kinds == ["full", "ant", "boundary05-", "segment=2", "random_num_patch"]


def test_our_masking_rebuilds_every_recorded_mask_from_the_official_choices(official):
    expected = {
        "full": MaskChoices(),
        "ant": MaskChoices(observed_ratio=0.2),  # int(29·0.2) = 5 frames visible
        "boundary05-": MaskChoices(),  # the smoothed boundary is ≥ 0.5 on all 27 frames
        "segment=2": MaskChoices(hidden_classes=(0, 2)),
        "random_num_patch": MaskChoices(hidden_patches=(0, 1)),  # L = 21: both full patches, the tail stays
    }
    for case in official["cases"]:
        kind = case["cond_type"]
        labels, boundaries, recorded = case_arrays(case)
        choices = recorded_choices(kind, recorded, labels, boundaries, n_mask=10, patch_size=10)
        assert choices == expected[kind], kind
        assert np.array_equal(build_mask(kind, labels, boundaries, choices, patch_size=10), recorded), kind


def test_the_random_path_reaches_every_recorded_mask(official):
    """`visible_frames` draws the choices `build_mask` consumes: some seed gives each official mask."""
    for case in official["cases"]:
        labels, boundaries, recorded = case_arrays(case)
        assert any(
            np.array_equal(
                visible_frames(
                    case["cond_type"],
                    labels,
                    boundaries,
                    rng=random.Random(seed),
                    np_rng=np.random.default_rng(seed),
                ),
                recorded,
            )
            for seed in range(200)
        ), case["cond_type"]


def test_masks_no_official_draw_can_make_are_refused(official):
    by_kind = {case["cond_type"]: case_arrays(case) for case in official["cases"]}
    labels, boundaries, recorded = by_kind["ant"]
    extra = recorded.copy()
    extra[10] = True  # a legal visible prefix (5 frames) plus a visible future frame
    choices = recorded_choices("ant", extra, labels, boundaries, n_mask=10, patch_size=10)
    assert not np.array_equal(build_mask("ant", labels, boundaries, choices, patch_size=10), extra)
    shorter = np.arange(len(labels)) < 4  # int(29·α) is never 4
    assert recorded_choices("ant", shorter, labels, boundaries, n_mask=10, patch_size=10) is None
    labels, boundaries, _ = by_kind["segment=2"]
    three = ~np.isin(labels, [0, 1, 2])
    assert recorded_choices("segment=2", three, labels, boundaries, n_mask=10, patch_size=10) is None
    labels, boundaries, _ = by_kind["random_num_patch"]
    one_patch = np.arange(len(labels)) >= 10  # 2 full patches and randint(5, 10) ≥ 2: both are hidden
    assert (
        recorded_choices("random_num_patch", one_patch, labels, boundaries, n_mask=10, patch_size=10) is None
    )


@pytest.mark.parametrize("impl", ["reference", "torch"])
def test_every_loss_term_of_every_case_matches_official(official, impl):
    errors = check_loss_vectors(official, impl, "cpu")
    outputs = ("feature_mask", "masked_input", "event_diffused", *TERMS)
    assert set(errors) == {
        f"{index}:{case['cond_type']}.{output}"
        for index, case in enumerate(official["cases"])
        for output in outputs
    }
    assert max(errors.values()) <= 1e-5, {name: error for name, error in errors.items() if error > 1e-5}


def test_the_official_encoder_input_is_ours_up_to_the_order_of_visible_frames(official):
    """Quirk §9.7: an unstable CPU argsort over tied mask values reorders the visible frames (L > 16)."""
    model = official_model(official, "torch", "cpu")
    for case in official["cases"]:
        _, _, recorded = case_arrays(case)
        visible = torch.as_tensor(recorded)
        ours = torch.where(visible, case["features"][0], model.mask_token.detach()[0])
        theirs = case["masked_input"][0]
        assert torch.equal(unordered(theirs), unordered(ours))
        assert torch.equal(theirs, ours) == (case["cond_type"] in IN_ORDER), case["cond_type"]


def test_our_own_masking_reproduces_the_official_losses_where_the_frames_stay_in_order(official):
    model = official_model(official, "torch", "cpu")
    config = model.config
    for case in official["cases"]:
        if case["cond_type"] not in IN_ORDER:
            continue
        _, _, recorded = case_arrays(case)
        noisy = noisy_labels(model, case["labels"], case["t"], case["noise"])
        with inference(model):
            encoded = model.encode(case["features"], torch.as_tensor(recorded)[None])
            decoder_logits = model.decode(encoded.cross, case["t"], noisy.float())
            terms = actfusion_losses(
                encoded.logits,
                decoder_logits,
                case["labels"],
                case["boundary"][:, 0],
                config.training.loss_weights,
                weights=official["class_weights"],
            )
        for term in TERMS:
            ours = 0.0 if term == "encoder_boundary_loss" else terms[term.removesuffix("_loss")].item()
            assert ours == pytest.approx(case["losses"][term], abs=1e-5), (case["cond_type"], term)
