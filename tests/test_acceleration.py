"""Optional denoiser acceleration: off by default, torch.compile equal to eager (or eager), CUDA graphs."""

from __future__ import annotations

import inspect

import pytest
import torch

from actfusion_sdk.errors import ConfigError
from actfusion_sdk.model import acceleration
from actfusion_sdk.model.acceleration import accelerated, compiled_denoiser
from actfusion_sdk.model.inference import sample_probs, seeded_generators, segment

from .helpers import small_model

pytestmark = pytest.mark.usefixtures("single_thread")


def toy_denoise(noisy_labels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return noisy_labels * 2 + t[:, None, None]


@pytest.mark.parametrize("function", [sample_probs, segment])
def test_compile_and_cuda_graphs_are_off_by_default(function):
    parameters = inspect.signature(function).parameters
    assert parameters["compile_denoiser"].default is False
    assert parameters["cuda_graphs"].default is False
    assert accelerated(toy_denoise, torch.device("cpu")) is toy_denoise


def test_cuda_graphs_need_a_cuda_device_and_exclude_compile():
    with pytest.raises(ConfigError, match="needs the model on a CUDA device"):
        accelerated(toy_denoise, torch.device("cpu"), cuda_graphs=True)
    with pytest.raises(ConfigError, match="choose one"):
        accelerated(toy_denoise, torch.device("cuda"), compile=True, cuda_graphs=True)


def test_missing_compiler_runs_eagerly_with_a_warning(monkeypatch):
    monkeypatch.setattr(acceleration, "compiler_available", lambda: False)
    with pytest.warns(UserWarning, match="C\\+\\+ compiler; running eagerly"):
        denoise = compiled_denoiser(toy_denoise)
    assert denoise is toy_denoise


def test_failed_compilation_falls_back_to_eager(monkeypatch):
    def broken(noisy_labels, t):
        raise RuntimeError("inductor failed")

    monkeypatch.setattr(acceleration, "compiler_available", lambda: True)
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: broken)
    denoise = compiled_denoiser(toy_denoise)
    x, t = torch.rand(2, 3, 5), torch.tensor([1, 2])
    with pytest.warns(UserWarning, match="torch.compile failed \\(RuntimeError\\); running eagerly"):
        assert torch.equal(denoise(x, t), toy_denoise(x, t))
    assert torch.equal(denoise(x, t), toy_denoise(x, t))  # stays eager, no second warning needed


@pytest.mark.slow  # inductor compiles for about a minute on 2 cores
def test_compiled_sampling_equals_eager():
    assert acceleration.compiler_available()  # this machine has inductor and g++: the compiled path runs
    model = small_model()
    model.attention_impl = "torch"
    features = torch.randn(2, model.config.encoder.input_dim, 37)
    eager = sample_probs(model, features, generators=seeded_generators(2, 5))
    compiled = sample_probs(model, features, generators=seeded_generators(2, 5), compile_denoiser=True)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_cuda_graph_sampling_equals_eager(impl):
    model = small_model().cuda()
    model.attention_impl = impl
    features = torch.randn(2, model.config.encoder.input_dim, 37, device="cuda")
    eager = sample_probs(model, features, generators=seeded_generators(2, 5))
    graphed = sample_probs(model, features, generators=seeded_generators(2, 5), cuda_graphs=True)
    torch.testing.assert_close(graphed, eager, rtol=0, atol=1e-5)
