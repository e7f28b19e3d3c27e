"""Noise schedule and DDIM sampler (spec §3): tables, timestep pairs, random-draw order, batching."""

from __future__ import annotations

import math

import pytest
import torch

from actfusion_sdk.errors import ConfigError
from actfusion_sdk.model.diffusion import DDIMSampler, NoiseSchedule, decoder_input, denormalize, normalize

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule.cosine(1000)


def test_schedule_matches_the_official_buffers(testvectors, schedule):
    state = torch.load(testvectors / "model_50salads.pt", weights_only=True)["state_dict"]
    for name, table in schedule.as_buffers().items():
        assert table.dtype == torch.float64 and table.shape == (1000,)
        assert torch.allclose(table, state[name], rtol=1e-12, atol=1e-12), name


def test_schedule_reference_values_from_spec(schedule):
    alpha_bar = schedule.alphas_cumprod
    assert alpha_bar[999].item() == pytest.approx(2.43e-9, rel=1e-2)
    assert alpha_bar[959].item() == pytest.approx(3.88e-3, rel=1e-2)
    assert alpha_bar[499].item() == pytest.approx(0.4938, rel=1e-3)
    assert alpha_bar[39].item() == pytest.approx(0.99457, rel=1e-4)
    assert schedule.betas[999].item() == 0.999  # the only clipped beta
    assert schedule.betas[:999].max().item() < 0.999


def test_timestep_pairs_follow_spec(schedule):
    pairs = DDIMSampler(schedule, snr_scale=1.0).timestep_pairs
    assert len(pairs) == 25
    assert (
        pairs[0] == (999, 959) and pairs[1] == (959, 919) and pairs[-2] == (79, 39) and pairs[-1] == (39, -1)
    )
    assert all(t - t_next == 40 for t, t_next in pairs)


def test_normalize_maps_probabilities_to_the_label_space():
    probs = torch.tensor([0.0, 0.25, 1.0])
    assert normalize(probs, 0.5).tolist() == [-0.5, -0.25, 0.5]
    assert torch.allclose(denormalize(normalize(probs, 0.5), 0.5), probs)


def test_q_sample_mixes_signal_and_noise(schedule):
    x0, noise = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    t = torch.tensor([0, 700])
    out = schedule.q_sample(x0, t, noise)
    for i in range(2):
        a = schedule.alphas_cumprod[t[i]]
        assert torch.allclose(out[i], a.sqrt() * x0[i].double() + (1 - a).sqrt() * noise[i].double())
    assert out.dtype == torch.float64


def test_noisy_labels_clamp_the_forward_noising_into_the_decoder_range(schedule):
    assert decoder_input(torch.tensor([-2.0, 0.25, 2.0]), 0.5).tolist() == [0.0, 0.75, 1.0]
    labels = torch.tensor([[0, 2, 1, 1], [1, 1, 0, 2]])
    probs = torch.nn.functional.one_hot(labels, 3).permute(0, 2, 1).float()
    noise = 3 * torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))  # large: reaches the clamp
    t = torch.tensor([0, 999])
    out = schedule.noisy_labels(probs, t, noise, 0.5)
    expected = ((torch.clamp(schedule.q_sample((probs * 2 - 1) * 0.5, t, noise), -0.5, 0.5) / 0.5) + 1) / 2
    assert out.dtype == torch.float64 and torch.equal(out, expected)
    assert out.min() == 0 and out.max() == 1


def toy_denoiser(noisy_labels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for the decoder: logits that depend on the input and on t."""
    return 3 * noisy_labels.roll(1, dims=1) + (t.to(noisy_labels.dtype) / 1000)[:, None, None]


def spec_ddim(denoise, num_classes: int, length: int, seed: int, s: float, schedule: NoiseSchedule):
    """DDIM written from spec §3 and the testvectors README: the official global-RNG draw order."""
    torch.manual_seed(seed)
    ac = schedule.alphas_cumprod
    times = list(range(999, -2, -40))  # 999, 959, ..., 39, -1
    x = torch.randn(1, num_classes, length)
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        y = ((torch.clamp(x, -s, s) / s) + 1) / 2
        logits = denoise(y.float(), torch.full((1,), t, dtype=torch.long))
        x0 = torch.clamp((torch.softmax(logits, 1) * 2 - 1) * s, -s, s)
        eps = (math.sqrt(1 / ac[t].item()) * x.double() - x0) / math.sqrt(1 / ac[t].item() - 1)
        if t_next < 0:
            return (x0 / s + 1) / 2
        a, an = ac[t].item(), ac[t_next].item()
        sigma = math.sqrt((1 - a / an) * (1 - an) / (1 - a))
        z = torch.randn(x.shape, dtype=x.dtype)  # randn_like(x): float32 first, float64 afterwards
        x = x0.double() * math.sqrt(an) + math.sqrt(1 - an - sigma**2) * eps + sigma * z


@pytest.mark.parametrize("snr_scale", [0.5, 1.0])
def test_sampler_reproduces_the_official_draw_order(schedule, snr_scale):
    sampler = DDIMSampler(schedule, snr_scale=snr_scale)
    ours = sampler.sample(toy_denoiser, (1, 4, 19), [torch.Generator().manual_seed(5)])
    expected = spec_ddim(toy_denoiser, 4, 19, seed=5, s=snr_scale, schedule=schedule)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours.double(), expected.double(), atol=1e-5)


def test_each_batch_element_uses_its_own_generator(schedule):
    sampler = DDIMSampler(schedule, snr_scale=0.5)
    seeds = (1, 2, 1)
    batch = sampler.sample(toy_denoiser, (3, 4, 10), [torch.Generator().manual_seed(s) for s in seeds])
    for i, seed in enumerate(seeds):
        alone = sampler.sample(toy_denoiser, (1, 4, 10), [torch.Generator().manual_seed(seed)])
        assert torch.allclose(batch[i], alone[0], atol=1e-6)
    assert (batch[0] - batch[1]).abs().max() > 1e-3 and torch.allclose(batch[0], batch[2], atol=1e-6)


def test_sampler_needs_one_generator_per_element(schedule):
    with pytest.raises(ConfigError, match="one generator per batch element"):
        DDIMSampler(schedule, snr_scale=1.0).sample(toy_denoiser, (2, 4, 10), [torch.Generator()])


def test_fewer_sampling_steps(schedule):
    sampler = DDIMSampler(schedule, snr_scale=1.0, sampling_timesteps=4)
    assert sampler.timestep_pairs == [(999, 749), (749, 499), (499, 249), (249, -1)]
