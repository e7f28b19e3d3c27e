"""The fused CPU kernel (kernels/cpu_layer.c via actfusion_sdk.kernels.cpu) and the CPU engine that drives
it (actfusion_sdk.kernels.engine): the kernel's attention, a layer's fused inference forward, the whole model
on that path, its errors, buffer reuse, fallback and build cache.

Every result is compared with an independent float64 computation (the reference attention, or the layer's
torch path run in float64)."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from actfusion_sdk.errors import KernelError
from actfusion_sdk.kernels import cpu
from actfusion_sdk.kernels.engine import CpuEngine, FusedForward, engine_for, expands_query_key
from actfusion_sdk.model.attention import IMPLEMENTATIONS, dilated_attention
from actfusion_sdk.model.config import DecoderConfig, DiffusionConfig, EncoderConfig
from actfusion_sdk.model.inference import anticipate, segment
from actfusion_sdk.model.layers import DilatedAttentionLayer

from .helpers import REPO, float64_torch_forward, kernel_attention, relative_error, small_model

pytestmark = pytest.mark.usefixtures("single_thread", "kernel")


# ---- the kernel's attention against the float64 reference -----------------------------------------


def fused(module: nn.Module) -> CpuEngine:
    """The module's CPU engine (its fused path runs inside `engine.running()`)."""
    engine = engine_for(module)
    assert isinstance(engine, CpuEngine)
    return engine


def attention_inputs(generator, batch, channels, length, kernel_size):
    """float32 q, k, v and tap bias, scaled so that softmaxes are neither flat nor one-hot."""
    q = torch.randn(batch, channels, length, generator=generator) * 2
    k = torch.randn(batch, channels, length, generator=generator)
    v = torch.randn(batch, channels, length, generator=generator)
    bias = torch.randn(kernel_size, generator=generator) * 3
    return q, k, v, bias


# 11 and 15 take the generic loops everywhere; 3, 5, 7 and 9 have specialised interior tiles (L = 700 has
# interior tiles where (K//2)·d <= 188); 1 has no neighbour taps at all.
SWEEP_KERNELS = (1, 3, 5, 7, 9, 11, 15)


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("kernel_size", SWEEP_KERNELS)
def test_cpu_attention_matches_float64_reference(kernel_size, with_bias):
    generator = torch.Generator().manual_seed(kernel_size * 2 + with_bias)
    for batch in (1, 3):
        for channels in (1, 8, 24):
            for length in (1, 2, 5, 37, 300, 700):
                for dilation in (1, 2, 64, 512):
                    q, k, v, bias = attention_inputs(generator, batch, channels, length, kernel_size)
                    bias = bias if with_bias else None
                    got = kernel_attention(q, k, v, bias, dilation, kernel_size)
                    want = dilated_attention(
                        q.double(),
                        k.double(),
                        v.double(),
                        None if bias is None else bias.double(),
                        dilation,
                        kernel_size,
                        impl="reference",
                    )
                    where = f"B={batch} C={channels} L={length} d={dilation} K={kernel_size}"
                    assert got.dtype == torch.float32 and got.shape == want.shape, where
                    assert relative_error(got, want) <= 1e-5, where


def test_cpu_attention_accepts_non_contiguous_inputs():
    generator = torch.Generator().manual_seed(11)
    q, k, v, bias = attention_inputs(generator, 2, 6, 80, 5)
    # [B, L, C] storage seen as [B, C, L]: every tensor is a transposed view.
    q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    assert not q.is_contiguous()
    got = kernel_attention(q, k, v, bias, 3, 5)
    want = dilated_attention(q.double(), k.double(), v.double(), bias.double(), 3, 5, impl="reference")
    assert relative_error(got, want) <= 1e-5


def test_the_seam_has_no_standalone_cpu_attention():
    assert "cpu" not in IMPLEMENTATIONS
    q = torch.randn(1, 4, 10)
    with pytest.raises(KernelError, match="unknown attention implementation 'cpu'"):
        dilated_attention(q, q, q, None, 1, 3, impl="cpu")


# ---- a whole layer on the fused path against its torch path in float64 ----------------------------

WIDTH, CROSS_DIM = 12, 10


def make_layer(kernel_size: int, dilation: int, cross_dim: int, pos: str, seed: int) -> DilatedAttentionLayer:
    torch.manual_seed(seed)
    layer = DilatedAttentionLayer(WIDTH, dilation, kernel_size, 0.5, cross_dim=cross_dim, pos=pos)
    with torch.no_grad():  # sharper attention than the default init: softmaxes that are not flat
        layer.att_linear_q.weight.mul_(4)
        layer.att_linear_k.weight.mul_(2)
    return layer.eval()


@pytest.mark.parametrize("pos", ["rel", "none"])
@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_fused_layer_matches_float64_torch_path(kind, pos):
    cross_dim = CROSS_DIM if kind == "decoder" else 0
    generator = torch.Generator().manual_seed(3)
    for kernel_size in (3, 5, 7, 11):
        for dilation in (1, 4, 64):
            layer = make_layer(kernel_size, dilation, cross_dim, pos, seed=kernel_size * 100 + dilation)
            for batch in (1, 2):
                # 700: interior tiles (all taps in range) for the specialised K = 3, 5, 7 at small d.
                for length in (1, 5, 300, 700):
                    x = torch.randn(batch, WIDTH, length, generator=generator)
                    cross = torch.randn(batch, cross_dim, length, generator=generator) if cross_dim else None
                    want = float64_torch_forward(layer, x, cross)
                    engine = fused(layer)
                    with torch.inference_mode(), engine.running():
                        projection = None if cross is None else layer.project_cross(cross)
                        assert projection is None or projection.shape == (batch, 2 * WIDTH, length)
                        assert engine.runs(layer, x)
                        got = layer(x, projection)
                    where = f"K={kernel_size} d={dilation} B={batch} L={length}"
                    assert got.dtype == torch.float32 and got.shape == want.shape, where
                    assert relative_error(got, want) <= 1e-5, where


def test_expanded_query_key_matches_float64_torch_path():
    """Decoder layers wide enough for the expanded q·k (C >= 8K) take it within an engine block and give
    the float64 torch path's numbers, on boundary and interior tiles; a new cross projection in the same
    block gets its own terms, and a narrow layer keeps the plain form."""
    width, cross_dim = 40, 10
    generator = torch.Generator().manual_seed(11)
    for kernel_size, dilation in ((3, 1), (5, 4), (5, 64), (11, 2)):
        torch.manual_seed(kernel_size + dilation)
        layer = DilatedAttentionLayer(width, dilation, kernel_size, 0.5, cross_dim=cross_dim).eval()
        with torch.no_grad():
            layer.att_linear_q.weight.mul_(4)
            layer.att_linear_k.weight.mul_(2)
        assert expands_query_key(layer) == (width >= 8 * kernel_size)
        engine = fused(layer)
        for batch, length in ((1, 1), (2, 5), (1, 300), (2, 700)):
            with torch.inference_mode(), engine.running():
                for _ in range(
                    2
                ):  # a second cross projection in the same block must not reuse the first's terms
                    x = torch.randn(batch, width, length, generator=generator)
                    cross = torch.randn(batch, cross_dim, length, generator=generator)
                    projection = layer.project_cross(cross)
                    got = layer(x, projection)
                    expanded = engine.expanded_cross(layer, projection)
                    assert (expanded is not None) == expands_query_key(layer)
                    assert expanded is None or expanded.source is projection
                    assert relative_error(got, float64_torch_forward(layer, x, cross)) <= 1e-5, (
                        kernel_size,
                        dilation,
                        batch,
                        length,
                    )
    narrow = DilatedAttentionLayer(24, 1, 7, 0.0, cross_dim=cross_dim).eval()
    assert not expands_query_key(narrow)


def test_fused_layer_is_taken_under_no_grad_and_matches_official_layers(testvectors, monkeypatch):
    cases = torch.load(testvectors / "attention_layers.pt", weights_only=True)
    calls = count_fused_calls(monkeypatch)
    for case in cases:
        decoder = case["kind"] == "decoder"
        layer = DilatedAttentionLayer(
            case["C"], case["dilation"], case["K"], 0.1, cross_dim=case["x_cross"].shape[1] if decoder else 0
        )
        layer.load_state_dict(case["state_dict"], strict=True)
        layer.eval()
        with torch.no_grad(), fused(layer).running():
            projection = layer.project_cross(case["x_cross"]) if decoder else None
            got = layer(case["x"], projection)
        where = f"{case['kind']} K={case['K']} d={case['dilation']} L={case['L']}"
        assert (got.double() - case["layer"].double()).abs().max().item() <= 1e-5, where
    assert len(calls) == len(cases) == 60


def test_fused_layer_gives_the_same_numbers_on_one_or_two_threads():
    layer = make_layer(5, 2, CROSS_DIM, "rel", seed=1)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, WIDTH, 1100, generator=generator)
    cross = torch.randn(2, CROSS_DIM, 1100, generator=generator)
    outputs = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            with torch.inference_mode(), fused(layer).running():
                outputs.append(layer(x, layer.project_cross(cross)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outputs[0], outputs[1])
    assert relative_error(outputs[0], float64_torch_forward(layer, x, cross)) <= 1e-5


def test_fused_path_is_not_taken_for_torch_reference_float64_or_outside_a_block():
    layer = make_layer(5, 1, 0, "rel", seed=2)
    engine = fused(layer)
    x = torch.randn(1, WIDTH, 20)
    with torch.inference_mode():
        assert not engine.runs(layer, x)  # outside a block
        with engine.running():
            for impl in ("torch", "reference"):
                layer.attention_impl = impl
                assert not engine.runs(layer, x)
            layer.attention_impl = "auto"
            assert engine.runs(layer, x)
            assert not engine.runs(layer, x.double())
    with engine.running():
        assert not engine.runs(layer, x)  # autograd on
    assert isinstance(engine_for(make_layer(5, 1, 0, "rel", seed=2).double()), CpuEngine) is False


# ---- the whole model: fused ("auto") against the torch path ------------------------------------------


@pytest.fixture(scope="module")
def model_and_features():
    model = small_model(seed=4)
    features = torch.randn(model.config.encoder.input_dim, 2100, generator=torch.Generator().manual_seed(4))
    return model, features.numpy()


def count_fused_calls(monkeypatch) -> list[int]:
    """The length of every layer forward that runs a prepared fused plan."""
    calls: list[int] = []
    original = FusedForward.__call__

    def spy(self, x):
        calls.append(x.shape[2])
        return original(self, x)

    monkeypatch.setattr(FusedForward, "__call__", spy)
    return calls


@pytest.mark.parametrize("task", ["segment", "anticipate"])
def test_model_on_fused_path_matches_torch_path(model_and_features, monkeypatch, task):
    model, features = model_and_features
    calls = count_fused_calls(monkeypatch)

    def run(impl: str):
        model.attention_impl = impl
        if task == "segment":
            return segment(model, features, seed=3)
        return anticipate(model, features, total_frames=features.shape[1] + 40, observation_ratio=0.6, seed=3)

    torch_result = run("torch")
    assert calls == []
    fused_result = run("auto")
    layer_count = model.config.encoder.num_layers + model.config.decoder.num_layers
    assert len(calls) >= layer_count and max(calls) > cpu.TILE  # several tiles per sequence
    np.testing.assert_array_less(np.abs(fused_result.probs - torch_result.probs), 1e-5)
    assert np.array_equal(fused_result.labels, torch_result.labels)


@pytest.mark.slow
@pytest.mark.parametrize("gemm", ["1", "0"], ids=["packed-gemm", "mkl"])
def test_wide_model_with_every_fused_feature_matches_torch_path(monkeypatch, gemm):
    """A breakfast-like model (width 64, K = 5) through full sampling loops: the Winograd conv, the expanded
    q·k of the decoder and (or not) the packed-weight gemm all run, and give the torch path's numbers."""
    monkeypatch.setenv("ACTFUSION_CPU_GEMM", gemm)
    seen = {"winograd": 0, "expanded": 0, "gemm": 0}
    for name, key in (("winograd_output", "winograd"), ("tap_products", "expanded")):
        original = getattr(cpu, name)
        monkeypatch.setattr(
            cpu, name, lambda *a, _o=original, _k=key, **k: seen.__setitem__(_k, seen[_k] + 1) or _o(*a, **k)
        )
    run_gemm = cpu.PreparedGemm.run
    monkeypatch.setattr(
        cpu.PreparedGemm,
        "run",
        lambda self, *a: seen.__setitem__("gemm", seen["gemm"] + 1) or run_gemm(self, *a),
    )
    model = small_model(
        seed=21,
        encoder=EncoderConfig(5, 64, 5, 0.5, 0.1, 0.1, (2, 3, 4)),
        decoder=DecoderConfig(4, 64, 5, 0.1, time_emb_dim=64),
        diffusion=DiffusionConfig(sampling_timesteps=4, snr_scale=0.5),
        sample_rate=2,
    )
    features = torch.randn(model.config.encoder.input_dim, 1200, generator=torch.Generator().manual_seed(21))
    results = {}
    for impl in ("torch", "auto"):
        model.attention_impl = impl
        results[impl] = segment(model, features, seed=5)
        if impl == "torch":
            assert seen == {"winograd": 0, "expanded": 0, "gemm": 0}
    assert seen["winograd"] > 0 and seen["expanded"] > 0
    assert (seen["gemm"] > 0) == (gemm == "1")
    np.testing.assert_array_less(np.abs(results["auto"].probs - results["torch"].probs), 1e-5)
    assert np.array_equal(results["auto"].labels, results["torch"].labels)


# ---- errors -------------------------------------------------------------------------------------------


def test_kernel_attention_refuses_float64():
    q = torch.randn(1, 4, 10, dtype=torch.float64)
    with pytest.raises(cpu.CpuKernelError, match="float32 CPU tensor"):
        kernel_attention(q, q, q, None, 1, 3)


@pytest.mark.parametrize("mode", ["training", "autograd", "float64"])
def test_engine_takes_the_torch_path_where_the_kernel_cannot_run(mode):
    layer = make_layer(5, 2, 0, "rel", seed=5)
    engine = fused(layer)
    x = torch.randn(1, WIDTH, 30)
    if mode == "training":
        layer.train()
    elif mode == "float64":
        layer.double()
        x = x.double()
    context = torch.enable_grad() if mode != "float64" else torch.inference_mode()
    with context, engine.running():
        assert not engine.runs(layer, x)
        torch.manual_seed(0)
        got = layer(x)
    torch.manual_seed(0)
    with context:
        assert torch.equal(got, layer(x))  # the class's own forward


def test_auto_trains_on_the_torch_path_and_gradients_reach_every_parameter():
    layer = make_layer(5, 2, CROSS_DIM, "rel", seed=6).train()
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(2, WIDTH, 40, generator=generator)
    cross = torch.randn(2, CROSS_DIM, 40, generator=generator)
    outputs = {}
    for impl in ("torch", "auto"):
        layer.attention_impl = impl
        layer.zero_grad()
        torch.manual_seed(0)  # the same dropout masks for both
        with fused(layer).running():
            assert not fused(layer).runs(layer, x)
            out = layer(x, layer.project_cross(cross))
        out.square().sum().backward()
        outputs[impl] = (out.detach(), {name: p.grad.clone() for name, p in layer.named_parameters()})
    assert torch.equal(outputs["auto"][0], outputs["torch"][0])
    grads = outputs["auto"][1]
    assert set(grads) == {name for name, _ in layer.named_parameters()}
    for name, grad in grads.items():
        assert torch.equal(grad, outputs["torch"][1][name]), name
        assert grad.abs().sum() > 0, name


def test_auto_layer_with_more_taps_than_the_kernel_handles_falls_back():
    kernel_size = cpu.MAX_TAPS + 1
    layer = make_layer(kernel_size, 1, 0, "rel", seed=7)
    engine = fused(layer)
    x = torch.randn(1, WIDTH, 40)
    with torch.inference_mode(), engine.running():
        assert not engine.runs(layer, x)
        got = layer(x)
    q = torch.randn(1, 4, 40)
    with pytest.raises(cpu.CpuKernelError, match=f"up to {cpu.MAX_TAPS}|kernel_size"):
        kernel_attention(q, q, q, None, 1, kernel_size)
    assert relative_error(got, float64_torch_forward(layer, x, None)) <= 1e-5


# ---- the FFN epilogue ---------------------------------------------------------------------------------


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("with_residual", [True, False])
def test_bias_act_matches_torch(relu, with_residual):
    generator = torch.Generator().manual_seed(relu * 2 + with_residual)
    values = torch.randn(3, 7, 301, generator=generator)
    bias = torch.randn(7, generator=generator)
    residual = torch.randn(3, 7, 301, generator=generator) if with_residual else None
    want = values.double() + bias.double()[:, None]
    if residual is not None:
        want = want + residual.double()
    if relu:
        want = want.clamp(min=0)
    before = values.data_ptr()
    cpu.bias_act(values, bias, residual, relu)
    assert values.data_ptr() == before  # in place
    assert relative_error(values, want) <= 1e-6
    if relu:
        assert (values >= 0).all() and (values == 0).any()


@pytest.mark.parametrize("kernel_size, dilation, length", [(5, 1, 700), (3, 64, 300), (7, 128, 200)])
def test_tap_products_match_float64(kernel_size, dilation, length):
    generator = torch.Generator().manual_seed(kernel_size + dilation)
    projection = torch.randn(2, 2 * WIDTH, length, generator=generator)  # [p_q; p_k], as a cross projection
    query, key = projection.split(WIDTH, dim=1)
    got = cpu.tap_products(query, key, kernel_size, dilation)
    want = torch.zeros(2, kernel_size, length, dtype=torch.float64)
    for j in range(kernel_size):
        offset = (j - kernel_size // 2) * dilation
        for t in range(max(0, -offset), min(length, length - offset)):
            want[:, j, t] = (query[:, :, t].double() * key[:, :, t + offset].double()).sum(1)
    assert got.shape == want.shape and relative_error(got, want) <= 1e-6
    assert torch.equal(got[want == 0], torch.zeros_like(got[want == 0]))  # out-of-range taps are exactly 0
    with pytest.raises(cpu.CpuKernelError, match="batch stride"):
        cpu.tap_products(query, key.contiguous(), kernel_size, dilation)


def test_bias_act_refuses_non_contiguous_values():
    values = torch.zeros(2, 5, 4).transpose(1, 2)
    with pytest.raises(cpu.CpuKernelError, match="contiguous"):
        cpu.bias_act(values, torch.zeros(4), None, True)
    with pytest.raises(cpu.CpuKernelError, match="float32 CPU tensor"):
        cpu.bias_act(torch.zeros(2, 4, 5), torch.zeros(5), None, True)  # bias of the wrong length


# ---- an engine block: reused buffers, plans, weight checks ---------------------------------------------


def test_a_block_reuses_buffers_gives_the_same_results_and_never_aliases_outputs():
    encoder = make_layer(5, 2, 0, "rel", seed=9)
    decoder = make_layer(7, 1, CROSS_DIM, "rel", seed=10)
    pair = nn.ModuleList([encoder, decoder])  # the engine holds its model weakly: keep it alive
    engine = fused(pair)
    generator = torch.Generator().manual_seed(9)
    shapes = ((2, 300), (1, 5), (2, 700), (1, 300))  # growing and shrinking buffers
    inputs = [torch.randn(b, WIDTH, n, generator=generator) for b, n in shapes]
    crosses = [torch.randn(x.shape[0], CROSS_DIM, x.shape[2], generator=generator) for x in inputs]

    def run(x, cross) -> torch.Tensor:
        return decoder(encoder(x), decoder.project_cross(cross))

    with torch.inference_mode():
        separate = []
        for x, cross in zip(inputs, crosses, strict=True):
            with engine.running():  # fresh buffers for each call
                separate.append(run(x, cross))
        with engine.running():
            together = [run(x, cross) for x, cross in zip(inputs, crosses, strict=True)]
            assert {"projections", "hidden", "inner"} <= set(engine.block().buffers)
            assert engine.block().checked == {encoder, decoder}
    # Every earlier result survives the later calls: none is a view of a reused buffer.
    for index, (got, want) in enumerate(zip(together, separate, strict=True)):
        assert torch.equal(got, want), index
    for x, got, cross in zip(inputs, together, crosses, strict=True):
        hidden = float64_torch_forward(encoder, x, None)
        want = float64_torch_forward(decoder, hidden.float(), cross)
        assert relative_error(got, want) <= 1e-5


def test_a_block_prepares_each_forward_once_per_shape_and_cross_projection(monkeypatch):
    layer = make_layer(5, 2, CROSS_DIM, "rel", seed=14)
    engine = fused(layer)
    generator = torch.Generator().manual_seed(14)
    prepared = []
    original = CpuEngine.prepare_forward
    monkeypatch.setattr(
        CpuEngine,
        "prepare_forward",
        lambda self, module, x, cross: (
            prepared.append((x.shape[2], cross)) or original(self, module, x, cross)
        ),
    )
    long, other = (torch.randn(1, CROSS_DIM, 90, generator=generator) for _ in range(2))
    short = long[:, :, :40]
    sources = [long, long, short, other, long]  # the cross features of each call
    inputs = [torch.randn(1, WIDTH, source.shape[2], generator=generator) for source in sources]
    with torch.inference_mode(), engine.running():
        projections = {id(source): layer.project_cross(source) for source in (long, short, other)}
        got = [layer(x, projections[id(source)]) for x, source in zip(inputs, sources, strict=True)]
    # one plan per (length, cross projection): the second and last calls reuse the first one's
    assert [
        (length, cross is projections[id(source)])
        for (length, cross), source in zip(prepared, (long, short, other), strict=True)
    ] == [(90, True), (40, True), (90, True)]
    for x, source, out in zip(inputs, sources, got, strict=True):
        assert relative_error(out, float64_torch_forward(layer, x, source)) <= 1e-5


def test_fused_weights_are_rebuilt_after_the_parameters_change():
    layer = make_layer(5, 2, CROSS_DIM, "rel", seed=13)
    engine = fused(layer)
    generator = torch.Generator().manual_seed(13)
    x = torch.randn(1, WIDTH, 90, generator=generator)
    cross = torch.randn(1, CROSS_DIM, 90, generator=generator)
    changes = [
        lambda: layer.conv_block[0].weight.mul_(1.5),  # in place: the version counter moves
        lambda: layer.load_state_dict({k: v * 0.9 for k, v in layer.state_dict().items()}),
        lambda: setattr(layer.ffn_block[0].weight, "data", layer.ffn_block[0].weight.data.flip(0)),  # storage
    ]
    for change in [lambda: None, *changes]:
        with torch.no_grad():
            change()
        want = float64_torch_forward(layer, x, cross)
        with torch.inference_mode(), engine.running():
            assert relative_error(layer(x, layer.project_cross(cross)), want) <= 1e-5


def test_nested_blocks_share_state_per_thread_and_clear_at_the_outermost_exit():
    layer = make_layer(3, 1, 0, "none", seed=12)
    engine = fused(layer)
    x = torch.randn(1, WIDTH, 50)
    assert engine.block() is None and "forward" not in layer.__dict__
    with torch.inference_mode():
        with engine.running():
            expected = layer(x)
        with engine.running():
            block = engine.block()
            with engine.running():
                assert engine.block() is block  # the inner block shares the outer's state
                assert torch.equal(layer(x), expected)
            assert engine.block() is block and block.buffers
            assert layer in block.checked
            seen_elsewhere = []
            worker = threading.Thread(target=lambda: seen_elsewhere.append(engine.block()))
            worker.start()
            worker.join()
            assert seen_elsewhere == [None]  # per thread
            assert torch.equal(layer(x), expected)
    assert engine.block() is None and "forward" not in layer.__dict__  # the class's forward again
    with pytest.raises(ValueError), engine.running():  # cleared on an exception too
        raise ValueError
    assert engine.block() is None and "forward" not in layer.__dict__


def test_one_engine_per_model_kept_while_the_model_lives():
    layer = make_layer(3, 1, 0, "none", seed=15)
    assert engine_for(layer) is engine_for(layer)
    assert engine_for(make_layer(3, 1, 0, "none", seed=15)) is not engine_for(layer)


# ---- build, cache and fallback, each in a fresh interpreter ------------------------------------------


def test_session_builds_the_kernel_into_its_own_cache():
    directory = Path(os.environ["ACTFUSION_CACHE_DIR"]) / "kernels"
    assert cpu._cache_dir() == directory
    assert len(list(directory.glob("cpu_layer-*.so"))) == 1


def run_python(code: str, env: dict[str, str]) -> dict:
    """Run `code` in a fresh interpreter (empty functools caches); it prints one JSON object last."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def child_env(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# The child's check: a small model segments the same with "auto" as with "torch", by the torch engine.
FALLBACK_CHECK = """
    import json, sys
    import numpy as np, torch
    sys.path.insert(0, {repo!r})
    from actfusion_sdk.kernels import cpu
    from actfusion_sdk.kernels.engine import engine_for
    from actfusion_sdk.model.inference import segment
    from tests.helpers import small_model

    torch.set_num_threads(1)
    reason = cpu.unavailable_reason()
    model = small_model(seed=1)
    features = torch.randn(model.config.encoder.input_dim, 60, generator=torch.Generator().manual_seed(0))
    results = {{}}
    for impl in ("torch", "auto"):
        model.attention_impl = impl
        results[impl] = segment(model, features, seed=0).probs
    print(json.dumps({{
        "reason": reason,
        "engine": type(engine_for(model)).__name__,
        "difference": float(np.abs(results["auto"] - results["torch"]).max()),
    }}))
"""


def assert_falls_back(report: dict) -> None:
    assert report["reason"], report
    assert report["engine"] == "TorchEngine"
    assert report["difference"] == 0.0  # "auto" is the torch path itself


@pytest.mark.slow
def test_disabled_by_environment_falls_back(tmp_path):
    cache = tmp_path / "cache"
    env = child_env(ACTFUSION_CPU_KERNEL="0", ACTFUSION_CACHE_DIR=str(cache))
    report = run_python(FALLBACK_CHECK.format(repo=str(REPO)), env)
    assert "ACTFUSION_CPU_KERNEL=0" in report["reason"]
    assert_falls_back(report)
    assert not cache.exists() or not any(cache.iterdir())  # nothing was built


@pytest.mark.slow
def test_without_a_compiler_falls_back(tmp_path):
    empty_bin, cache = tmp_path / "bin", tmp_path / "cache"
    empty_bin.mkdir()
    cache.mkdir()
    env = child_env(CC=None, PATH=str(empty_bin), ACTFUSION_CACHE_DIR=str(cache))
    report = run_python(FALLBACK_CHECK.format(repo=str(REPO)), env)
    assert "no C compiler" in report["reason"]
    assert_falls_back(report)
    assert not any(cache.iterdir())


@pytest.mark.slow
def test_a_failing_compiler_is_reported_and_leaves_no_file(tmp_path):
    compiler, cache = tmp_path / "broken-cc", tmp_path / "cache"
    compiler.write_text("#!/bin/sh\necho 'broken-cc: deliberate failure' >&2\nexit 1\n")
    compiler.chmod(compiler.stat().st_mode | stat.S_IXUSR)
    # PATH keeps the real cc/gcc: CC must take precedence over them.
    env = child_env(CC=str(compiler), ACTFUSION_CACHE_DIR=str(cache))
    code = """
        import json
        from actfusion_sdk.kernels import cpu
        print(json.dumps({"reason": cpu.unavailable_reason()}))
    """
    reason = run_python(code, env)["reason"]
    assert reason is not None and "failed" in reason
    assert str(compiler) in reason and "deliberate failure" in reason
    left = list(cache.rglob("*")) if cache.exists() else []
    assert not [path for path in left if path.is_dir() and path != cache / "kernels"]  # no scratch folder
    assert not [path for path in left if path.suffix == ".so"]


@pytest.mark.slow
def test_build_cache_is_built_once_and_reused(tmp_path):
    cache = tmp_path / "cache"
    env = child_env(ACTFUSION_CACHE_DIR=str(cache))
    code = """
        import json, subprocess
        commands = []
        real_run = subprocess.run

        def spy(command, *args, **kwargs):
            commands.append(list(map(str, command)))
            return real_run(command, *args, **kwargs)

        subprocess.run = spy
        from actfusion_sdk.kernels import cpu
        print(json.dumps({
            "reason": cpu.unavailable_reason(),
            "builds": sum("-shared" in command for command in commands),
        }))
    """
    first = run_python(code, env)
    assert first == {"reason": None, "builds": 1}
    built = sorted((cache / "kernels").glob("*.so"))
    assert len(built) == 1 and built[0].name.startswith("cpu_layer-")
    stamp = built[0].stat().st_mtime_ns
    second = run_python(code, env)
    assert second == {"reason": None, "builds": 0}
    assert sorted((cache / "kernels").glob("*.so")) == built and built[0].stat().st_mtime_ns == stamp


BUILD_COUNT = """
    import json, subprocess
    commands = []
    real_run = subprocess.run

    def spy(command, *args, **kwargs):
        commands.append(list(map(str, command)))
        return real_run(command, *args, **kwargs)

    subprocess.run = spy
    from actfusion_sdk.kernels import cpu
    print(json.dumps({"reason": cpu.unavailable_reason(), "builds": sum("-shared" in c for c in commands)}))
"""


@pytest.mark.slow
def test_concurrent_cold_starts_build_once(tmp_path):
    env = child_env(ACTFUSION_CACHE_DIR=str(tmp_path / "cache"))
    command = [sys.executable, "-c", textwrap.dedent(BUILD_COUNT)]
    children = [
        subprocess.Popen(
            command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert [report["reason"] for report in reports] == [None] * 3
    assert sum(report["builds"] for report in reports) == 1
    assert len(list((tmp_path / "cache" / "kernels").glob("*.so"))) == 1


def test_struct_mirrors_match_the_c_layout(kernel):
    library = cpu.library()
    for name, mirror in (("mix_args", cpu.MixArgs), ("gemm_args", cpu.GemmArgs)):
        cpu.check_layout(library, name, mirror)  # the real mirrors pass

    class Reordered(ctypes.Structure):  # two fields swapped: same size, other offsets
        _fields_ = [cpu.GemmArgs._fields_[1], cpu.GemmArgs._fields_[0], *cpu.GemmArgs._fields_[2:]]

    with pytest.raises(cpu.CpuKernelError, match="does not match its ctypes mirror Reordered"):
        cpu.check_layout(library, "gemm_args", Reordered)


@pytest.mark.parametrize(
    ("machine", "platform_name", "cpu_flags", "present", "absent"),
    [
        (
            "x86_64",
            "linux",
            "flags : fma avx2 avx512f",
            ["-march=native", "-mprefer-vector-width=512", "-fopenmp"],
            ["-mcpu=native"],
        ),
        ("x86_64", "linux", "flags : fma avx2", ["-march=native", "-fopenmp"], ["-mprefer-vector-width=512"]),
        (
            "aarch64",
            "linux",
            "",
            ["-mcpu=native", "-fopenmp"],
            ["-march=native", "-mprefer-vector-width=512"],
        ),
        ("arm64", "darwin", "", ["-mcpu=native"], ["-fopenmp", "-march=native"]),
    ],
)
def test_build_flags_follow_the_architecture(monkeypatch, machine, platform_name, cpu_flags, present, absent):
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu.sys, "platform", platform_name)
    monkeypatch.setattr(cpu, "_cpu_flags", lambda: cpu_flags)
    monkeypatch.setattr(cpu, "_LIBOMP_PREFIXES", ())  # no Homebrew libomp
    flags = cpu.build_flags()
    assert all(flag in flags for flag in present), flags
    assert not any(flag in flags for flag in absent), flags


@pytest.mark.slow
def test_a_compiler_rejecting_a_flag_falls_back_with_one_log_line(tmp_path):
    """A compiler without -mprefer-vector-width (as aarch64 GCC): where the flags ask for it, the build
    fails, the torch path runs and one warning says why; elsewhere the kernel builds with that compiler."""
    compiler = tmp_path / "picky-cc"
    real = shutil.which("cc") or shutil.which("gcc")
    compiler.write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in -mprefer-vector-width=*)\n'
        "echo \"picky-cc: error: unrecognized command-line option '$a'\" >&2; exit 1;; esac; done\n"
        f'exec {real} "$@"\n'
    )
    compiler.chmod(compiler.stat().st_mode | stat.S_IXUSR)
    env = child_env(CC=str(compiler), ACTFUSION_CACHE_DIR=str(tmp_path / "cache"))
    code = """
        import json, logging
        logging.basicConfig(level=logging.WARNING, format="LOG %(name)s %(message)s")
        from actfusion_sdk.kernels import cpu
        reasons = [cpu.unavailable_reason(), cpu.unavailable_reason()]
        print(json.dumps({"reasons": reasons, "asks": "-mprefer-vector-width=512" in cpu.build_flags()}))
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    logged = [line for line in result.stderr.splitlines() if line.startswith("LOG actfusion_sdk.kernels.cpu")]
    if report["asks"]:
        assert report["reasons"][0] is not None and "unrecognized command-line option" in report["reasons"][0]
        assert report["reasons"][0] == report["reasons"][1]
        assert len(logged) == 1 and "torch path runs instead" in logged[0], result.stderr
    else:
        assert report["reasons"] == [None, None] and logged == []
