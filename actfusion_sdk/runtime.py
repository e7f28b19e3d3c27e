"""Where and how torch runs: the one place that picks a device and enters inference mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import ConfigError

DeviceLike = str | torch.device | None


def resolve_device(device: DeviceLike = None, *, local_rank: int | None = None) -> torch.device:
    """None -> cuda (``cuda:local_rank`` under torchrun) when available, else cpu.

    Strings and torch.device are accepted; an unknown name or CUDA on a machine without it is a ConfigError.
    """
    if device is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda" if local_rank is None else f"cuda:{local_rank}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(
            f"device {str(device)!r} is not a torch device ({err}); use 'cpu' or 'cuda'"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {str(device)!r} was requested but CUDA is not available; use device='cpu'")
    return resolved


@contextmanager
def inference(*modules: torch.nn.Module) -> Iterator[None]:
    """Eval mode without autograd for every module given, restoring their training flags afterwards."""
    was_training = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for module, training in zip(modules, was_training, strict=True):
            module.train(training)
