"""The ActFusion model: encoder, denoising decoder, mask token and diffusion buffers (spec §1).

State_dict keys are exactly the official ones, so official checkpoints load strictly. Unlike the official
code, every forward accepts a batch of equal-length sequences; a batch of one computes the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from .config import ENCODER_PROBS, RAW_FEATURES, ActFusionConfig, DecoderConfig, EncoderConfig
from .diffusion import DDIMSampler, NoiseSchedule, SamplerSteps
from .layers import DilatedAttentionLayer, instance_norm, pointwise, timestep_embedding


@dataclass(frozen=True)
class EncoderOutput:
    """Encoder logits [B, nc, L] (None when not requested) and the decoder's cross features [B, X, L]."""

    logits: torch.Tensor | None
    cross: torch.Tensor


@dataclass(frozen=True)
class CrossCache:
    """Per decoder layer, its `project_cross` term [B, 2C, L], reused by all DDIM steps (spec §1.4)."""

    projections: tuple[torch.Tensor, ...]


def dilated_layers(
    num_layers: int, width: int, kernel_size: int, dropout: float, cross_dim: int, pos: str
) -> nn.ModuleList:
    """Layers with dilation 2**i (spec §1.2)."""
    return nn.ModuleList(
        DilatedAttentionLayer(width, 2**i, kernel_size, dropout, cross_dim=cross_dim, pos=pos)
        for i in range(num_layers)
    )


class LayerStack(nn.Module):
    """The encoder's layers, held under `.layers` as the official key names require."""

    def __init__(self, config: EncoderConfig, pos: str) -> None:
        super().__init__()
        self.layers = dilated_layers(
            config.num_layers, config.width, config.kernel_size, config.dropout, 0, pos
        )


class DecoderStack(nn.Module):
    """The projection of the time embedding (added before layer 0) and the decoder's layers."""

    def __init__(self, config: DecoderConfig, cross_dim: int, pos: str) -> None:
        super().__init__()
        self.time_proj = nn.Linear(config.time_emb_dim, config.width)
        self.layers = dilated_layers(
            config.num_layers, config.width, config.kernel_size, config.dropout, cross_dim, pos
        )


class Encoder(nn.Module):
    """Features [B, D, L] -> logits and cross features (spec §1.3)."""

    def __init__(self, config: EncoderConfig, num_classes: int, pos: str) -> None:
        super().__init__()
        self.config = config
        self.conv_in = nn.Conv1d(config.input_dim, config.width, 1)
        self.encoder = LayerStack(config, pos)
        self.conv_out = nn.Conv1d(config.width, num_classes, 1)

    def forward(self, x: torch.Tensor, with_logits: bool = True) -> EncoderOutput:
        config = self.config
        kept = config.kept_layers
        with_logits = with_logits or ENCODER_PROBS in config.feature_layer_indices
        if config.use_instance_norm:
            x = instance_norm(x)
        features = [x] if RAW_FEATURES in config.feature_layer_indices else []
        if self.training:
            # Dropout2d over whole feature channels, then over whole frames (spec §1.3 step 3).
            x = F.dropout2d(x.unsqueeze(-1), config.channel_dropout, training=True).squeeze(-1)
            x = F.dropout2d(x.transpose(1, 2).unsqueeze(-1), config.temporal_dropout, training=True)
            x = x.squeeze(-1).transpose(1, 2)
        hidden = pointwise(self.conv_in.weight, self.conv_in.bias, x)
        # Layers past the last kept one only feed conv_out: skip them when the logits are not needed.
        depth = config.num_layers if with_logits else max(kept, default=-1) + 1
        for index, layer in enumerate(self.encoder.layers[:depth]):
            hidden = layer(hidden)
            if index in kept:
                features.append(hidden)
        logits = pointwise(self.conv_out.weight, self.conv_out.bias, hidden) if with_logits else None
        if ENCODER_PROBS in config.feature_layer_indices:
            features.append(torch.softmax(logits, dim=1))
        return EncoderOutput(logits=logits, cross=torch.cat(features, dim=1))


class Decoder(nn.Module):
    """Cross features, timestep and noisy labels -> class logits (spec §1.4)."""

    def __init__(self, config: DecoderConfig, num_classes: int, cross_dim: int, pos: str) -> None:
        super().__init__()
        self.config = config
        self.time_in = nn.ModuleList(
            [
                nn.Linear(config.time_emb_dim, config.time_emb_dim),
                nn.Linear(config.time_emb_dim, config.time_emb_dim),
            ]
        )
        self.conv_in = nn.Conv1d(num_classes, config.width, 1)
        self.module = DecoderStack(config, cross_dim, pos)
        self.conv_out = nn.Conv1d(config.width, num_classes, 1)

    def project_cross(self, cross: torch.Tensor) -> CrossCache:
        return CrossCache(tuple(layer.project_cross(cross) for layer in self.module.layers))

    def forward(self, cache: CrossCache, t: torch.Tensor, noisy_labels: torch.Tensor) -> torch.Tensor:
        first, second = self.time_in
        temb = timestep_embedding(t, self.config.time_emb_dim).to(noisy_labels.dtype)
        temb = second(F.silu(first(temb)))
        time_bias = self.module.time_proj(F.silu(temb))  # added once, before layer 0
        # conv_in's bias and the time term as one [B, C, 1] bias of the matmul: no extra pass over the output
        offset = (self.conv_in.bias + time_bias)[:, :, None]
        hidden = pointwise(self.conv_in.weight, offset, noisy_labels)
        for layer, projection in zip(self.module.layers, cache.projections, strict=True):
            hidden = layer(hidden, projection)
        return self.logits(hidden)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """conv_out: the last layer's output [B, C, L] to class logits [B, nc, L]."""
        return pointwise(self.conv_out.weight, self.conv_out.bias, hidden)


class ActFusion(nn.Module):
    """The unified action segmentation + anticipation model (spec §1)."""

    def __init__(self, config: ActFusionConfig, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"ActFusion needs at least 2 classes, got {num_classes}")
        self.config = config
        self.num_classes = num_classes
        self.mask_token = nn.Parameter(torch.empty(1, config.encoder.input_dim, 1))
        nn.init.xavier_uniform_(self.mask_token)
        for name, table in NoiseSchedule.cosine(config.diffusion.timesteps).as_buffers().items():
            self.register_buffer(name, table)
        cross_dim = config.encoder.cross_dim(num_classes)
        self.encoder = Encoder(config.encoder, num_classes, config.pos)
        self.decoder = Decoder(config.decoder, num_classes, cross_dim, config.pos)
        self._attention_impl = "auto"

    @property
    def attention_impl(self) -> str:
        """The `dilated_attention` implementation of every layer: auto, reference, torch or triton."""
        return self._attention_impl

    @attention_impl.setter
    def attention_impl(self, impl: str) -> None:
        self._attention_impl = impl
        for module in self.modules():
            if isinstance(module, DilatedAttentionLayer):
                module.attention_impl = impl

    @property
    def cross_dim(self) -> int:
        return self.config.encoder.cross_dim(self.num_classes)

    @property
    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule.from_module(self)

    def sampler(self, steps: SamplerSteps | None = None) -> DDIMSampler:
        """A DDIM sampler over this model's (loaded) schedule buffers with the configured settings, doing
        its elementwise work by `steps` (default: torch's operations)."""
        diffusion = self.config.diffusion
        return DDIMSampler(
            self.schedule, diffusion.snr_scale, diffusion.eta, diffusion.sampling_timesteps, steps=steps
        )

    def encode(
        self, features: torch.Tensor, visible: torch.Tensor | None = None, *, with_logits: bool = True
    ) -> EncoderOutput:
        """Encode features [B, D, L]; frames with visible=False are replaced by the mask token (spec §4).

        with_logits=False skips conv_out and the layers that only feed it (sampling needs only the
        cross features).
        """
        if features.dim() != 3 or features.shape[1] != self.config.encoder.input_dim:
            raise InputError(
                f"encoder input must be [batch, {self.config.encoder.input_dim}, frames], "
                f"got {tuple(features.shape)}"
            )
        if visible is not None:
            if visible.shape != (features.shape[0], features.shape[2]):
                raise InputError(
                    f"visible mask must be [batch, frames] = {[features.shape[0], features.shape[2]]}, "
                    f"got {list(visible.shape)}"
                )
            features = torch.where(visible[:, None, :].to(features.device), features, self.mask_token)
        return self.encoder(features, with_logits=with_logits)

    def precompute_cross(self, cross: torch.Tensor) -> CrossCache:
        """Project the cross features once for all DDIM steps (eval mode only: dropout must be off)."""
        return self.decoder.project_cross(cross)

    def decode(
        self,
        cross: torch.Tensor,
        t: torch.Tensor,
        noisy_labels: torch.Tensor,
        cache: CrossCache | None = None,
    ) -> torch.Tensor:
        """Class logits [B, nc, L] from cross features [B, X, L], timesteps [B] and noisy labels in [0, 1]."""
        if cache is None:
            cache = self.decoder.project_cross(cross)
        elif self.training:
            raise ConfigError("a CrossCache is only valid in eval mode (dropout draws a new mask every call)")
        return self.decoder(cache, t, noisy_labels)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> ActFusion:
        # The schedule buffers stay float64 through .float()/.half()/.to(dtype) (spec §1.2, §9.5).
        schedule = {name: self._buffers[name] for name in NoiseSchedule.buffer_names()}
        super()._apply(fn, recurse)
        for name, original in schedule.items():
            moved = self._buffers[name]
            if moved.dtype != torch.float64:
                self._buffers[name] = original.to(moved.device)
        return self
