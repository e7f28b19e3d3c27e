"""The ranges of the values a user passes to the API and the CLI (seconds, seeds, threads): each check
returns the value as the SDK uses it or raises a ConfigError naming the value and the range, so that an
out-of-range value fails before any work."""

from __future__ import annotations

import math
import numbers

from .errors import ConfigError

MAX_SECONDS = 7 * 24 * 3600.0  # of video or stream time: a week, far beyond any video, far below an overflow
SEED_MAX = 2**63 - 1  # sampling seeds are 0..SEED_MAX: what every torch.Generator accepts
MAX_THREADS = 4096
MAX_FEATURE_RATE = 1000.0  # features per second, of a model card or of precomputed features
# Feature frames the model answers at once where the user chooses the length (an anticipation window, a
# benchmark): over 3 hours at 15 features/s, 27 at 2; beyond it the time and memory are absurd.
MAX_FRAMES = 200_000


def check_seconds(name: str, value: object) -> float:
    """`value` as positive, finite seconds up to MAX_SECONDS (`name` is the parameter, for the message)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    # An integer is compared as it is: a huge one would overflow the conversion to float.
    finite = isinstance(value, numbers.Integral) or math.isfinite(value)
    if not (finite and 0 < value <= MAX_SECONDS):
        raise ConfigError(f"{name} must be positive seconds up to {MAX_SECONDS:g} (a week), got {value}")
    return float(value)


def check_seed(seed: object) -> int:
    """`seed` as a sampling seed: an integer from 0 to SEED_MAX."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed must be an integer from 0 to {SEED_MAX} (2**63 - 1), got {seed!r}")
    return int(seed)


def check_threads(threads: object) -> int:
    """`threads` as a count of CPU threads for torch: an integer from 1 to MAX_THREADS."""
    if (
        isinstance(threads, bool)
        or not isinstance(threads, numbers.Integral)
        or not 1 <= threads <= MAX_THREADS
    ):
        raise ConfigError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    return int(threads)
