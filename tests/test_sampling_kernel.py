"""The sampler's C kernel (kernels/cpu_sampling.c via actfusion_sdk.kernels.sampling): float64 normal draws
and the fused DDIM update give exactly the numbers of the torch operations they replace, so sampling with
and without it agrees bit for bit."""

from __future__ import annotations

import pytest
import torch

from actfusion_sdk.kernels import cpu, sampling
from actfusion_sdk.kernels.engine import CpuSamplerSteps
from actfusion_sdk.model.diffusion import DDIMSampler, NoiseSchedule, decoder_input, normalize

pytestmark = pytest.mark.usefixtures("kernel")


@pytest.mark.parametrize("shape", [(16,), (48,), (1, 3, 7), (1, 48, 2000), (1, 19, 1501)])
def test_normal_draw_is_torch_randn_bit_for_bit(shape):
    ours, theirs = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    drawn = torch.full(shape, float("nan"), dtype=torch.float64)
    sampling.normal_draw(ours, out=drawn)
    assert torch.equal(drawn, torch.randn(shape, generator=theirs, dtype=torch.float64))
    # the generators go on in step: the next draws agree too
    assert torch.equal(torch.rand(5, generator=ours), torch.rand(5, generator=theirs))


def test_normal_draw_runs_where_torch_would_take_its_box_muller_path():
    assert sampling.draws_like_torch(16) and sampling.draws_like_torch(10**6)
    assert not sampling.draws_like_torch(15)
    with pytest.raises(cpu.CpuKernelError, match="float64"):
        sampling.normal_draw(torch.Generator(), out=torch.empty(32))
    with pytest.raises(cpu.CpuKernelError, match="16"):
        sampling.normal_draw(torch.Generator(), out=torch.empty(8, dtype=torch.float64))


@pytest.mark.parametrize("wide", [False, True], ids=["first step (float32)", "later steps (float64)"])
def test_ddim_update_is_the_torch_chain_bit_for_bit(wide):
    generator = torch.Generator().manual_seed(3)
    dtype = torch.float64 if wide else torch.float32
    logits = torch.randn(2, 6, 37, generator=generator) * 3
    state = torch.randn(2, 6, 37, generator=generator, dtype=dtype) * 1.5  # some beyond ±s
    noise = torch.randn(2, 6, 37, generator=generator, dtype=dtype)
    sampler, s = DDIMSampler(NoiseSchedule.cosine(), snr_scale=0.5), 0.5
    k = sampler.coefficients(959, 919)
    probs = torch.softmax(logits, dim=1)
    names = ("recip", "recipm1", "sqrt_alpha_next", "c", "sigma")
    factors = {name: getattr(k, name).item() for name in names}
    x0, next_state, next_input = sampling.ddim_update(probs, state, noise, **factors, scale=s)
    # the official operations, as spec §3 writes them
    expected_x0 = torch.clamp(normalize(probs, s), -s, s)
    eps = (k.recip * state - expected_x0) / k.recipm1
    expected = expected_x0 * k.sqrt_alpha_next + k.c * eps + k.sigma * noise
    assert expected.dtype == torch.float64
    assert torch.equal(x0, expected_x0)
    assert torch.equal(next_state, expected)
    assert torch.equal(next_input, decoder_input(expected, s).float())


def test_ddim_update_declines_what_it_does_not_handle():
    probs = torch.rand(1, 4, 20)
    state = torch.rand(1, 4, 20, dtype=torch.float64)
    common = dict(recip=1.0, recipm1=1.0, sqrt_alpha_next=1.0, c=0.0, sigma=0.0, scale=1.0)
    assert sampling.ddim_update(probs.double(), state, state, **common) is None
    assert sampling.ddim_update(probs, state[..., :10], state, **common) is None
    assert sampling.ddim_update(probs.transpose(1, 2), state, state, **common) is None


def denoiser(noisy_labels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Logits that depend on the input and the timestep, like a model's."""
    return torch.sin(noisy_labels * 7 + t[:, None, None].to(noisy_labels.dtype) / 100) * 4


@pytest.mark.parametrize("snr_scale", [0.5, 1.0])
def test_sampling_with_and_without_the_kernel_agrees_bit_for_bit(snr_scale):
    schedule = NoiseSchedule.cosine()
    results = []
    for fused in (True, False):
        sampler = DDIMSampler(schedule, snr_scale=snr_scale, steps=CpuSamplerSteps() if fused else None)
        generators = [torch.Generator().manual_seed(seed) for seed in (4, 9)]
        results.append(sampler.sample(denoiser, (2, 5, 203), generators))
        results.append(torch.stack([torch.rand(3, generator=g) for g in generators]))  # generators' states
    assert torch.equal(results[0], results[2])
    assert torch.equal(results[1], results[3])
