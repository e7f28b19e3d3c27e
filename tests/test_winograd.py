"""Winograd F(4, K) for the dilated conv on the fused CPU path (kernels/cpu.py, cpu_layer.c): the transform
matrices, the transforms against float64 conv1d on both tile layouts, the layer forward that uses them,
and their errors. Every expected value is an independent float64 computation."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from actfusion_sdk.kernels import cpu
from actfusion_sdk.kernels.engine import WINOGRAD_MIN_WIDTH, engine_for, winograd_applies
from actfusion_sdk.model.layers import DilatedAttentionLayer

from .helpers import float64_torch_forward, relative_error

pytestmark = pytest.mark.usefixtures("single_thread", "kernel")


def winograd_conv(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """The conv (no bias) through the public transforms: input transform, U[k]·V[k], output transform."""
    kernel_size = weight.shape[2]
    inputs = cpu.winograd_input(x, kernel_size, dilation)
    return cpu.winograd_output(cpu.winograd_weight(weight) @ inputs, kernel_size, dilation, x.shape[2])


def float64_conv(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
    padding = (weight.shape[2] // 2) * dilation
    return F.conv1d(x.double(), weight.double(), padding=padding, dilation=dilation)


@pytest.mark.parametrize("kernel_size", sorted(cpu.WINOGRAD_POINTS))
def test_matrices_compute_the_correlation_exactly(kernel_size):
    """y_r = sum_j w_j d_{r+j} for r < 4 from AT·((G·w) ⊙ (BT·d)), in float64 to rounding."""
    after, weights, before = cpu.winograd_matrices(kernel_size)
    outputs, points = cpu.WINOGRAD_OUTPUTS, kernel_size + cpu.WINOGRAD_OUTPUTS - 1
    assert after.shape == (outputs, points) and weights.shape == (points, kernel_size)
    assert before.shape == (points, points)
    assert torch.equal(before, before.round())  # integer input transform: exact on small integers
    generator = torch.Generator().manual_seed(kernel_size)
    for _ in range(20):
        w = torch.randn(kernel_size, dtype=torch.float64, generator=generator)
        d = torch.randn(points, dtype=torch.float64, generator=generator)
        got = after @ ((weights @ w) * (before @ d))
        want = torch.stack([(w * d[r : r + kernel_size]).sum() for r in range(outputs)])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# Dilations below 16 use the phase-major tile layout, from 16 on the block-major one; lengths cover one
# frame, fewer frames than a tile spans (L < 4d), tails of every size and several 128-tile runs.
CONV_CASES = [
    (batch, channels, length, dilation)
    for batch, channels, length, dilation in itertools.product(
        (1, 2), (1, 8), (1, 7, 37, 300, 1100), (1, 2, 3, 8, 15, 16, 17, 64, 512)
    )
]


@pytest.mark.parametrize("kernel_size", sorted(cpu.WINOGRAD_POINTS))
def test_transforms_match_float64_conv(kernel_size):
    generator = torch.Generator().manual_seed(100 + kernel_size)
    for batch, channels, length, dilation in CONV_CASES:
        x = torch.randn(batch, channels, length, generator=generator)
        weight = torch.randn(channels + 3, channels, kernel_size, generator=generator)
        got = winograd_conv(x, weight, dilation)
        where = f"K={kernel_size} B={batch} C={channels} L={length} d={dilation}"
        assert got.shape == (batch, channels + 3, length), where
        assert relative_error(got, float64_conv(x, weight, dilation)) <= 1e-5, where


def test_transforms_at_model_widths_stay_within_float32_reach():
    """Breakfast's widths: the error stays a few times that of the direct fp32 sum (measured ~8x)."""
    generator = torch.Generator().manual_seed(7)
    for channels, dilation in ((128, 1), (128, 32), (256, 4)):
        x = torch.randn(1, channels, 2000, generator=generator)
        weight = torch.randn(channels, channels, 5, generator=generator) / (5 * channels) ** 0.5
        want = float64_conv(x, weight, dilation)
        direct = F.conv1d(x, weight, padding=2 * dilation, dilation=dilation)
        winograd_error = relative_error(winograd_conv(x, weight, dilation), want)
        assert winograd_error <= 1e-5
        assert winograd_error <= 30 * max(relative_error(direct, want), 1e-8)


def test_transforms_give_the_same_numbers_on_one_or_two_threads():
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(2, 16, 1100, generator=generator)
    weight = torch.randn(16, 16, 5, generator=generator)
    threads = torch.get_num_threads()
    outputs = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            outputs.append([winograd_conv(x, weight, dilation) for dilation in (1, 4, 32)])
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*outputs, strict=True):
        assert torch.equal(one, two)


def test_weight_transform_is_rounded_once_from_float64():
    weight = torch.randn(6, 4, 5, generator=torch.Generator().manual_seed(9))
    _, g, _ = cpu.winograd_matrices(5)
    want = torch.einsum("kj,ocj->koc", g, weight.double()).float()
    assert torch.equal(cpu.winograd_weight(weight), want)


def test_mix_takes_a_precomputed_conv_in_place_of_tap_rows():
    """mix(conv=...) with the q, k, v rows gives what mix gives with the K tap rows in front of them."""
    generator = torch.Generator().manual_seed(10)
    batch, channels, length, kernel_size, dilation = 2, 6, 300, 5, 3
    taps = torch.randn(batch, kernel_size * channels, length, generator=generator)
    rest = torch.randn(batch, 3 * channels, length, generator=generator)
    conv = torch.zeros(batch, channels, length, dtype=torch.float64)
    for j in range(kernel_size):  # conv(t) = sum_j tap_j(t + o_j), zero outside
        offset = (j - kernel_size // 2) * dilation
        first, stop = max(0, -offset), min(length, length - offset)
        conv[:, :, first:stop] += taps[:, j * channels : (j + 1) * channels, first + offset : stop + offset]
    terms = {
        "log_valid": 0.0,
        "log_invalid": -13.8,
        "norm_eps": 1e-5,
        "conv_bias": torch.randn(channels, generator=generator),
        "value_bias": torch.randn(channels, generator=generator),
    }
    with_taps = cpu.mix(torch.cat([taps, rest], dim=1), kernel_size, dilation, **terms)
    with_conv = cpu.mix(rest, kernel_size, dilation, conv=conv.float(), **terms)
    assert relative_error(with_conv, with_taps) <= 1e-5
    # The conv may already sit in the output buffer (the layer's path): read before overwritten, same numbers.
    in_place = conv.float()
    assert cpu.mix(rest, kernel_size, dilation, conv=in_place, out=in_place, **terms) is in_place
    assert torch.equal(in_place, with_conv)


# ---- the layer forward --------------------------------------------------------------------------------


def wide_layer(kernel_size: int, dilation: int, cross_dim: int, seed: int) -> DilatedAttentionLayer:
    torch.manual_seed(seed)
    layer = DilatedAttentionLayer(WINOGRAD_MIN_WIDTH, dilation, kernel_size, 0.5, cross_dim=cross_dim)
    with torch.no_grad():  # sharper attention than the default init
        layer.att_linear_q.weight.mul_(4)
        layer.att_linear_k.weight.mul_(2)
    return layer.eval()


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_layer_uses_winograd_where_it_pays_and_matches_float64_torch_path(kind, monkeypatch):
    calls: list[tuple[int, int]] = []
    original = cpu.winograd_output

    def spy(products, kernel_size, dilation, length, out=None):
        calls.append((dilation, length))
        return original(products, kernel_size, dilation, length, out=out)

    monkeypatch.setattr(cpu, "winograd_output", spy)
    cross_dim = 10 if kind == "decoder" else 0
    generator = torch.Generator().manual_seed(12)
    for kernel_size, dilation in ((5, 1), (5, 16), (3, 4), (5, 256), (7, 2)):
        layer = wide_layer(kernel_size, dilation, cross_dim, seed=kernel_size + dilation)
        for batch, length in ((1, 1), (2, 300), (1, 1100)):
            x = torch.randn(batch, layer.width, length, generator=generator)
            cross = torch.randn(batch, cross_dim, length, generator=generator) if cross_dim else None
            calls.clear()
            with torch.inference_mode(), engine_for(layer).running():  # in a block: the expanded q·k too
                expected = winograd_applies(layer.width, kernel_size, dilation, length)
                got = layer(x, None if cross is None else layer.project_cross(cross))
            where = f"K={kernel_size} d={dilation} B={batch} L={length}"
            assert relative_error(got, float64_torch_forward(layer, x, cross)) <= 1e-5, where
            assert calls == ([(dilation, length)] if expected else []), where
            # K = 7 has no points; tiles padding L by more than half (d = 256, L = 300) take the taps.
            padded = cpu.WINOGRAD_OUTPUTS * cpu.winograd_tiles(length, dilation)
            assert expected == (kernel_size != 7 and padded <= 1.5 * length), where


def test_narrow_layers_keep_the_direct_conv():
    layer = DilatedAttentionLayer(WINOGRAD_MIN_WIDTH - 1, 1, 5, 0.0).eval()
    with torch.inference_mode():
        weights = engine_for(layer).weights(layer)
    assert weights.winograd is None and not winograd_applies(layer.width, 5, 1, 1000)


def test_layer_with_winograd_reuses_its_buffers_without_aliasing_outputs():
    layer = wide_layer(5, 2, 0, seed=13)
    generator = torch.Generator().manual_seed(13)
    inputs = [torch.randn(1, layer.width, 500, generator=generator) for _ in range(3)]
    engine = engine_for(layer)
    with torch.inference_mode():
        fresh = []
        for x in inputs:
            with engine.running():  # fresh buffers for each call
                fresh.append(layer(x))
        with engine.running():
            reused = [layer(x) for x in inputs]
            assert {"winograd_inputs", "winograd_products", "hidden"} <= set(engine.block().buffers)
    for one, two in zip(fresh, reused, strict=True):
        assert torch.equal(one, two)
    assert len({output.data_ptr() for output in reused}) == len(reused)


# ---- errors -------------------------------------------------------------------------------------------


def test_unknown_kernel_size_has_no_winograd_points():
    with pytest.raises(cpu.CpuKernelError, match="no Winograd points for kernel_size 7"):
        cpu.winograd_matrices(7)


def test_transforms_refuse_wrong_shapes():
    x = torch.randn(1, 4, 50)
    inputs = cpu.winograd_input(x, 5, 2)
    with pytest.raises(cpu.CpuKernelError, match="winograd_input needs contiguous x and out of shape"):
        cpu.winograd_input(x, 5, 2, out=torch.empty(1, 8, 4, 3))
    with pytest.raises(cpu.CpuKernelError, match="x must be contiguous within each batch element"):
        cpu.winograd_input(torch.randn(1, 50, 4).transpose(1, 2), 5, 2)
    with pytest.raises(cpu.CpuKernelError, match=r"winograd_output needs .* \[B, 8, C, 16\]"):
        cpu.winograd_output(inputs, 5, 2, 60)
    with pytest.raises(cpu.CpuKernelError, match="float32 CPU tensor"):
        cpu.winograd_input(x.double(), 5, 2)
