"""Training ActFusion on an MS-TCN dataset (spec §3, §4, §7), in one process or under torchrun with DDP.

One video per forward (the official batch-1 semantics); `batch_size` videos per optimizer step through
gradient accumulation, shared across ranks under DDP. Differences from the official trainer, on purpose:
the model is selected on a validation subset carved from the training split (never the test split;
`val_fraction=0` trains on every training video, as the official trainer does, and keeps the last model),
checkpoints are atomic, `resume=True` continues exactly (model, optimizer, pending gradients, step, every
rank's RNG states), runs are seeded, and the log is JSON lines. Two optional recipe settings the official
code lacks: a moving average of the weights (`ema_decay`) and a cosine learning-rate schedule.

    trainer.py      `train()`: the run (epochs, validation, model selection, log)
    objective.py    one video's targets, forward noising and losses
    state.py        what a checkpoint carries: RNG states, weight average, optimizer, counters
    distributed.py  torchrun/DDP: process group, rank shards, collectives
    lr_schedule.py  constant or cosine learning rate
    splits.py       the training videos and the validation subset carved from them
    recipes.py      recipes by name: 'small' (the demo model's, the default) and the released presets
    warm_start.py   `init=`: start from trained weights with another class list
"""

from .distributed import Distributed, epoch_shard, init_distributed
from .lr_schedule import learning_rate
from .objective import Targets, TrainingObjective, stream_losses, training_targets
from .recipes import RECIPES, SMALL, recipe
from .splits import carve_validation
from .state import TrainingRNG, TrainingState, WeightAverage
from .trainer import TrainingInterrupted, TrainResult, resolve_config, train
from .warm_start import WarmStart, class_dependent_keys, warm_start

__all__ = [
    "RECIPES",
    "SMALL",
    "Distributed",
    "Targets",
    "TrainResult",
    "TrainingObjective",
    "TrainingInterrupted",
    "TrainingRNG",
    "TrainingState",
    "WarmStart",
    "WeightAverage",
    "carve_validation",
    "class_dependent_keys",
    "epoch_shard",
    "init_distributed",
    "learning_rate",
    "recipe",
    "resolve_config",
    "stream_losses",
    "train",
    "training_targets",
    "warm_start",
]
