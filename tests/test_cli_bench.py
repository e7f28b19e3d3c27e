"""`actfusion bench` times segmentation and reports usage errors with exit code 2."""

from __future__ import annotations

import pytest

from actfusion_sdk.cli import main


@pytest.mark.slow
def test_bench_prints_time_and_frame_rate(capsys) -> None:
    assert main(["bench", "--preset", "gtea", "--length", "40", "--repeats", "1", "--device", "cpu"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("gtea: L=40 on cpu") and "frames/s" in line


@pytest.mark.parametrize("argv", [["--length", "0"], ["--preset", "kinetics"]])
def test_bench_rejects_bad_arguments(argv, capsys) -> None:
    assert main(["bench", "--device", "cpu", *argv]) == 2
    assert "ConfigError" in capsys.readouterr().err
