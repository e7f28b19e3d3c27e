"""Segmentation and anticipation on a full-rate feature sequence (spec §3, §4, §10).

Temporal-augmentation streams (stream o = features[:, o::sr]) are sampled as batches of equal-length streams
(at most two lengths), each stream with a fresh CPU generator in the same starting state, so the numbers equal
the official one-stream-at-a-time run. Probabilities are truncated to the shortest stream, averaged,
post-processed (median or purge) and upsampled to the full frame rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..kernels.engine import engine_for
from ..postprocess import median_filter_probs, purge, upsample_indices
from ..runtime import inference
from .acceleration import accelerated
from .actfusion import ActFusion

Features = torch.Tensor | np.ndarray


@dataclass(frozen=True)
class FramePrediction:
    """Full-rate result: post-processed, renormalised probs [nc, T], labels [T], frames the model saw."""

    probs: np.ndarray
    labels: np.ndarray
    observed_frames: int | None = None


def seeded_generators(
    count: int, seed: int = 0, generator: torch.Generator | None = None
) -> list[torch.Generator]:
    """`count` CPU generators in one starting state: seeded with `seed`, or copies of `generator`'s."""
    if generator is not None and generator.device.type != "cpu":
        raise ConfigError(
            f"sampling draws on the CPU (official order); pass a CPU generator, not {generator.device}"
        )
    generators = []
    for _ in range(count):
        fresh = torch.Generator()
        if generator is None:
            fresh.manual_seed(seed)
        else:
            fresh.set_state(generator.get_state())
        generators.append(fresh)
    return generators


def sample_probs(
    model: ActFusion,
    features: torch.Tensor,
    *,
    generators: Sequence[torch.Generator],
    visible: torch.Tensor | None = None,
    cache_cross: bool = True,
    compile_denoiser: bool = False,
    cuda_graphs: bool = False,
) -> torch.Tensor:
    """DDIM probabilities [B, nc, L] (before post-processing) for equal-length sequences [B, D, L].

    `generators` holds one CPU generator per sequence; cache_cross=False recomputes the decoder's cross
    projections at every step as the official code does (same numbers, slower). compile_denoiser runs
    the decoder through torch.compile and cuda_graphs replays it from a CUDA graph (both off by default,
    see `acceleration`).
    """
    engine = engine_for(model)  # on a CPU, the fused kernels run the model from the outside
    with inference(model), engine.running():
        cross = model.encode(features, visible, with_logits=False).cross
        cache = model.precompute_cross(cross) if cache_cross else None

        def decode(noisy_labels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model.decode(cross, t, noisy_labels, cache)

        denoise = accelerated(decode, features.device, compile=compile_denoiser, cuda_graphs=cuda_graphs)
        batch, _, length = features.shape
        return model.sampler(engine.sampler_steps()).sample(
            denoise,
            (batch, model.num_classes, length),
            generators,
            device=features.device,
            dtype=features.dtype,
        )


def segment(
    model: ActFusion,
    features: Features,
    *,
    seed: int = 0,
    generator: torch.Generator | None = None,
    cache_cross: bool = True,
    compile_denoiser: bool = False,
    cuda_graphs: bool = False,
) -> FramePrediction:
    """Temporal action segmentation of features [D, T] (spec §3, 'decoder-agg' mode).

    Every stream starts from `seed` (or from a copy of `generator`'s state, which is not advanced).
    compile_denoiser and cuda_graphs are passed to `sample_probs`.
    """
    full = _prepare(model, features)
    total = full.shape[1]
    _check_length(model, total)
    streams = [full[:, offset :: model.config.sample_rate] for offset in _offsets(model)]
    stream_probs = _run_grouped(
        streams,
        lambda batch: sample_probs(
            model,
            batch,
            generators=seeded_generators(batch.shape[0], seed, generator),
            cache_cross=cache_cross,
            compile_denoiser=compile_denoiser,
            cuda_graphs=cuda_graphs,
        ),
    )
    return _finish(model, stream_probs, total, observed_frames=None)


def anticipate(
    model: ActFusion,
    features: Features,
    *,
    total_frames: int,
    observed_frames: int | None = None,
    observation_ratio: float | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> FramePrediction:
    """Predict all `total_frames` frames from an observed prefix; the rest becomes mask tokens (spec §4).

    Give `observed_frames` (full-rate count) or `observation_ratio` α (official protocol:
    obs = round(α·ceil(T/sr)) frames of every stream). Features beyond the observed part are ignored.
    """
    full = _prepare(model, features)
    sample_rate = model.config.sample_rate
    _check_length(model, total_frames)
    if full.shape[1] > total_frames:
        raise InputError(f"features have {full.shape[1]} frames, more than total_frames={total_frames}")
    if (observed_frames is None) == (observation_ratio is None):
        raise ConfigError("give exactly one of observed_frames and observation_ratio")
    stream_length = math.ceil(total_frames / sample_rate)
    offsets = torch.tensor(_offsets(model))[:, None]
    frame_index = offsets + sample_rate * torch.arange(stream_length)[None, :]  # [streams, stream_length]
    if observation_ratio is not None:
        if not 0 <= observation_ratio <= 1:
            raise ConfigError(f"observation_ratio must be in [0, 1], got {observation_ratio}")
        observed_steps = round(
            stream_length * observation_ratio
        )  # Python round: banker's, as the official code
        visible = torch.arange(stream_length)[None, :] < observed_steps
        observed_frames = min(observed_steps * sample_rate, total_frames)
    else:
        if not 0 <= observed_frames <= total_frames:
            raise ConfigError(f"observed_frames must be in [0, {total_frames}], got {observed_frames}")
        visible = frame_index < observed_frames
    visible = visible & (frame_index < total_frames)
    needed = int(frame_index[visible].max()) + 1 if bool(visible.any()) else 0
    if full.shape[1] < needed:
        raise InputError(f"features cover {full.shape[1]} frames, but the observed part needs {needed}")
    # Gather every stream at its full length; frames that are not visible are replaced by the mask token.
    source = full if full.shape[1] else full.new_zeros(full.shape[0], 1)
    streams = source[:, frame_index.clamp(max=source.shape[1] - 1)].permute(1, 0, 2)
    probs = sample_probs(
        model,
        streams,
        generators=seeded_generators(streams.shape[0], seed, generator),
        visible=visible.to(full.device),
    )
    return _finish(model, list(probs), total_frames, observed_frames=observed_frames)


def encoder_labels(model: ActFusion, features: Features) -> np.ndarray:
    """Full-rate labels [T] from the encoder alone: stream-averaged softmax of its logits, post-processed."""
    full = _prepare(model, features)
    total = full.shape[1]
    _check_length(model, total)
    streams = [full[:, offset :: model.config.sample_rate] for offset in _offsets(model)]

    def encoder_probs(batch: torch.Tensor) -> torch.Tensor:
        with inference(model):
            return torch.softmax(model.encode(batch).logits, dim=1)

    return _finish(model, _run_grouped(streams, encoder_probs), total, observed_frames=None).labels


def _prepare(model: ActFusion, features: Features) -> torch.Tensor:
    """Features as a [D, T] tensor on the model's device and dtype."""
    parameter = model.mask_token
    full = torch.as_tensor(features).to(device=parameter.device, dtype=parameter.dtype)
    if full.dim() != 2 or full.shape[0] != model.config.encoder.input_dim:
        raise InputError(
            f"features must be [{model.config.encoder.input_dim}, frames], got {tuple(full.shape)}"
        )
    return full


def _check_length(model: ActFusion, total_frames: int) -> None:
    if total_frames < model.config.sample_rate:
        raise InputError(
            f"{total_frames} frames is shorter than the sample rate {model.config.sample_rate}; "
            f"the model needs at least {model.config.sample_rate} frames"
        )


def _offsets(model: ActFusion) -> list[int]:
    """Stream offsets: all of 0..sr−1 with temporal augmentation, else only 0."""
    return list(range(model.config.sample_rate)) if model.config.temporal_aug else [0]


def _run_grouped(
    streams: Sequence[torch.Tensor], run: Callable[[torch.Tensor], torch.Tensor]
) -> list[torch.Tensor]:
    """Apply `run` to batches of equal-length streams [D, L]; one [nc, L] result per stream, in order."""
    results: list[torch.Tensor | None] = [None] * len(streams)
    for length in sorted({stream.shape[1] for stream in streams}, reverse=True):
        members = [i for i, stream in enumerate(streams) if stream.shape[1] == length]
        batch_result = run(torch.stack([streams[i] for i in members]))
        for i, result in zip(members, batch_result, strict=True):
            results[i] = result
    return results


def _finish(
    model: ActFusion, stream_probs: Sequence[torch.Tensor], total_frames: int, observed_frames: int | None
) -> FramePrediction:
    """Average the streams on the sampled grid, post-process, and upsample to full rate (spec §3, §10)."""
    sample_rate = model.config.sample_rate
    grid = total_frames // sample_rate  # the shortest stream; also the number of upsampling ticks
    probs = torch.stack([p[:, :grid] for p in stream_probs]).mean(0).cpu().numpy()
    post = model.config.postprocess
    if post.kind == "median":
        probs = median_filter_probs(probs, post.value)
    probs = probs / probs.sum(0, keepdims=True)
    index = upsample_indices(grid, total_frames, sample_rate)
    labels = probs.argmax(0)[index].astype(np.int64)
    if post.kind == "purge":  # applied to the full-rate labels (spec §10)
        labels = purge(labels, post.value)
    return FramePrediction(
        probs=probs[:, index].astype(np.float32), labels=labels, observed_frames=observed_frames
    )
