"""Joining a running Ray cluster from the batch's driver, with one-line errors for what can go wrong.

Ray's token authentication: `ray start --head` runs its cluster with token authentication when
`RAY_AUTH_MODE=token` is set there, or when that machine already holds a token (`~/.ray/auth_token`, written
by `ray get-auth-token --generate` and by every local `ray.init()`). A node or driver joining it by an
explicit address then needs `RAY_AUTH_MODE=token` and the same token: the `RAY_AUTH_TOKEN` environment
variable, a file named by `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`. Ray never sends a local token to an
explicitly named address by itself, and the SDK does not either (it would hand the token to whatever listens
there): the user's environment says whether to send it.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

TOKEN_HELP = (
    "pass the cluster's token (`ray get-auth-token` on the head prints it) as RAY_AUTH_TOKEN, in a file "
    "named by RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token"
)
_REFUSED = "InvalidAuthToken"
_NO_TOKEN = "no authentication token was found"


def join_cluster(ray: Any, address: str) -> None:
    """`ray.init(address=address)`, raising ConfigError with one line (what failed, what to do) when Ray
    cannot join the cluster: its token is refused or missing, or nothing answers at `address`."""
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ray.exceptions.RayError) as err:
        raise connection_error(address, err) from None


def connection_error(address: str, err: BaseException) -> ConfigError:
    """The ConfigError that says why joining the cluster at `address` failed with `err` (Ray nests the
    cause, e.g. the GCS client's `InvalidAuthToken`, in the text of the exceptions it chains)."""
    chain = " ".join(str(cause) for cause in _causes(err))
    if _REFUSED in chain:
        return ConfigError(
            f"the Ray cluster at {address} refused this driver ({_REFUSED}: it uses token authentication "
            f"and this process sent no token or another one): set RAY_AUTH_MODE=token and {TOKEN_HELP}"
        )
    if _NO_TOKEN in chain:
        return ConfigError(f"RAY_AUTH_MODE=token is set but Ray found no token here: {TOKEN_HELP}")
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConfigError(
        f"cannot join the Ray cluster at {address}: {first_line} (is `ray start --head` running there, "
        "and is HOST:PORT its GCS address?)"
    )


def _causes(err: BaseException) -> list[BaseException]:
    """`err` and the exceptions it was raised from, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
