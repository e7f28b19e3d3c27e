"""Label-space diffusion: the cosine noise schedule, its forward noising for training, and the DDIM sampler
(spec §3). Training and sampling hand the decoder their label-space state through one step, `decoder_input`.

The sampler is a small scheduler object, separate from the denoiser: `sample(denoise, shape, generators)`
drives any callable that maps (noisy labels in [0, 1], timesteps) to class logits. Random numbers come from
explicit CPU generators, one per batch element, drawn in the official order, so a batch element seeded
like the official run reproduces it exactly whatever else is in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import torch

from ..errors import ConfigError

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def normalize(probs: torch.Tensor, snr_scale: float) -> torch.Tensor:
    """Map probabilities in [0, 1] to the label space [-s, s]."""
    return (probs * 2 - 1.0) * snr_scale


def denormalize(x: torch.Tensor, snr_scale: float) -> torch.Tensor:
    """Map the label space [-s, s] back to [0, 1]."""
    return ((x / snr_scale) + 1) / 2


def decoder_input(state: torch.Tensor, snr_scale: float) -> torch.Tensor:
    """The decoder's noisy labels from a label-space state: clamp to [-s, s], then map to [0, 1] (spec §3)."""
    return denormalize(torch.clamp(state, -snr_scale, snr_scale), snr_scale)


@dataclass(frozen=True)
class NoiseSchedule:
    """The float64 diffusion tables, named like the official model's persistent buffers (spec §1.2)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    log_one_minus_alphas_cumprod: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor

    @classmethod
    def buffer_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def cosine(cls, timesteps: int = 1000, offset: float = 0.008) -> NoiseSchedule:
        """The cosine schedule in float64: betas from ā(x) = cos²((x/T + s)/(1 + s)·π/2), clipped at 0.999."""
        x = torch.linspace(0, timesteps, timesteps + 1, dtype=torch.float64)
        alpha_bar = torch.cos(((x / timesteps) + offset) / (1 + offset) * math.pi * 0.5) ** 2
        alpha_bar = alpha_bar / alpha_bar[0]
        betas = torch.clip(1 - (alpha_bar[1:] / alpha_bar[:-1]), 0, 0.999)
        alphas = 1.0 - betas
        cumprod = torch.cumprod(alphas, dim=0)
        cumprod_prev = torch.cat([cumprod.new_ones(1), cumprod[:-1]])
        posterior_variance = betas * (1.0 - cumprod_prev) / (1.0 - cumprod)
        return cls(
            betas=betas,
            alphas_cumprod=cumprod,
            alphas_cumprod_prev=cumprod_prev,
            sqrt_alphas_cumprod=torch.sqrt(cumprod),
            sqrt_one_minus_alphas_cumprod=torch.sqrt(1.0 - cumprod),
            log_one_minus_alphas_cumprod=torch.log(1.0 - cumprod),
            sqrt_recip_alphas_cumprod=torch.sqrt(1.0 / cumprod),
            sqrt_recipm1_alphas_cumprod=torch.sqrt(1.0 / cumprod - 1),
            posterior_variance=posterior_variance,
            posterior_log_variance_clipped=torch.log(posterior_variance.clamp(min=1e-20)),
            posterior_mean_coef1=betas * torch.sqrt(cumprod_prev) / (1.0 - cumprod),
            posterior_mean_coef2=(1.0 - cumprod_prev) * torch.sqrt(alphas) / (1.0 - cumprod),
        )

    @classmethod
    def from_module(cls, module: torch.nn.Module) -> NoiseSchedule:
        """The schedule held in a model's buffers (loaded weights drive sampling, as in the official code)."""
        return cls(**{name: getattr(module, name) for name in cls.buffer_names()})

    def as_buffers(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.buffer_names()}

    @property
    def timesteps(self) -> int:
        return self.betas.shape[0]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(ā_t)·x0 + sqrt(1 − ā_t)·ε, one timestep per batch element (float64, as official)."""
        return _at(self.sqrt_alphas_cumprod, t) * x0 + _at(self.sqrt_one_minus_alphas_cumprod, t) * noise

    def noisy_labels(
        self, probs: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, snr_scale: float
    ) -> torch.Tensor:
        """The forward noising of training (spec §3): label probabilities [B, nc, L] to the decoder's noisy
        labels at timesteps t, i.e. decoder_input(q_sample(normalize(probs))), in float64 as official."""
        return decoder_input(self.q_sample(normalize(probs, snr_scale), t, noise), snr_scale)


def _at(table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """table[t] shaped [B, 1, 1] in the table's float64, so products promote to float64 (spec §9.5)."""
    return table.gather(-1, t.to(table.device)).reshape(-1, 1, 1)


@dataclass(frozen=True)
class DDIMStep:
    """One sampler step's result: the next state (None after the last step), the clamped x̂0 estimate and,
    where the step computed it on the way, the next decoder input `decoder_input(state)` in float32."""

    state: torch.Tensor | None
    x0: torch.Tensor
    noisy_labels: torch.Tensor | None = None


@dataclass(frozen=True)
class StepCoefficients:
    """Schedule factors of one DDIM step (t -> t_next), float64 as in the official code (spec §3, §9.5).

    recip, recipm1: sqrt(1/ā_t), sqrt(1/ā_t − 1) shaped [1, 1, 1], so they promote the state to float64;
    sqrt_alpha_next, c, sigma: 0-d, so their products with a float32 tensor stay float32.
    """

    recip: torch.Tensor
    recipm1: torch.Tensor
    sqrt_alpha_next: torch.Tensor
    c: torch.Tensor
    sigma: torch.Tensor


class SamplerSteps:
    """The sampler's elementwise operations: the official torch operations. An inference engine may
    inject its own that compute the same numbers (kernels/engine.py)."""

    def fill_normal(self, rows: Sequence[torch.Tensor], generators: Sequence[torch.Generator]) -> None:
        """Fill each row with standard-normal draws from its generator (torch.randn's numbers)."""
        for row, generator in zip(rows, generators, strict=True):
            torch.randn(row.shape, generator=generator, dtype=row.dtype, out=row)

    def update(
        self,
        probs: torch.Tensor,
        state: torch.Tensor,
        noise: torch.Tensor,
        coefficients: StepCoefficients,
        scale: float,
    ) -> DDIMStep | None:
        """The step's result computed in one go, or None: the sampler's torch operations compute it."""
        return None


class DDIMSampler:
    """DDIM in label space with the official timestep pairs, clamping and random-draw order (spec §3)."""

    def __init__(
        self,
        schedule: NoiseSchedule,
        snr_scale: float,
        eta: float = 1.0,
        sampling_timesteps: int = 25,
        *,
        steps: SamplerSteps | None = None,
    ) -> None:
        """steps: the elementwise operations (default: torch's)."""
        self.schedule = schedule
        self.snr_scale = snr_scale
        self.eta = eta
        self.steps = SamplerSteps() if steps is None else steps
        self.set_timesteps(sampling_timesteps)

    def set_timesteps(self, sampling_timesteps: int) -> None:
        """Pairs (t, t_next): int(linspace(−1, T−1, n+1)) reversed, so (999, 959), …, (39, −1) for n = 25."""
        times = torch.linspace(-1, self.schedule.timesteps - 1, steps=sampling_timesteps + 1).int().tolist()
        times.reverse()
        self.timestep_pairs: list[tuple[int, int]] = list(zip(times[:-1], times[1:], strict=True))

    def initial_state(
        self, shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """N(0, 1) float32 start of shape [B, nc, L] (not scaled by s), one draw per batch element."""
        return _draw(shape, torch.float32, generators, device, SamplerSteps())

    def step(
        self,
        logits: torch.Tensor,
        t: int,
        t_next: int,
        state: torch.Tensor,
        generators: Sequence[torch.Generator],
    ) -> DDIMStep:
        """Advance the state from t to t_next given the decoder's class logits at t (by `self.steps`
        where it computes the step, with the next decoder input on the way; else as below)."""
        s = self.snr_scale
        probs = torch.softmax(logits, dim=1)
        if t_next < 0:
            return DDIMStep(state=None, x0=torch.clamp(normalize(probs, s), -s, s))
        coefficients = self.coefficients(t, t_next)
        noise = _draw(state.shape, state.dtype, generators, state.device, self.steps)
        computed = self.steps.update(probs, state, noise, coefficients, s)
        if computed is not None:
            return computed
        x0 = torch.clamp(normalize(probs, s), -s, s)
        # The unclamped state gives ε̂; the dimensioned float64 factors promote it to float64 (spec §9.5).
        eps = (coefficients.recip * state - x0) / coefficients.recipm1
        next_state = x0 * coefficients.sqrt_alpha_next + coefficients.c * eps + coefficients.sigma * noise
        return DDIMStep(state=next_state, x0=x0)

    def coefficients(self, t: int, t_next: int) -> StepCoefficients:
        """The step's schedule factors, read from the tables without per-batch gathers."""
        table = self.schedule
        alpha = table.alphas_cumprod[t]
        alpha_next = table.alphas_cumprod[t_next]
        sigma = self.eta * ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
        return StepCoefficients(
            recip=table.sqrt_recip_alphas_cumprod[t].reshape(1, 1, 1),
            recipm1=table.sqrt_recipm1_alphas_cumprod[t].reshape(1, 1, 1),
            sqrt_alpha_next=alpha_next.sqrt(),
            c=(1 - alpha_next - sigma**2).sqrt(),
            sigma=sigma,
        )

    def sample(
        self,
        denoise: Denoiser,
        shape: Sequence[int],
        generators: Sequence[torch.Generator],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Run all steps; returns denormalize(x̂0) of the last one, the probabilities [B, nc, L].

        `denoise(noisy_labels, t)` gets the noisy labels cast to `dtype` (the model's) and t as [B] int64.
        """
        state = self.initial_state(shape, generators, device)
        noisy_labels = decoder_input(state, self.snr_scale)
        for t, t_next in self.timestep_pairs:  # the last pair has t_next = -1 and ends with state None
            t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)
            logits = denoise(noisy_labels.to(dtype), t_batch)
            result = self.step(logits, t, t_next, state, generators)
            state = result.state
            if state is not None:
                noisy_labels = result.noisy_labels
                if noisy_labels is None or noisy_labels.dtype != dtype:
                    noisy_labels = decoder_input(state, self.snr_scale)
        return denormalize(result.x0, self.snr_scale)


def _draw(
    shape: Sequence[int],
    dtype: torch.dtype,
    generators: Sequence[torch.Generator],
    device: torch.device | str,
    steps: SamplerSteps,
) -> torch.Tensor:
    """A standard-normal draw of shape [1, *shape[1:]] per batch element, each from its CPU generator."""
    if len(generators) != shape[0]:
        raise ConfigError(f"need one generator per batch element: {len(generators)} for batch {shape[0]}")
    draws = torch.empty(tuple(shape), dtype=dtype)
    steps.fill_normal(draws.split(1), generators)  # rows: no concatenation copy
    return draws.to(device)
