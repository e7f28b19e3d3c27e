"""Triton kernels (run by the interpreter on CPU, TRITON_INTERPRET=1 from conftest) against the reference.

Every buffer a kernel writes is poisoned with NaN first, so an element a kernel forgets to write fails.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed; the fused kernels cannot run")

from actfusion_sdk.kernels import dilated_attention as kernel_module  # noqa: E402
from actfusion_sdk.model.attention import dilated_attention, reference_dilated_attention  # noqa: E402

from .helpers import (  # noqa: E402
    assert_matches_reference,
    assert_official_cases_pass,
    random_inputs,
)


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch) -> list[tuple[int, ...]]:
    """Replace the kernels' allocator with one that fills with NaN; returns the shapes it handed out."""
    shapes = []

    def nan_buffer(shape, dtype, device):
        shapes.append(tuple(shape))
        return torch.full(shape, float("nan"), dtype=dtype, device=device)

    monkeypatch.setattr(kernel_module, "new_buffer", nan_buffer)
    return shapes


# (batch, C, Cv, L, dilation, K): odd L, L shorter than the dilation, every K, C not a power of two, Cv != C.
FLOAT64_SHAPES = [
    (3, 5, 5, 37, 4, 3),
    (2, 7, 7, 11, 16, 5),
    (1, 6, 3, 29, 2, 7),
    (2, 3, 10, 23, 3, 9),
    (1, 9, 9, 1, 1, 5),
    (2, 12, 12, 150, 64, 5),
]


@pytest.mark.parametrize("shape", FLOAT64_SHAPES)
def test_float64_forward_and_gradients_match_reference(shape, poisoned_buffers):
    batch, channels, value_channels, length, dilation, kernel_size = shape
    generator = torch.Generator().manual_seed(sum(shape))
    inputs = random_inputs(generator, batch, channels, value_channels, length, kernel_size)
    assert_matches_reference("triton", inputs, dilation, kernel_size)
    assert (batch, value_channels, length) in poisoned_buffers


@pytest.mark.parametrize("shape", [(2, 7, 7, 41, 8, 5), (3, 10, 6, 17, 32, 9), (1, 24, 24, 200, 1, 3)])
def test_float32_meets_issue_tolerances_against_float64_reference(shape):
    """fp32 kernels vs float64 reference: forward rel. error <= 1e-5, gradients <= 1e-4 (issue 3)."""
    batch, channels, value_channels, length, dilation, kernel_size = shape
    generator = torch.Generator().manual_seed(sum(shape) + 1)
    inputs64 = random_inputs(generator, batch, channels, value_channels, length, kernel_size)
    inputs32 = tuple(t.detach().float().requires_grad_(True) for t in inputs64)
    expected = reference_dilated_attention(*inputs64, dilation, kernel_size)
    actual = dilated_attention(*inputs32, dilation, kernel_size, impl="triton")
    upstream = torch.randn(expected.shape, generator=generator, dtype=torch.float64)
    grads_expected = torch.autograd.grad(expected, inputs64, upstream)
    grads_actual = torch.autograd.grad(actual, inputs32, upstream.float())
    assert actual.dtype == torch.float32
    assert relative_error(actual, expected) <= 1e-5
    for name, got, want in zip(("dq", "dk", "dv", "dbias"), grads_actual, grads_expected, strict=True):
        assert got.dtype == torch.float32
        assert relative_error(got, want) <= 1e-4, name


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.double() - expected).norm() / expected.norm()).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_fp32(dtype):
    generator = torch.Generator().manual_seed(11)
    inputs = tuple(
        t.detach().to(dtype).requires_grad_(True) for t in random_inputs(generator, 2, 12, 12, 90, 5)
    )
    out = dilated_attention(*inputs, 4, 5, impl="triton")
    upstream = torch.randn(out.shape, generator=generator).to(dtype)
    grads = torch.autograd.grad(out, inputs, upstream)
    # Reference in float64 on the same rounded inputs: only bf16/fp16 storage rounding may differ.
    inputs64 = tuple(t.detach().double().requires_grad_(True) for t in inputs)
    expected = reference_dilated_attention(*inputs64, 4, 5)
    grads_expected = torch.autograd.grad(expected, inputs64, upstream.double())
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert relative_error(out, expected) <= 1e-2
    for got, want in zip(grads, grads_expected, strict=True):
        assert relative_error(got, want) <= 1e-2


def test_without_bias_gives_no_bias_gradient_and_matches_reference():
    generator = torch.Generator().manual_seed(2)
    q, k, v, _ = random_inputs(generator, 2, 5, 5, 30, 7)
    out = dilated_attention(q, k, v, None, 3, 7, impl="triton")
    expected = reference_dilated_attention(q, k, v, None, 3, 7)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(out.shape, generator=generator, dtype=torch.float64)
    for got, want in zip(
        torch.autograd.grad(out, (q, k, v), upstream),
        torch.autograd.grad(expected, (q, k, v), upstream),
        strict=True,
    ):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_non_contiguous_inputs():
    generator = torch.Generator().manual_seed(4)
    q, k, v, bias = (t.detach() for t in random_inputs(generator, 2, 6, 6, 19, 5))
    q_t = q.transpose(1, 2).contiguous().transpose(1, 2)  # same values, L no longer the fastest axis
    torch.testing.assert_close(
        dilated_attention(q_t, k[:, :, :], v, bias, 2, 5, impl="triton"),
        reference_dilated_attention(q, k, v, bias, 2, 5),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.slow
def test_every_official_attention_case_through_triton(testvectors, monkeypatch):
    # 128 positions per program halves the interpreter's work; L = 333 still spans three programs.
    monkeypatch.setitem(kernel_module.LAUNCH_DEFAULTS, "BLOCK_L", 128)
    assert_official_cases_pass(torch.load(testvectors / "attention_layers.pt", weights_only=True), "triton")
