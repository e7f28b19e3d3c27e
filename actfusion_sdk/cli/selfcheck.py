"""`actfusion selfcheck FILE...`: run this installation on test-vector files and report the max abs error.

File kinds (the format of tests/data/official, whatever configuration a file carries):
- model files (dict with config, state_dict, features, ...): encoder logits, cross features, one decoder call,
  DDIM segmentation and anticipation probabilities;
- attention-layer files (list of single-layer cases): the attention branch and the whole layer;
- JSON metric files ("videos" like metrics.json, "cases" like lta.json): the metrics module's checks.
Exit 0 iff every output is within tolerance (1e-5; 1e-9 for metrics), 1 otherwise, 3 if a file is unreadable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, KernelError
from ..runtime import resolve_device

TOLERANCE = 1e-5
METRICS_TOLERANCE = 1e-9
IMPLEMENTATIONS = ("auto", "reference", "torch", "triton")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "selfcheck",
        help="check this installation against official test-vector files",
        description="Run the model, attention layers or metrics on test-vector files (the format of "
        "tests/data/official) and report the max abs error per output. Exit 0 iff all are within "
        f"{TOLERANCE:g} ({METRICS_TOLERANCE:g} for metrics).",
    )
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="test-vector files (.pt or .json)"
    )
    parser.add_argument(
        "--attention-impl", default="auto", choices=IMPLEMENTATIONS, help="attention implementation"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument(
        "--json", action="store_true", help="print the report as JSON {file: {output: error}}"
    )
    parser.set_defaults(handler=run)


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """Full fp32 matmuls and convolutions: CUDA's TF32 defaults (cuDNN convolutions) err by ~1e-3."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run(args: argparse.Namespace) -> int:
    device = str(resolve_device(args.device))  # CUDA on a machine without it is a usage error, not an input's
    report: dict[str, dict[str, float]] = {}
    failures = 0
    for path in args.files:
        with strict_float32():
            errors, tolerance = check_file(path, args.attention_impl, device)
        report[str(path)] = errors
        failures += sum(not error <= tolerance for error in errors.values())
        if not args.json:
            for name, error in errors.items():
                print(f"{path}  {name}  {error:.3e}  {'ok' if error <= tolerance else 'FAIL'}")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        total = sum(len(errors) for errors in report.values())
        print(f"selfcheck: {total - failures} of {total} outputs within tolerance")
    return 0 if failures == 0 else 1


def check_file(path: Path, impl: str, device: str) -> tuple[dict[str, float], float]:
    """Max abs error per output of one file, and the tolerance that applies to it."""
    data = _read(path)
    if isinstance(data, Mapping) and ("videos" in data or "cases" in data):
        from ..metrics import check_anticipation_vectors, check_segmentation_vectors

        check = check_segmentation_vectors if "videos" in data else check_anticipation_vectors
        return _checked(path, lambda: check(data)), METRICS_TOLERANCE
    if isinstance(data, Mapping) and "state_dict" in data and "config" in data:
        return _checked(path, lambda: check_model_vectors(data, impl, device)), TOLERANCE
    if isinstance(data, list) and data and all(isinstance(case, Mapping) and "kind" in case for case in data):
        return _checked(path, lambda: check_attention_vectors(data, impl, device)), TOLERANCE
    raise InputError(
        f"{path} is not a test-vector file: expected a model dict (config, state_dict, ...), a list of "
        f"attention-layer cases, or a JSON file with 'videos' or 'cases'"
    )


def check_model_vectors(data: Mapping[str, Any], impl: str, device: str) -> dict[str, float]:
    """Errors of encoder, decoder and DDIM outputs for a model file (model_50salads.pt format)."""
    from ..model.actfusion import ActFusion
    from ..model.config import ActFusionConfig
    from ..model.inference import sample_probs, seeded_generators

    model = ActFusion(ActFusionConfig.from_official(data["config"]), int(data["num_classes"]))
    model.load_state_dict(data["state_dict"], strict=True)
    model.attention_impl = impl
    model.to(device).eval()
    features = data["features"].to(device=device, dtype=torch.float32)
    errors = {}
    with torch.inference_mode():
        encoded = model.encode(features)
        errors["encoder_logits"] = _max_error(encoded.logits, data["encoder_logits"])
        errors["cross_features"] = _max_error(encoded.cross, data["cross_features"])
        logits = model.decode(
            data["cross_features"].to(device), data["decoder_t"].to(device), data["decoder_input"].to(device)
        )
        errors["decoder_logits"] = _max_error(logits, data["decoder_logits"])
    seed = int(data["ddim_seed"])
    probs = sample_probs(model, features, generators=seeded_generators(1, seed))
    errors["segment_probs"] = _max_error(probs, data["segment_probs"])
    visible = torch.arange(features.shape[2], device=device)[None, :] < int(data["anticipate_observed"])
    probs = sample_probs(model, features, generators=seeded_generators(1, seed), visible=visible)
    errors["anticipate_probs"] = _max_error(probs, data["anticipate_probs"])
    return errors


def check_attention_vectors(cases: Sequence[Mapping[str, Any]], impl: str, device: str) -> dict[str, float]:
    """Errors of the attention branch and the whole layer for every single-layer case."""
    from ..model.layers import DilatedAttentionLayer

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
        layer.to(device).eval()
        x = case["x"].to(device)
        name = f"{index}:{case['kind']},K={case['K']},d={case['dilation']},L={case['L']}"
        with torch.inference_mode():
            projection = layer.project_cross(cross) if decoder else None
            errors[f"{name}.attention"] = _max_error(layer.attention(x, projection), case["attention"])
            errors[f"{name}.layer"] = _max_error(layer(x, projection), case["layer"])
    return errors


def _read(path: Path) -> Any:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable in any way: missing, not JSON, not a safe torch file
        raise InputError(f"cannot read {path}: {type(err).__name__}: {str(err).strip()[:200]}") from err


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


def _max_error(ours: torch.Tensor, official: torch.Tensor) -> float:
    return float((ours.detach().cpu().double() - official.double()).abs().max())
