"""The attention seam (spec §2): official layer vectors, torch path vs the reference oracle, dispatch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from actfusion_sdk.errors import KernelError
from actfusion_sdk.model import attention
from actfusion_sdk.model.attention import dilated_attention, reference_dilated_attention, rel_tap_bias

from .helpers import (
    assert_matches_reference,
    assert_official_cases_pass,
    kernel_attention,
    official_attention_inputs,
    random_inputs,
)


@pytest.fixture(scope="module")
def attention_cases(testvectors) -> list[dict]:
    return torch.load(testvectors / "attention_layers.pt", weights_only=True)


@pytest.mark.parametrize("impl", ["reference", "torch"])
def test_every_official_attention_case(attention_cases, impl):
    assert_official_cases_pass(attention_cases, impl)


def test_every_official_attention_case_through_the_cpu_kernel(attention_cases, kernel):
    # The vectors' q, k, v need no gradient, so the kernel (forward only) runs with autograd enabled too.
    assert not any(t.requires_grad for t in official_attention_inputs(attention_cases[0]))
    assert_official_cases_pass(attention_cases, kernel_attention)


def test_rel_tap_bias_rows_follow_spec_examples():
    table = torch.arange(20000, dtype=torch.float64)[:, None]
    assert rel_tap_bias(table, 1, 5).tolist() == [10000, 10001, 10002, 10003, 10004]
    assert rel_tap_bias(table, 32, 5).tolist() == [10000, 10032, 10064, 10096, 10100]
    assert rel_tap_bias(table, 64, 5).tolist() == [10000, 10064, 10100, 10100, 10100]
    assert rel_tap_bias(table, 128, 5).tolist() == [10000, 10100, 10100, 10100, 10100]
    assert rel_tap_bias(table, 16, 7).tolist() == [10000 + 16 * j for j in range(7)]


# Edge shapes: L = 1, every tap out of range (d·(K//2) >= L), L just above the reach, long L with d = 4096.
EDGE_SHAPES = [
    # (batch, C, Cv, L, dilation, K)
    (1, 3, 3, 1, 1, 3),
    (2, 5, 5, 1, 4096, 7),
    (3, 7, 7, 10, 64, 5),
    (1, 6, 6, 13, 3, 9),
    (4, 9, 11, 257, 128, 3),
    (2, 5, 5, 5000, 4096, 5),
    (1, 3, 3, 5000, 1, 7),
]


@pytest.mark.parametrize("shape", EDGE_SHAPES)
def test_torch_path_matches_reference_on_edge_shapes(shape):
    batch, channels, value_channels, length, dilation, kernel_size = shape
    generator = torch.Generator().manual_seed(length * 31 + dilation)
    inputs = random_inputs(generator, batch, channels, value_channels, length, kernel_size)
    assert_matches_reference("torch", inputs, dilation, kernel_size)


@pytest.mark.parametrize("seed", range(12))
def test_torch_path_matches_reference_on_random_shapes(seed):
    generator = torch.Generator().manual_seed(seed)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    kernel_size = (3, 5, 7)[draw(0, 2)]
    length = draw(1, 5000) if seed % 3 == 0 else draw(1, 400)
    dilation = 2 ** draw(0, 12)
    channels = 2 * draw(1, 9) + 1  # odd, never a power of two
    inputs = random_inputs(generator, draw(1, 4), channels, channels, length, kernel_size)
    assert_matches_reference("torch", inputs, dilation, kernel_size)


def test_torch_path_without_bias_matches_reference():
    generator = torch.Generator().manual_seed(7)
    q, k, v, _ = random_inputs(generator, 2, 5, 5, 40, 5)
    expected = reference_dilated_attention(q, k, v, None, 8, 5)
    torch.testing.assert_close(
        dilated_attention(q, k, v, None, 8, 5, impl="torch"), expected, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_path_computes_half_inputs_in_fp32(dtype):
    generator = torch.Generator().manual_seed(3)
    q, k, v, bias = (t.detach().to(dtype) for t in random_inputs(generator, 2, 12, 12, 90, 5))
    out = dilated_attention(q, k, v, bias, 4, 5, impl="torch")
    assert out.dtype == dtype
    # The same rounded inputs through the fp32 reference: only the final rounding to `dtype` may differ.
    expected = reference_dilated_attention(q.float(), k.float(), v.float(), bias.float(), 4, 5)
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)


def test_auto_on_cpu_is_the_torch_path():
    generator = torch.Generator().manual_seed(5)
    q, k, v, bias = (t.detach().float() for t in random_inputs(generator, 2, 6, 6, 50, 5))
    torch_out = dilated_attention(q, k, v, bias, 2, 5, impl="torch")
    assert torch.equal(dilated_attention(q, k, v, bias, 2, 5, impl="auto"), torch_out)


def test_invalid_arguments_raise_kernel_error():
    q = torch.zeros(1, 4, 10)
    with pytest.raises(KernelError, match="unknown attention implementation 'fast'"):
        dilated_attention(q, q, q, None, 1, 3, impl="fast")
    with pytest.raises(KernelError, match="kernel_size must be odd"):
        dilated_attention(q, q, q, None, 1, 4)
    with pytest.raises(KernelError, match="dilation must be >= 1"):
        dilated_attention(q, q, q, None, 0, 3)
    with pytest.raises(KernelError, match=r"bias must have shape \[3\]"):
        dilated_attention(q, q, q, torch.zeros(5), 1, 3)
    with pytest.raises(KernelError, match=r"\[B, C, L\]"):
        dilated_attention(q, q[:, :, :5], q, None, 1, 3)
    with pytest.raises(KernelError, match="share dtype"):
        dilated_attention(q, q, q.double(), None, 1, 3)


def test_triton_on_cpu_without_interpreter_says_what_to_do(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(attention, "_triton_importable", lambda: True)
    q = torch.zeros(1, 4, 10)
    with pytest.raises(KernelError, match="needs CUDA tensors.*TRITON_INTERPRET=1"):
        dilated_attention(q, q, q, None, 1, 3, impl="triton")


def test_missing_triton_falls_back_for_auto_and_raises_for_triton(monkeypatch):
    monkeypatch.setattr(attention, "_triton_importable", lambda: False)
    q = torch.randn(1, 4, 10)
    torch.testing.assert_close(
        dilated_attention(q, q, q, None, 1, 3, impl="auto"),
        dilated_attention(q, q, q, None, 1, 3, impl="torch"),
    )
    with pytest.raises(KernelError, match="triton package, which is not installed"):
        dilated_attention(q, q, q, None, 1, 3, impl="triton")


def test_importing_the_seam_loads_no_optional_dependency():
    code = (
        "import sys, actfusion_sdk.model.attention\n"
        "loaded = [m for m in ('triton', 'av', 'pytorchvideo', 'matplotlib', 'scipy') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
