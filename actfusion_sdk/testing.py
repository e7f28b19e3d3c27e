"""Checks of this implementation against test-vector files (the format of tests/data/official).

Every checker returns the largest absolute error per output. File kinds, whatever configuration, data and
cases a file carries:
- model files (config, state_dict, features, ...): encoder logits, cross features, one decoder call, DDIM
  segmentation and anticipation probabilities;
- loss files (config, state_dict, class_weights, cases): per training case, the mask, the encoder input, the
  noisy decoder input and every loss term;
- attention-layer files (a list of single-layer cases): the attention branch and the whole layer;
- metric files (JSON with "videos" like metrics.json, or "cases" like lta.json).
"""

from __future__ import annotations

import contextlib
import json
import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError, KernelError
from .metrics import (
    OVERLAPS,
    AnticipationMetrics,
    SegmentationMetrics,
    correct_frames,
    edit_score,
    f1_counts,
)
from .model.actfusion import ActFusion
from .model.config import ActFusionConfig
from .model.inference import sample_probs, seeded_generators
from .model.layers import DilatedAttentionLayer
from .model.losses import actfusion_losses
from .model.masking import (
    ANTICIPATION_RATIOS,
    PATCH_TYPES,
    SEGMENT_PICKS,
    MaskChoices,
    build_mask,
    patch_counts,
    present_classes,
)
from .runtime import inference

TOLERANCE = 1e-5
METRICS_TOLERANCE = 1e-9


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """Full fp32 matmuls and convolutions: CUDA's TF32 defaults (cuDNN convolutions) err by ~1e-3."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def check_file(
    path: Path, impl: str = "auto", device: str = "cpu", cuda_graphs: bool = False
) -> tuple[dict[str, float], float]:
    """Max abs error per output of one test-vector file, and the tolerance that applies to it.

    cuda_graphs: a model file's DDIM outputs are sampled through CUDA-graph replay (CUDA only).
    """
    data = read_vectors(path)
    if isinstance(data, Mapping) and "state_dict" in data and "config" in data:
        with strict_float32():
            if "cases" in data:
                return _checked(path, lambda: check_loss_vectors(data, impl, device)), TOLERANCE
            return _checked(path, lambda: check_model_vectors(data, impl, device, cuda_graphs)), TOLERANCE
    if isinstance(data, Mapping) and ("videos" in data or "cases" in data):
        metrics = check_segmentation_vectors if "videos" in data else check_anticipation_vectors
        return _checked(path, lambda: metrics(data)), METRICS_TOLERANCE
    if isinstance(data, list) and data and all(isinstance(case, Mapping) and "kind" in case for case in data):
        with strict_float32():
            return _checked(path, lambda: check_attention_vectors(data, impl, device)), TOLERANCE
    raise InputError(
        f"{path} is not a test-vector file: expected a model or loss dict (config, state_dict, ...), a list "
        f"of attention-layer cases, or a JSON file with 'videos' or 'cases'"
    )


def read_vectors(path: Path) -> Any:
    """A test-vector file: JSON, or a torch file holding only plain data (weights_only)."""
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's text is pages long: name the cause in one line
        raise InputError(
            f"{path} is not a test-vector file: not a torch file holding only tensors and plain data "
            "(test vectors are .pt files saved with torch.save, or .json metric files)"
        ) from err
    except Exception as err:  # unreadable in any way: missing, not JSON, not a torch file
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputError(f"cannot read {path}: {type(err).__name__}: {first_line}") from err


def check_model_vectors(
    data: Mapping[str, Any], impl: str, device: str, cuda_graphs: bool = False
) -> dict[str, float]:
    """Errors of encoder, decoder and DDIM outputs for a model file (model_50salads.pt format); with
    cuda_graphs, the DDIM loop replays its decoder from CUDA graphs."""
    model = official_model(data, impl, device)
    features = data["features"].to(device=device, dtype=torch.float32)
    errors = {}
    with inference(model):
        encoded = model.encode(features)
        errors["encoder_logits"] = max_error(encoded.logits, data["encoder_logits"])
        errors["cross_features"] = max_error(encoded.cross, data["cross_features"])
        logits = model.decode(
            data["cross_features"].to(device), data["decoder_t"].to(device), data["decoder_input"].to(device)
        )
        errors["decoder_logits"] = max_error(logits, data["decoder_logits"])
    seed = int(data["ddim_seed"])
    probs = sample_probs(model, features, generators=seeded_generators(1, seed), cuda_graphs=cuda_graphs)
    errors["segment_probs"] = max_error(probs, data["segment_probs"])
    visible = torch.arange(features.shape[2], device=device)[None, :] < int(data["anticipate_observed"])
    probs = sample_probs(
        model, features, generators=seeded_generators(1, seed), visible=visible, cuda_graphs=cuda_graphs
    )
    errors["anticipate_probs"] = max_error(probs, data["anticipate_probs"])
    return errors


def check_loss_vectors(data: Mapping[str, Any], impl: str, device: str) -> dict[str, float]:
    """Errors per training case of a loss file (losses_50salads.pt format), as '<index>:<cond_type>.<output>'.

    - feature_mask: our `build_mask` on choices the official draws could have made (0 when it rebuilds the
      recorded mask, 1 when it cannot or no legal draw makes it);
    - masked_input: the recorded encoder input against the features where visible and the mask token where
      hidden, up to the order of the visible frames (the official mask() permutes them, see `unordered`);
    - event_diffused: our forward noising of the labels with the recorded t and noise;
    - every loss term: our model and losses on the recorded encoder input, mask, t and noisy labels.
    """
    model = official_model(data, impl, device)
    weights = data["class_weights"].to(device) if model.config.training.class_weighting else None
    errors: dict[str, float] = {}
    for index, case in enumerate(data["cases"]):
        for output, error in _loss_case_errors(model, case, weights, device).items():
            errors[f"{index}:{case['cond_type']}.{output}"] = error
    return errors


def _loss_case_errors(
    model: ActFusion, case: Mapping[str, Any], weights: torch.Tensor | None, device: str
) -> dict[str, float]:
    """The outputs of `check_loss_vectors` for one case."""
    training, kind = model.config.training, case["cond_type"]
    labels, boundaries = case["labels"][0].numpy(), case["boundary"][0, 0].numpy()
    recorded = case["feature_mask"][0, 0].numpy() > 0.5
    choices = recorded_choices(kind, recorded, labels, boundaries, training.n_mask, training.patch_size)
    rebuilt = (
        None
        if choices is None
        else build_mask(kind, labels, boundaries, choices, patch_size=training.patch_size)
    )
    errors = {"feature_mask": float(rebuilt is None or not np.array_equal(rebuilt, recorded))}

    features, masked = case["features"].to(device), case["masked_input"].to(device)
    visible = torch.as_tensor(recorded, device=device)
    token = model.mask_token.detach()[0].expand_as(features[0])
    expected = torch.where(visible, features[0], token)
    errors["masked_input"] = max(
        max_error(masked[0][:, ~visible], token[:, ~visible]),
        max_error(unordered(masked[0][:, visible]), unordered(expected[:, visible])),
    )

    label_ids, t, noise = case["labels"].to(device), case["t"].to(device), case["noise"].to(device)
    noisy = noisy_labels(model, label_ids, t, noise)
    errors["event_diffused"] = max_error(noisy, case["event_diffused"])
    soft = None
    if training.soft_label is not None:
        from .data.targets import soft_label_targets  # scipy: imported only where a file needs it

        num_classes = noise.shape[1]
        soft = torch.as_tensor(soft_label_targets(labels, num_classes, training.soft_label), device=device)[
            None
        ]
    with inference(model):
        encoded = model.encode(masked, visible[None])
        decoder_logits = model.decode(encoded.cross, t, noisy.float())
        terms = actfusion_losses(
            encoded.logits,
            decoder_logits,
            label_ids,
            case["boundary"][:, 0].to(device),
            training.loss_weights,
            weights=weights,
            soft_targets=soft,
        )
    for term, official in case["losses"].items():
        # The official encoder boundary term is the constant 0; ours leaves it out (spec §3).
        ours = torch.zeros(()) if term == "encoder_boundary_loss" else terms[term.removesuffix("_loss")]
        errors[term] = max_error(ours, torch.as_tensor(official))
    return errors


def recorded_choices(
    kind: str, visible: np.ndarray, labels: np.ndarray, boundaries: np.ndarray, n_mask: int, patch_size: int
) -> MaskChoices | None:
    """Choices the official draws could have made for a recorded mask [L] (True = visible), read off the
    mask; None where no draw of type `kind` hides that many patches, such a prefix or such classes (spec §4).

    `build_mask` on the result rebuilds the mask exactly when the official masking made it.
    """
    visible = np.asarray(visible, dtype=bool)
    labels = np.asarray(labels)
    length = len(labels)
    if kind == "ant":
        observed = length if visible.all() else int(np.argmin(visible))  # the visible prefix
        ratios = [ratio for ratio in ANTICIPATION_RATIOS if int(length * ratio) == observed]
        return MaskChoices(observed_ratio=ratios[0]) if ratios else None
    if kind in SEGMENT_PICKS:
        hidden = tuple(int(label) for label in np.unique(labels[~visible]))
        present = set(present_classes(labels).tolist())
        legal = 1 <= len(hidden) <= SEGMENT_PICKS[kind] and set(hidden) <= present
        return MaskChoices(hidden_classes=hidden) if legal else None
    if kind in PATCH_TYPES:
        available = length // patch_size
        hidden = tuple(
            i for i in range(available) if not visible[i * patch_size : (i + 1) * patch_size].any()
        )
        legal = len(hidden) in {min(count, available) for count in patch_counts(kind, n_mask)}
        return MaskChoices(hidden_patches=hidden) if legal else None
    return MaskChoices()


def noisy_labels(
    model: ActFusion, labels: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """The noisy decoder input of training, float64 (spec §3): denormalize(clamp(q_sample(x0), ±s))."""
    one_hot = F.one_hot(labels, noise.shape[1]).permute(0, 2, 1).float()
    return model.schedule.noisy_labels(one_hot, t, noise, model.config.diffusion.snr_scale)


def unordered(frames: torch.Tensor) -> torch.Tensor:
    """The frames [D, n] sorted lexicographically, to compare two sets of frames regardless of their order.

    The official mask() restores frame order with an unstable argsort over tied mask values, which on CPU
    permutes the visible frames of streams longer than 16 (quirk §9.7); we keep them in place.
    """
    order = np.lexsort(frames.detach().cpu().numpy()[::-1])
    return frames[:, torch.as_tensor(order, device=frames.device)]


def check_attention_vectors(cases: Sequence[Mapping[str, Any]], impl: str, device: str) -> dict[str, float]:
    """Errors of the attention branch and the whole layer for every single-layer case."""
    errors = {}
    for index, case in enumerate(cases):
        decoder = case["kind"] == "decoder"
        cross = case["x_cross"].to(device) if decoder else None
        layer = DilatedAttentionLayer(
            int(case["C"]),
            int(case["dilation"]),
            int(case["K"]),
            dropout=0.0,
            cross_dim=cross.shape[1] if decoder else 0,
            pos="rel" if "rel_pos_emb.weight" in case["state_dict"] else "none",
        )
        layer.load_state_dict(case["state_dict"], strict=True)
        layer.attention_impl = impl
        layer.to(device)
        x = case["x"].to(device)
        name = f"{index}:{case['kind']},K={case['K']},d={case['dilation']},L={case['L']}"
        with inference(layer):
            projection = layer.project_cross(cross) if decoder else None
            errors[f"{name}.attention"] = max_error(layer.attention(x, projection), case["attention"])
            errors[f"{name}.layer"] = max_error(layer(x, projection), case["layer"])
    return errors


def check_segmentation_vectors(data: Mapping) -> dict[str, float]:
    """Largest absolute deviation per output for a file shaped like metrics.json.

    Per-video outputs: 'correct', 'edit', 'tp_fp_fn@τ'; pooled ones are prefixed 'pooled.'.
    """
    deviations: dict[str, float] = {}

    def record(name: str, ours: Iterable[float] | float, official: Iterable[float] | float) -> None:
        gap = float(np.max(np.abs(np.asarray(ours, np.float64) - np.asarray(official, np.float64))))
        deviations[name] = max(deviations.get(name, 0.0), gap)

    accumulator = SegmentationMetrics()
    for video in data["videos"]:
        pred, gt = video["pred"], video["gt"]
        accumulator.update(pred, gt)
        record("correct", correct_frames(pred, gt), video["correct"])
        record("edit", edit_score(pred, gt), video["edit"])
        for overlap in OVERLAPS:
            name = f"tp_fp_fn@{overlap}"
            record(name, f1_counts(pred, gt, overlap), video[name])
    pooled = accumulator.result()
    record("pooled.acc", pooled["acc"], data["pooled"]["acc"])
    record("pooled.edit", pooled["edit"], data["pooled"]["edit"])
    for overlap in OVERLAPS:
        record(f"pooled.f1@{overlap}", pooled[f"f1@{round(overlap * 100)}"], data["pooled"][f"f1@{overlap}"])
    return deviations


def check_anticipation_vectors(data: Mapping) -> dict[str, float]:
    """Largest absolute MoC deviation per (α, β) for a file shaped like lta.json."""
    deviations: dict[str, float] = {}
    num_classes = len(data["classes"])
    for case in data["cases"]:
        ratios = tuple(case["pred_ratios"])
        accumulator = AnticipationMetrics(num_classes, case["obs"], ratios)
        for video in case["videos"]:
            accumulator.update(video["pred_ids"], video["gt_ids"])
        ours = accumulator.result()
        for beta, official in zip(ratios, case["moc"], strict=True):
            deviations[f"moc@obs={case['obs']},pred={beta}"] = abs(ours[beta] - official)
    return deviations


def official_model(data: Mapping[str, Any], impl: str, device: str) -> ActFusion:
    """The model a vector file describes: its official configuration and raw state_dict, on `device`."""
    model = ActFusion(ActFusionConfig.from_official(data["config"]), int(data["num_classes"]))
    model.load_state_dict(data["state_dict"], strict=True)
    model.attention_impl = impl
    return model.to(device)


def max_error(ours: torch.Tensor, official: torch.Tensor) -> float:
    """Largest absolute difference, in float64 on the CPU (0 for empty tensors)."""
    difference = ours.detach().cpu().double() - official.detach().cpu().double()
    return float(difference.abs().max()) if difference.numel() else 0.0


def _checked(path: Path, check: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run a check; a file whose content does not fit its format is an input error."""
    try:
        return check()
    except KernelError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:
        raise InputError(
            f"{path} does not have the expected test-vector layout: {type(err).__name__}: {err}"
        ) from err
