"""The README's Ray cluster steps, run as a user runs them: `ray get-auth-token --generate` and
`ray start --head` (the head), `ray start --address` (a second node: another raylet on this machine, with its
own temp dir and home), then `actfusion batch segment ... --address` as a separate driver process. Ray 2.60
clusters use token authentication: the worker gets the token as ~/.ray/auth_token, the driver as
RAY_AUTH_TOKEN; a driver without RAY_AUTH_MODE=token is refused and told in one line how to fix it.

Teardown stops only this module's Ray processes (those in the sessions of its `ray start` commands; a plain
`ray stop` would stop every Ray on the machine)."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actfusion_sdk.batch.connection import connection_error
from actfusion_sdk.errors import ConfigError
from actfusion_sdk.pipeline import Pipeline

from .helpers import REPO, write_moving_square, write_tiny_weights
from .test_batch import assert_equal_to_reference, one_torch_thread

pytest.importorskip("ray", reason="the cluster tests need the cluster extra (ray)")

BIN = Path(sys.executable).parent  # the `ray` and `actfusion` commands of this environment
SEED = 3
START_TIMEOUT = 120  # seconds for one `ray start` on a busy 2-core machine
DRIVER_TIMEOUT = 240
# What the README's commands add on this 2-core test machine: one CPU and a 100 MB object store per node.
NODE_SIZE = ["--num-cpus", "1", "--object-store-memory", "100000000", "--disable-usage-stats"]
# Ray settings of the calling environment that would change what the commands do.
RAY_SETTINGS = (
    "RAY_ADDRESS",
    "RAY_AUTH_MODE",
    "RAY_AUTH_TOKEN",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",  # test_batch sets it to 0, which forbids multi-node clusters
)


# -- the one-line errors, without a cluster ------------------------------------------------------------


def test_a_refused_token_nested_in_rays_chain_becomes_one_line_saying_how_to_pass_it():
    try:
        try:
            raise RuntimeError(
                "Failed to connect to GCS. Last connection error: ... RPC error: InvalidAuthToken"
            )
        except RuntimeError as cause:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from cause
    except ConnectionError as err:
        message = str(connection_error("10.0.0.1:6379", err))
    assert "\n" not in message and "10.0.0.1:6379" in message and "InvalidAuthToken" in message
    assert "RAY_AUTH_MODE=token" in message and "ray get-auth-token" in message


def test_a_missing_token_and_an_unreachable_cluster_say_what_is_wrong():
    missing = connection_error(
        "auto", RuntimeError("Token authentication is enabled but no authentication token was found.")
    )
    assert "found no token" in str(missing) and "RAY_AUTH_TOKEN" in str(missing)
    unreachable = connection_error("h:1", ConnectionError("Failed to connect to Ray cluster at h:1\nmore"))
    assert isinstance(unreachable, ConfigError) and unreachable.exit_code == 2
    assert str(unreachable).startswith(
        "cannot join the Ray cluster at h:1: Failed to connect to Ray cluster at h:1 ("
    )
    assert "\n" not in str(unreachable)


# -- the README's commands ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with another home (where Ray looks for ~/.ray/auth_token), none of the
    caller's Ray settings, and `extra`."""
    environment = {key: value for key, value in os.environ.items() if key not in RAY_SETTINGS}
    return {**environment, "HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def _session_members(sessions: set[int]) -> list[int]:
    """Live (not zombie) processes whose session is one of `sessions`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[3]) in sessions:
                members.append(int(entry.name))
    return members


def _stop_sessions(sessions: set[int]) -> None:
    """SIGKILL every process of `sessions` and wait (pidfd, at most 10 s each) until it is gone; repeated
    while Ray has started new ones meanwhile (at most 5 rounds)."""
    for _ in range(5):
        members = _session_members(sessions)
        if not members:
            return
        for pid in members:
            try:
                handle = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            try:
                signal.pidfd_send_signal(handle, signal.SIGKILL)
                select.select([handle], [], [], 10)
            except ProcessLookupError:
                pass
            finally:
                os.close(handle)


def _ray_start(arguments: list[str], environment: dict[str, str], log: Path, sessions: set[int]) -> None:
    """`ray ARGUMENTS` in a session of its own (its Ray processes stay in it), output into `log` (a pipe
    would be held open by the daemons it leaves running)."""
    with log.open("w") as output:
        command = subprocess.Popen(
            [str(BIN / "ray"), *arguments],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        sessions.add(command.pid)
        try:
            code = command.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            command.kill()
            code = command.wait()
    assert code == 0, f"ray {' '.join(arguments)} failed ({code}):\n{log.read_text()}"


def _alive_nodes(address: str, environment: dict[str, str]) -> set[str]:
    """The node ids of the cluster at `address`, as a separate driver process sees them."""
    code = (
        "import json, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(json.dumps([node['NodeID'] for node in ray.nodes() if node['Alive']]))"
    )
    seen = subprocess.run(
        [sys.executable, "-c", code, address],
        env=environment,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert seen.returncode == 0, seen.stderr[-3000:]
    return set(json.loads(seen.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def readme_cluster() -> Iterator[dict]:
    """The README's head and worker node on this machine; the head machine's token and the worker's copy of it
    live in separate homes."""
    root = Path(tempfile.mkdtemp(prefix="afcli", dir="/tmp"))  # short: Ray's socket paths live under it
    homes = {name: root / name for name in ("head", "worker", "driver")}
    for home in homes.values():
        home.mkdir()
    sessions: set[int] = set()
    address = f"127.0.0.1:{_free_port()}"
    try:
        head = _environment(homes["head"], RAY_AUTH_MODE="token")
        generated = subprocess.run(
            [str(BIN / "ray"), "get-auth-token", "--generate"],
            env=head,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        token_file = homes["head"] / ".ray" / "auth_token"
        assert generated.returncode == 0, generated.stderr
        token = token_file.read_text()
        assert generated.stdout == token and re.fullmatch(r"[0-9a-f]{32,}", token)
        port = address.split(":")[1]
        head_arguments = ["start", "--head", "--port", port, "--temp-dir", str(root / "ray-head")]
        _ray_start(
            [*head_arguments, *NODE_SIZE, "--include-dashboard", "false"], head, root / "head.log", sessions
        )
        (homes["worker"] / ".ray").mkdir()
        shutil.copyfile(token_file, homes["worker"] / ".ray" / "auth_token")  # "copy the head's token there"
        worker = _environment(homes["worker"], RAY_AUTH_MODE="token")
        worker_arguments = ["start", "--address", address, "--temp-dir", str(root / "ray-worker")]
        _ray_start([*worker_arguments, *NODE_SIZE], worker, root / "worker.log", sessions)
        nodes = _alive_nodes(
            address, _environment(homes["driver"], RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        )
        assert len(nodes) == 2, f"the cluster has {len(nodes)} node(s) after both `ray start`s: {nodes}"
        yield {"address": address, "token": token, "homes": homes, "root": root, "nodes": nodes}
    finally:
        _stop_sessions(sessions)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("clips")
    videos = [write_moving_square(root / f"clip{index}.mp4", 1.0 + index) for index in range(2)]
    return {"videos": videos, "weights": write_tiny_weights(root / "tiny")}


def _actfusion(arguments: list, environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "actfusion"), *map(str, arguments)],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT,
    )


@pytest.mark.slow
@pytest.mark.usefixtures("fast_seeded_weights")
def test_the_readme_cluster_segments_on_both_nodes_like_one_machine(readme_cluster, clips, tmp_path):
    out = tmp_path / "out"
    driver = _environment(
        readme_cluster["homes"]["driver"], RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=readme_cluster["token"]
    )
    arguments = ["batch", "segment", *clips["videos"], "--out", out, "--address", readme_cluster["address"]]
    arguments += ["--weights", clips["weights"], "--seed", SEED, "--workers", "2", "--cpus-per-worker", "1"]
    done = _actfusion(arguments, driver)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^2 done, 0 skipped, 0 failed of 2 in .* [12] node\(s\)\)$", done.stderr, re.M), (
        done.stderr
    )
    # The work ran on the README's cluster: on its nodes (which slots Ray Data gives the two short videos,
    # and so whether both nodes get one, depends on which actors are ready first).
    used = re.search(r"^  nodes: (.+)$", done.stderr, re.M)
    assert used and set(used[1].split(", ")) <= readme_cluster["nodes"], done.stderr
    with one_torch_thread():
        pipeline = Pipeline(clips["videos"], weights=clips["weights"], device="cpu", progress=False)
        reference = {result.video_id: result for result in pipeline.segment(seed=SEED)}
    assert sorted(path.name for path in out.glob("*.json")) == sorted(
        f"{name}.segmentation{suffix}.json" for name in reference for suffix in ("", ".record")
    )
    assert_equal_to_reference(out, reference)


@pytest.mark.slow
def test_a_driver_without_ray_auth_mode_is_refused_in_one_line_saying_how(readme_cluster, clips, tmp_path):
    """The issue's failure: the token is in ~/.ray/auth_token but RAY_AUTH_MODE is not set, so Ray sends
    none to an explicit address. RAY_gcs_server_port_wait_time_s shortens Ray's retries (20 s by default)."""
    driver = _environment(readme_cluster["homes"]["worker"], RAY_gcs_server_port_wait_time_s="2")
    arguments = ["batch", "segment", clips["videos"][0], "--out", tmp_path / "out"]
    arguments += ["--weights", clips["weights"], "--address", readme_cluster["address"]]
    refused = _actfusion(arguments, driver)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    ours = [line for line in refused.stderr.splitlines() if line.startswith("actfusion:")]
    assert len(ours) == 1 and ours[0].startswith("actfusion: ConfigError: the Ray cluster at 127.0.0.1:")
    assert "InvalidAuthToken" in ours[0] and "RAY_AUTH_MODE=token" in ours[0]
    assert not list((tmp_path / "out").glob("*.segmentation.json"))
