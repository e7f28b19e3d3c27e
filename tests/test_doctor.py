"""`actfusion doctor`: the report on this machine, and what it says where the CPU kernel does not run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from actfusion_sdk.cli import main
from actfusion_sdk.doctor import format_report, report

from .helpers import REPO


def test_report_names_versions_kernel_paths_and_weights(kernel, capsys):
    data = report()
    assert data["packages"]["torch"] == "2.14.1"
    assert data["cpu_kernel"]["available"] is True and data["cpu_kernel"]["reason"] is None
    assert data["cpu_kernel"]["library"].endswith(".so")
    assert data["weights"]["name"] == "demo" and data["weights"]["classes"] == 11
    encoder, decoder = data["paths"]["encoder"], data["paths"]["decoder"]
    assert encoder["attention"].startswith("fused CPU kernel")
    assert "expanded q·k" in decoder["attention"] and "expanded" not in encoder["attention"]
    assert encoder["conv"].startswith("Winograd F(4, 5) at dilations [1, 2")
    assert (
        encoder["matmul"].startswith(("packed gemm", "torch matmul")) and "ms vs torch" in encoder["matmul"]
    )
    assert main(["doctor", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cpu_kernel"] == json.loads(json.dumps(data["cpu_kernel"]))
    assert "cpu_kernel:\n  available: True" in format_report(data)


def doctor_in_child(**env: str) -> dict:
    """`actfusion doctor --json` in a fresh process (the kernel's status is decided once per process)."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from actfusion_sdk.cli import main; sys.exit(main())",
            "doctor",
            "--json",
        ],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_disabled_kernel_is_reported_with_its_reason():
    data = doctor_in_child(ACTFUSION_CPU_KERNEL="0")
    assert data["cpu_kernel"]["reason"] == "disabled by ACTFUSION_CPU_KERNEL=0"
    for stack in ("encoder", "decoder"):
        assert data["paths"][stack]["attention"] == "torch (disabled by ACTFUSION_CPU_KERNEL=0)"
        assert data["paths"][stack]["matmul"] == "torch matmul"


@pytest.mark.slow
def test_failed_build_on_a_cold_cache_is_reported_with_the_compiler_error(tmp_path):
    data = doctor_in_child(CC="false", ACTFUSION_CACHE_DIR=str(tmp_path / "cold"))
    reason = data["cpu_kernel"]["reason"]
    assert reason is not None and "failed" in reason and "false" in reason
    assert data["cache_root"] == str(tmp_path / "cold")
    assert data["paths"]["encoder"]["attention"] == f"torch ({reason})"
    assert not list((tmp_path / "cold").rglob("*.so"))
