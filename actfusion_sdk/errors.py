"""The SDK's exception tree. Every error says what was wrong and what to do about it.

Each class carries the CLI exit code it maps to (0 ok, 2 usage, 3 input error, 4 weights error).
"""

from __future__ import annotations


class ActFusionError(Exception):
    """Base class of every error the SDK raises on purpose."""

    exit_code = 1


class ConfigError(ActFusionError, ValueError):
    """An invalid argument, preset or configuration value."""

    exit_code = 2


class InputError(ActFusionError):
    """A user-supplied input (features, arrays, paths) cannot be used."""

    exit_code = 3


class VideoError(InputError):
    """A video file cannot be decoded or is unusable (names the file and the problem)."""


class DatasetError(InputError):
    """A dataset directory in the MS-TCN layout is incomplete or inconsistent."""


class WeightsError(ActFusionError):
    """A checkpoint cannot be found, read or matched to the model."""

    exit_code = 4


class KernelError(ActFusionError, RuntimeError):
    """An attention implementation cannot run on the given tensors or device."""

    exit_code = 2
