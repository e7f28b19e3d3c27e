"""The fused CPU path's matmuls by packed weights (kernels/cpu_gemm.c via kernels/cpu.py): products against
float64 matmuls (the oracle, computed here), the epilogue, the preparation's checks, thread counts, and the
layer forward with the kernel chosen on and off."""

from __future__ import annotations

import json

import pytest
import torch

from actfusion_sdk.kernels import cpu
from actfusion_sdk.kernels.engine import engine_for
from actfusion_sdk.model.layers import DilatedAttentionLayer

from .helpers import float64_torch_forward, relative_error

pytestmark = pytest.mark.usefixtures("single_thread", "kernel")


def float64_product(matrices, b, bias=None, residual=None, relu=False):
    """act(A_i · b_i + bias (+ residual)) in float64, item i taking matrix i mod count."""
    stack = matrices.reshape(-1, *matrices.shape[-2:]).double()
    items = b.reshape(-1, *b.shape[-2:]).double()
    out = stack[torch.arange(len(items)) % len(stack)] @ items
    if bias is not None:
        out = out + bias.double()[:, None]
    if residual is not None:
        out = out + residual.reshape(out.shape).double()
    return (out.relu() if relu else out).reshape(*b.shape[:-2], stack.shape[1], b.shape[-1])


# Rows not a multiple of the register block, columns below, at and past one panel, depths from 1 on,
# several matrices cycled over the items (the Winograd products' layout).
CASES = [
    # (count, rows, depth, columns, leading dimensions of b)
    (1, 1, 1, 1, (1,)),
    (1, 7, 3, 15, (1,)),
    (1, 6, 64, 16, (2,)),
    (1, 13, 70, 17, (3,)),
    (1, 128, 128, 500, (1,)),
    (1, 256, 128, 1003, (2,)),
    (4, 9, 33, 40, (2, 4)),
]


@pytest.mark.parametrize("count, rows, depth, columns, leading", CASES)
@pytest.mark.parametrize("epilogue", ["none", "bias", "bias+relu", "bias+residual", "all"])
def test_products_match_float64(count, rows, depth, columns, leading, epilogue):
    generator = torch.Generator().manual_seed(rows * 31 + columns)
    matrices = torch.randn(count, rows, depth, generator=generator)
    b = torch.randn(*leading, depth, columns, generator=generator)
    bias = torch.randn(rows, generator=generator) if epilogue != "none" else None
    residual = (
        torch.randn(*leading, rows, columns, generator=generator)
        if epilogue in ("bias+residual", "all")
        else None
    )
    relu = epilogue in ("bias+relu", "all")
    packed = cpu.pack_matrices(matrices if count > 1 else matrices[0])
    got = cpu.gemm(packed, b, bias=bias, residual=residual, relu=relu)
    want = float64_product(matrices, b, bias, residual, relu)
    assert got.shape == want.shape
    # The fp32 forward error bound of a sum of depth products and two epilogue additions: γ_(depth+3) times
    # the sum of the terms' magnitudes (u = 2^-24).
    magnitudes = float64_product(
        matrices.abs(),
        b.abs(),
        None if bias is None else bias.abs(),
        None if residual is None else residual.abs(),
    )
    assert ((got.double() - want).abs() <= (depth + 3) * 2.0**-24 * 1.01 * magnitudes).all()
    if relu:
        assert (got >= 0).all()


def test_prepared_product_takes_new_tensors_and_checks_them():
    generator = torch.Generator().manual_seed(3)
    matrix = torch.randn(20, 64, generator=generator)
    packed = cpu.pack_matrices(matrix)
    b, other = (torch.randn(2, 64, 50, generator=generator) for _ in range(2))
    out, residual = torch.empty(2, 20, 50), torch.randn(2, 20, 50, generator=generator)
    prepared = cpu.prepare_gemm(packed, b, out, residual=residual)
    prepared.run()
    torch.testing.assert_close(out.double(), float64_product(matrix, b, residual=residual), atol=1e-4, rtol=0)
    fresh = torch.empty(2, 20, 50)
    prepared.run(other, fresh, residual=torch.zeros(2, 20, 50))
    torch.testing.assert_close(fresh.double(), float64_product(matrix, other), atol=1e-4, rtol=0)
    with pytest.raises(cpu.CpuKernelError, match="shape"):
        prepared.run(torch.randn(2, 64, 51))
    with pytest.raises(cpu.CpuKernelError, match="contiguous"):
        prepared.run(torch.randn(2, 50, 64).transpose(1, 2))
    without = cpu.prepare_gemm(packed, b, out)
    with pytest.raises(cpu.CpuKernelError, match="residual"):
        without.run(residual=residual)


def test_preparation_rejects_what_it_cannot_multiply():
    packed = cpu.pack_matrices(torch.randn(3, 8, 16))
    with pytest.raises(cpu.CpuKernelError, match="cannot take"):
        cpu.gemm(packed, torch.randn(1, 16, 10))  # one item for three matrices
    with pytest.raises(cpu.CpuKernelError, match="cannot take"):
        cpu.gemm(packed, torch.randn(3, 15, 10))  # wrong depth
    with pytest.raises(cpu.CpuKernelError, match="float32"):
        cpu.pack_matrices(torch.randn(8, 16, dtype=torch.float64))


def test_one_or_two_threads_give_the_same_numbers():
    """Threads split whole column panels: every output is the same sum in the same order."""
    generator = torch.Generator().manual_seed(5)
    packed = cpu.pack_matrices(torch.randn(2, 30, 96, generator=generator))
    b = torch.randn(4, 96, 333, generator=generator)
    bias = torch.randn(30, generator=generator)
    threads = torch.get_num_threads()
    outputs = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            outputs.append(cpu.gemm(packed, b, bias=bias, relu=True))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(*outputs)


def test_choice_follows_the_depth_and_the_override(monkeypatch):
    monkeypatch.setenv("ACTFUSION_CPU_GEMM", "1")
    assert cpu.gemm_applies(cpu.GEMM_MIN_DEPTH)
    assert not cpu.gemm_applies(cpu.GEMM_MIN_DEPTH - 1)
    monkeypatch.setenv("ACTFUSION_CPU_GEMM", "0")
    assert not cpu.gemm_applies(4 * cpu.GEMM_MIN_DEPTH)


@pytest.mark.parametrize("choice", ["0", "1"])
@pytest.mark.parametrize("cross_dim", [0, 12])
def test_layer_forward_with_and_without_the_kernel_matches_float64(choice, cross_dim, monkeypatch):
    """Encoder (self-attention) and decoder (cross, expanded q·k) layers wide enough for the kernel, with
    the Winograd conv (d = 2) and without it (K = 7), through torch's matmuls ("0") or `gemm` ("1")."""
    monkeypatch.setenv("ACTFUSION_CPU_GEMM", choice)
    generator = torch.Generator().manual_seed(21)
    for kernel_size, dilation in ((5, 2), (7, 3)):
        torch.manual_seed(kernel_size)
        layer = DilatedAttentionLayer(cpu.GEMM_MIN_DEPTH, dilation, kernel_size, 0.5, cross_dim=cross_dim)
        layer.eval()
        for batch, length in ((1, 37), (2, 400)):
            x = torch.randn(batch, layer.width, length, generator=generator)
            cross = torch.randn(batch, cross_dim, length, generator=generator) if cross_dim else None
            with torch.inference_mode(), engine_for(layer).running():
                first = layer(x, None if cross is None else layer.project_cross(cross))
                again = layer(x, None if cross is None else layer.project_cross(cross))
            where = f"K={kernel_size} B={batch} L={length}"
            assert relative_error(first, float64_torch_forward(layer, x, cross)) <= 1e-5, where
            assert torch.equal(first, again), where


def test_gemm_choice_is_measured_once_and_kept_beside_the_library(kernel, monkeypatch, tmp_path):
    monkeypatch.delenv("ACTFUSION_CPU_GEMM", raising=False)
    monkeypatch.setattr(cpu, "_cache_dir", lambda: tmp_path)
    cpu._class_decision.cache_clear()
    try:
        first = cpu.gemm_decision(96)
        assert (first.depth_class, first.source) == (64, "measured")
        assert first.packed == (first.packed_seconds < first.torch_seconds)
        assert first.packed_seconds > 0 and first.torch_seconds > 0
        assert cpu.gemm_applies(96) == first.packed
        kept = json.loads(cpu._decisions_path().read_text())
        assert kept == {"64": [first.packed_seconds, first.torch_seconds]}
        cpu._class_decision.cache_clear()  # as a new process would
        again = cpu.gemm_decision(64)
        assert again.source == "cached" and again.packed == first.packed
        assert again.packed_seconds == first.packed_seconds
        cpu._decisions_path().write_text("[not a dict")  # a damaged file is measured afresh
        cpu._class_decision.cache_clear()
        assert cpu.gemm_decision(64).source == "measured"
    finally:
        cpu._class_decision.cache_clear()


def test_gemm_choice_environment_override_skips_the_measurement(kernel, monkeypatch):
    def fail(depth_class):
        raise AssertionError("measured despite ACTFUSION_CPU_GEMM")

    monkeypatch.setattr(cpu, "_class_decision", fail)
    for choice, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("ACTFUSION_CPU_GEMM", choice)
        assert cpu.gemm_applies(128) is expected
