"""Training recipes by name: 'small', the bundled demo model's recipe for a few dozen videos or fewer, and
the released presets (breakfast, 50salads, gtea), whose thousands of epochs suit their full datasets.

The small recipe is the demo model's configuration (weights/demo/model.json): a narrower encoder with
per-video input normalisation, a cosine learning rate from 5e-4, a moving average of the weights, speed
augmentation and 450 epochs validated every 25. On 8 procedural videos it trains in minutes on a CPU, where
the 50salads recipe had not left background after 30 of its 7,001 epochs.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..model.config import (
    ENCODER_PROBS,
    PRESETS,
    ActFusionConfig,
    DecoderConfig,
    DiffusionConfig,
    EncoderConfig,
    LossWeights,
    PostprocessConfig,
    TrainingConfig,
)

SMALL_RECIPE = "small"
DEFAULT_RECIPE = SMALL_RECIPE

SMALL = ActFusionConfig(
    name=SMALL_RECIPE,
    encoder=EncoderConfig(
        num_layers=8,
        width=64,
        kernel_size=5,
        dropout=0.3,
        channel_dropout=0.2,
        temporal_dropout=0.2,
        feature_layer_indices=(3, 5, 7, ENCODER_PROBS),
        use_instance_norm=True,
    ),
    decoder=DecoderConfig(num_layers=6, width=64, kernel_size=5, dropout=0.1),
    diffusion=DiffusionConfig(snr_scale=0.5),
    training=TrainingConfig(
        cond_types=("full", "ant", "ant", "boundary03-", "segment=1", "random_patch"),
        loss_weights=LossWeights(
            encoder_ce=0.5,
            encoder_mse=0.1,
            encoder_boundary=0.0,
            decoder_ce=0.5,
            decoder_mse=0.1,
            decoder_boundary=0.1,
        ),
        learning_rate=5e-4,
        weight_decay=0.0,
        batch_size=4,
        epochs=450,
        eval_every=25,
        boundary_smooth=1,
        soft_label=None,
        class_weighting=True,
        n_mask=5,
        patch_size=4,
        speed_range=(0.6, 1.6),
        ema_decay=0.998,
        lr_schedule="cosine",
    ),
    postprocess=PostprocessConfig(kind="median", value=5),
    sample_rate=1,
    temporal_aug=False,
)

RECIPES: dict[str, ActFusionConfig] = {SMALL_RECIPE: SMALL, **PRESETS}


def recipe(name: str) -> ActFusionConfig:
    """The configuration and training recipe called `name` ('small' or a released preset)."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(
            f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)} (small: a few dozen videos at most)"
        ) from None
