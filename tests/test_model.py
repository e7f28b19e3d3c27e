"""ActFusion model core against the official test vectors (spec §1-§4), batching, skipping and caching."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.interpolate import interp1d
from scipy.ndimage import median_filter

from actfusion_sdk.errors import ConfigError, InputError
from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.config import (
    OFFICIAL_FIELDS,
    PRESETS,
    ActFusionConfig,
    DecoderConfig,
    EncoderConfig,
    PostprocessConfig,
    preset,
)
from actfusion_sdk.model.inference import (
    anticipate,
    encoder_labels,
    sample_probs,
    seeded_generators,
    segment,
)
from actfusion_sdk.model.layers import DilatedAttentionLayer

from .helpers import small_config, small_model

pytestmark = pytest.mark.usefixtures("single_thread")

IMPLS = ("reference", "torch")


@pytest.fixture(scope="module")
def official(testvectors):
    return torch.load(testvectors / "model_50salads.pt", weights_only=True)


@pytest.fixture(scope="module")
def official_model(official):
    model = ActFusion(ActFusionConfig.from_official(official["config"]), official["num_classes"])
    model.load_state_dict(official["state_dict"], strict=True)
    return model.eval()


def max_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return (ours.double() - theirs.double()).abs().max().item()


# --- official vectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLS)
def test_encoder_and_decoder_match_official(official, official_model, impl):
    official_model.attention_impl = impl
    with torch.no_grad():
        encoded = official_model.encode(official["features"])
        logits = official_model.decode(
            official["cross_features"], official["decoder_t"], official["decoder_input"]
        )
    assert max_error(encoded.logits, official["encoder_logits"]) <= 1e-5
    assert max_error(encoded.cross, official["cross_features"]) <= 1e-5
    assert max_error(logits, official["decoder_logits"]) <= 1e-5


@pytest.mark.parametrize("impl", IMPLS)
def test_ddim_segmentation_and_anticipation_match_official(official, official_model, impl):
    official_model.attention_impl = impl
    features, seed = official["features"], official["ddim_seed"]
    probs = sample_probs(official_model, features, generators=seeded_generators(1, seed))
    assert max_error(probs, official["segment_probs"]) <= 1e-5
    visible = torch.arange(features.shape[2])[None] < official["anticipate_observed"]
    probs = sample_probs(official_model, features, generators=seeded_generators(1, seed), visible=visible)
    assert max_error(probs, official["anticipate_probs"]) <= 1e-5


@pytest.mark.parametrize("impl", IMPLS)
def test_every_attention_layer_case_matches_official(testvectors, impl):
    cases = torch.load(testvectors / "attention_layers.pt", weights_only=True)
    assert len(cases) == 60
    for case in cases:
        decoder = case["kind"] == "decoder"
        layer = DilatedAttentionLayer(
            case["C"], case["dilation"], case["K"], 0.1, cross_dim=case["x_cross"].shape[1] if decoder else 0
        )
        layer.load_state_dict(case["state_dict"], strict=True)
        layer.attention_impl = impl
        layer.eval()
        with torch.no_grad():
            projection = layer.project_cross(case["x_cross"]) if decoder else None
            where = f"{case['kind']} K={case['K']} d={case['dilation']} L={case['L']}"
            assert max_error(layer.attention(case["x"], projection), case["attention"]) <= 1e-5, where
            assert max_error(layer(case["x"], projection), case["layer"]) <= 1e-5, where


def test_state_dict_is_the_official_one(official):
    ours = ActFusion(preset("50salads"), 19).state_dict()
    theirs = official["state_dict"]
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == value.shape and ours[key].dtype == value.dtype, key


def test_parameter_counts_follow_spec():
    breakfast, salads = ActFusion(preset("breakfast"), 48), ActFusion(preset("50salads"), 19)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert (count(breakfast), count(breakfast.encoder), count(breakfast.decoder)) == (
        12_314_848,
        8_659_632,
        3_653_168,
    )
    assert (count(salads), count(salads.encoder), count(salads.decoder)) == (1_576_614, 745_811, 828_755)


# --- configuration ---------------------------------------------------------------------------------------


def test_official_config_reads_as_the_50salads_preset(official):
    assert ActFusionConfig.from_official(official["config"]) == preset("50salads")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips(name):
    config = preset(name)
    assert ActFusionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ActFusionConfig.from_official(json.loads(json.dumps(config.to_official()))) == config


def test_official_table_maps_every_field_once(official):
    ours = [entry.ours for entry in OFFICIAL_FIELDS]
    assert sorted(ours) == sorted(_leaf_paths(preset("gtea").to_dict()))
    keys = [path for entry in OFFICIAL_FIELDS for path in entry.official]
    assert len(set(keys)) == len(keys)
    assert set(_leaf_paths(preset("50salads").to_official())) <= set(_leaf_paths(official["config"]))


def test_official_config_errors_name_the_key_path(official):
    config = {**official["config"], "decoder_params": {"num_layers": 8}}
    with pytest.raises(ConfigError, match="lacks the key 'decoder_params.num_f_maps'"):
        ActFusionConfig.from_official(config)


def _leaf_paths(tree: dict, prefix: str = "") -> list[str]:
    paths = []
    for key, value in tree.items():
        if isinstance(value, dict):
            paths += _leaf_paths(value, f"{prefix}{key}.")
        else:
            paths.append(prefix + key)
    return paths


def test_speed_range_is_optional_and_checked():
    config = preset("gtea")
    assert config.training.speed_range is None and "speed_range" not in config.to_official()
    fast = dataclasses.replace(config, training=dataclasses.replace(config.training, speed_range=[0.8, 1.25]))
    assert fast.training.speed_range == (0.8, 1.25)
    assert ActFusionConfig.from_dict(json.loads(json.dumps(fast.to_dict()))) == fast
    assert ActFusionConfig.from_official(json.loads(json.dumps(fast.to_official()))) == fast
    for bad in ([1.2, 0.8], [0.0, 1.0], [1.0]):
        with pytest.raises(ConfigError, match="speed_range"):
            dataclasses.replace(config.training, speed_range=bad)


def test_weight_average_and_lr_schedule_are_optional_and_checked():
    config = preset("50salads")
    official = config.to_official()
    assert config.training.ema_decay is None and config.training.lr_schedule == "constant"
    assert "ema_decay" not in official and "lr_schedule" not in official
    tuned = dataclasses.replace(
        config, training=dataclasses.replace(config.training, ema_decay=0.999, lr_schedule="cosine")
    )
    assert ActFusionConfig.from_dict(json.loads(json.dumps(tuned.to_dict()))) == tuned
    assert ActFusionConfig.from_official(json.loads(json.dumps(tuned.to_official()))) == tuned
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="ema_decay"):
            dataclasses.replace(config.training, ema_decay=bad)
    with pytest.raises(ConfigError, match="lr_schedule must be one of"):
        dataclasses.replace(config.training, lr_schedule="linear")


def test_preset_values_from_spec():
    breakfast, salads, gtea = preset("breakfast"), preset("50salads"), preset("gtea")
    assert breakfast.encoder.cross_dim(48) == 768 and salads.encoder.cross_dim(19) == 192
    assert (breakfast.diffusion.snr_scale, salads.diffusion.snr_scale, gtea.diffusion.snr_scale) == (
        0.5,
        1.0,
        0.5,
    )
    assert (breakfast.sample_rate, salads.sample_rate, gtea.sample_rate) == (1, 8, 1)
    assert gtea.postprocess == PostprocessConfig("purge", 3) and salads.postprocess == PostprocessConfig(
        "median", 30
    )
    assert gtea.training.weight_decay == 1e-6 and breakfast.training.soft_label == 4


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="breakfast, 50salads, gtea"):
        preset("salads")
    with pytest.raises(ConfigError, match="out of range"):
        EncoderConfig(4, 16, 5, 0.5, 0.5, 0.5, (4,))
    with pytest.raises(ConfigError, match="odd"):
        DecoderConfig(3, 8, 4, 0.1)
    with pytest.raises(ConfigError, match="'abs'"):
        small_config(pos="abs")
    with pytest.raises(ConfigError, match="lacks the key 'training'"):
        ActFusionConfig.from_dict({"name": "x"})


# --- model behaviour ---------------------------------------------------------------------------------------


def test_batch_of_two_equals_two_batches_of_one():
    model = small_model()
    features = torch.randn(2, 2048, 37)
    visible = torch.rand(2, 37) > 0.3
    with torch.no_grad():
        together = model.encode(features, visible)
        t = torch.tensor([999, 39])
        labels = torch.rand(2, 5, 37)
        decoded = model.decode(together.cross, t, labels)
        for i in range(2):
            alone = model.encode(features[i : i + 1], visible[i : i + 1])
            assert torch.allclose(together.logits[i], alone.logits[0], atol=1e-6)
            assert torch.allclose(together.cross[i], alone.cross[0], atol=1e-6)
            single = model.decode(alone.cross, t[i : i + 1], labels[i : i + 1])
            assert torch.allclose(decoded[i], single[0], atol=1e-6)
    both = sample_probs(model, features, generators=[torch.Generator().manual_seed(s) for s in (3, 4)])
    for i, seed in enumerate((3, 4)):
        alone = sample_probs(model, features[i : i + 1], generators=seeded_generators(1, seed))
        assert torch.allclose(both[i], alone[0], atol=1e-6)


def test_cached_cross_projection_gives_the_same_logits():
    model = small_model()
    features = torch.randn(1, 2048, 50)
    with torch.no_grad():
        cross = model.encode(features).cross
        labels, t = torch.rand(1, 5, 50), torch.tensor([499])
        cached = model.decode(cross, t, labels, model.precompute_cross(cross))
        fresh = model.decode(cross, t, labels)
        # The official single 1x1 conv over [x ; F] as the oracle of the split projection.
        layer = model.decoder.module.layers[0]
        xd = torch.randn(1, 8, 50)
        joint = torch.nn.functional.conv1d(
            torch.cat([xd, cross], 1), layer.att_linear_q.weight, layer.att_linear_q.bias
        )
        query_cross = layer.project_cross(cross)[:, :8]  # [q ; k ; v] terms, 8 channels each
        query = torch.nn.functional.conv1d(xd, layer.att_linear_q.weight[:, :8]) + query_cross
    assert torch.equal(cached, fresh)
    assert torch.allclose(query, joint, atol=1e-5)
    model.train()
    with pytest.raises(ConfigError, match="eval mode"):
        model.decode(cross, t, labels, model.precompute_cross(cross))


def test_unused_encoder_layers_are_skipped_at_inference():
    model = small_model(encoder=EncoderConfig(6, 16, 5, 0.5, 0.5, 0.5, (1, 2)))
    calls = []
    for index, layer in enumerate(model.encoder.encoder.layers):
        layer.register_forward_hook(lambda *_, index=index: calls.append(index))
    features = torch.randn(1, 2048, 20)
    with torch.no_grad():
        full = model.encode(features)
        assert calls == [0, 1, 2, 3, 4, 5]
        calls.clear()
        lean = model.encode(features, with_logits=False)
    assert calls == [0, 1, 2] and lean.logits is None
    assert torch.equal(lean.cross, full.cross)


def test_raw_and_probability_features_join_the_cross_features_in_order():
    model = small_model(encoder=EncoderConfig(4, 16, 5, 0.5, 0.5, 0.5, (-2, 2, -1, 0)))
    features = torch.randn(1, 2048, 30)
    visible = torch.arange(30)[None] < 20
    assert model.cross_dim == 2048 + 2 * 16 + 5
    with torch.no_grad():
        out = model.encode(features, visible, with_logits=False)
    masked = torch.where(visible[:, None], features, model.mask_token)
    assert out.cross.shape == (1, model.cross_dim, 30)
    assert torch.equal(out.cross[:, :2048], masked.detach())
    with torch.no_grad():
        expected_probs = torch.softmax(model.encode(masked).logits, dim=1)
    assert torch.allclose(out.cross[:, -5:], expected_probs, atol=1e-6)


def test_masked_frames_become_the_mask_token():
    model = small_model()
    features = torch.randn(1, 2048, 25)
    visible = torch.rand(1, 25) > 0.5
    replaced = features.clone()
    replaced[0][:, ~visible[0]] = model.mask_token.detach()[0]
    with torch.no_grad():
        assert torch.equal(model.encode(features, visible).cross, model.encode(replaced).cross)


def test_instance_norm_makes_the_encoder_invariant_to_per_channel_affine_changes():
    model = small_model(encoder=EncoderConfig(4, 16, 5, 0.5, 0.5, 0.5, (1, 3), use_instance_norm=True))
    assert set(model.state_dict()) == set(small_model().state_dict())  # the option adds no parameters
    features = torch.randn(1, 2048, 40, dtype=torch.float64)
    scale, shift = (
        torch.rand(1, 2048, 1, dtype=torch.float64) + 0.5,
        torch.randn(1, 2048, 1, dtype=torch.float64),
    )
    model.double()
    with torch.no_grad():
        assert torch.allclose(
            model.encode(features).logits, model.encode(features * scale + shift).logits, atol=1e-4
        )


def test_pos_none_has_no_position_tables():
    model = small_model(pos="none")
    assert not any("rel_pos_emb" in key for key in model.state_dict())
    with torch.no_grad():
        assert model.encode(torch.randn(1, 2048, 12)).logits.shape == (1, 5, 12)


def test_schedule_buffers_stay_float64_through_dtype_changes():
    model = small_model()
    before = model.alphas_cumprod.clone()
    model.half()
    assert model.alphas_cumprod.dtype == torch.float64 and torch.equal(model.alphas_cumprod, before)
    assert model.mask_token.dtype == torch.float16


def test_attention_impl_reaches_every_layer():
    model = small_model()
    model.attention_impl = "torch"
    layers = [m for m in model.modules() if isinstance(m, DilatedAttentionLayer)]
    assert len(layers) == 4 + 3 and all(layer.attention_impl == "torch" for layer in layers)


def test_encoder_input_shape_is_checked():
    with pytest.raises(InputError, match="2048"):
        small_model().encode(torch.randn(1, 100, 10))


# --- inference entry points -----------------------------------------------------------------------------


def official_style_stream_probs(
    model: ActFusion, streams: list[torch.Tensor], seed: int, visible: list[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """One stream at a time, each with a fresh generator (the official protocol, spec §3)."""
    return [
        sample_probs(
            model,
            stream[None],
            generators=seeded_generators(1, seed),
            visible=None if visible is None else visible[i][None],
        )[0]
        for i, stream in enumerate(streams)
    ]


def official_postprocess(probs: np.ndarray, full_length: int, sample_rate: int, size: int) -> np.ndarray:
    """Median (scipy), renormalise, argmax, restore_full_sequence with scipy's nearest interp (spec §3)."""
    smoothed = np.stack([median_filter(row, size=size, mode="reflect") for row in probs])
    labels = (smoothed / smoothed.sum(0, keepdims=True)).argmax(0)
    ticks = np.arange(sample_rate // 2, full_length - (sample_rate - 1) // 2, sample_rate)
    full = np.zeros(full_length, dtype=np.int64)
    full[: ticks[0]] = labels[0]
    full[ticks[-1] :] = labels[-1]
    full[ticks[0] : ticks[-1]] = interp1d(ticks, labels, kind="nearest")(np.arange(ticks[0], ticks[-1]))
    return full


@pytest.mark.parametrize("length", [42, 40])
def test_segment_equals_the_one_stream_at_a_time_protocol(length):
    model = small_model()
    features = torch.randn(2048, length)
    prediction = segment(model, features, seed=7)
    streams = [features[:, o::4] for o in range(4)]
    per_stream = official_style_stream_probs(model, streams, seed=7)
    grid = min(p.shape[1] for p in per_stream)
    averaged = torch.stack([p[:, :grid] for p in per_stream]).mean(0).numpy()
    assert prediction.labels.dtype == np.int64 and prediction.probs.dtype == np.float32
    assert prediction.probs.shape == (5, length) and prediction.observed_frames is None
    np.testing.assert_array_equal(prediction.labels, official_postprocess(averaged, length, 4, 5))
    np.testing.assert_allclose(prediction.probs.sum(0), 1.0, atol=1e-5)


def test_segment_uses_a_given_generator_state_for_every_stream():
    model = small_model()
    features = torch.randn(2048, 24)
    generator = torch.Generator().manual_seed(11)
    state = generator.get_state()
    assert np.array_equal(
        segment(model, features, generator=generator).labels, segment(model, features, seed=11).labels
    )
    assert torch.equal(generator.get_state(), state)


def test_anticipate_with_a_ratio_follows_the_official_protocol():
    model = small_model()
    total = 42
    features = torch.randn(2048, total)
    stream_length = 11  # ceil(42 / 4)
    observed_steps = round(stream_length * 0.3)  # 3
    prediction = anticipate(model, features[:, :12], total_frames=total, observation_ratio=0.3, seed=2)
    assert prediction.observed_frames == observed_steps * 4
    streams, visible = [], []
    for offset in range(4):
        index = torch.clamp(offset + 4 * torch.arange(stream_length), max=total - 1)
        streams.append(features[:, index])
        visible.append(torch.arange(stream_length) < observed_steps)
    per_stream = official_style_stream_probs(model, streams, seed=2, visible=visible)
    averaged = torch.stack([p[:, : total // 4] for p in per_stream]).mean(0).numpy()
    np.testing.assert_array_equal(prediction.labels, official_postprocess(averaged, total, 4, 5))


def test_anticipate_ignores_features_beyond_the_observed_frames():
    model = small_model()
    features = torch.randn(2048, 30)
    changed = features.clone()
    changed[:, 17:] = torch.randn(2048, 13)
    first = anticipate(model, features, total_frames=40, observed_frames=17)
    second = anticipate(model, changed[:, :17], total_frames=40, observed_frames=17)
    assert first.observed_frames == 17
    np.testing.assert_array_equal(first.labels, second.labels)
    with pytest.raises(InputError, match="observed part needs 17"):
        anticipate(model, features[:, :16], total_frames=40, observed_frames=17)
    with pytest.raises(ConfigError, match="exactly one"):
        anticipate(model, features, total_frames=40)
    blind = anticipate(model, torch.zeros(2048, 0), total_frames=40, observed_frames=0)
    assert blind.observed_frames == 0 and blind.labels.shape == (40,)


def test_encoder_labels_average_the_streams():
    model = small_model()
    features = torch.randn(2048, 26)
    with torch.no_grad():
        per_stream = [torch.softmax(model.encode(features[None, :, o::4]).logits[0], 0) for o in range(4)]
    averaged = torch.stack([p[:, :6] for p in per_stream]).mean(0).numpy()
    np.testing.assert_array_equal(encoder_labels(model, features), official_postprocess(averaged, 26, 4, 5))


def test_too_short_input_is_an_input_error():
    with pytest.raises(InputError, match="shorter than the sample rate"):
        segment(small_model(), torch.randn(2048, 3))


@pytest.mark.parametrize("dilation,length", [(1, 40), (4, 40), (16, 40), (64, 40), (2, 1)])
def test_dilated_conv_equals_conv1d_forward_and_backward(dilation, length):
    """The CPU conv (K in-place matmuls over each tap's in-range slice) is conv_block's zero-padded conv:
    same output and same gradients for the input, weight and bias, in float64; taps that never land in
    range (dilation ≥ length) included."""
    torch.manual_seed(0)
    layer = DilatedAttentionLayer(6, dilation, 5, dropout=0.0).double()
    x = torch.randn(2, 6, length, dtype=torch.float64, requires_grad=True)
    conv = layer.conv_block[0]
    ours, official = layer.dilated_conv(x), conv(x)
    upstream = torch.randn_like(official)
    inputs = [x, conv.weight, conv.bias]
    for mine, theirs in zip(
        torch.autograd.grad(ours, inputs, upstream),
        torch.autograd.grad(official, inputs, upstream),
        strict=True,
    ):
        assert torch.allclose(mine, theirs, rtol=0, atol=1e-12)
    assert torch.allclose(ours, official, rtol=0, atol=1e-12)
