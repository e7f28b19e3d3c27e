"""`actfusion batch segment|anticipate|extract INPUT... --out DIR`: many videos on a Ray cluster.

The options and outputs are those of the single-machine commands (results as --format, default json, into
--out), plus where to run: an embedded local Ray by default, or a running cluster with --address.
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ._common import add_common_arguments, report_outcome
from .anticipate import add_window_arguments
from .extract import add_extract_arguments, extraction_settings

_EPILOG = (
    "INPUT: video files, folders, glob patterns or .txt list files (one path a line). Finished videos are "
    "skipped, failures are merged into OUT/failures.json. Exit codes: 0 ok, 2 usage, 3 some video failed, "
    "4 weights error."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "batch",
        help="segment, anticipate or extract many videos on a Ray cluster",
        description="Run segment, anticipate or extract over many videos on Ray (local, or --address).",
        epilog=_EPILOG,
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    segment = tasks.add_parser("segment", help="segment every video", epilog=_EPILOG)
    add_common_arguments(segment)
    anticipate = tasks.add_parser("anticipate", help="anticipate in every video", epilog=_EPILOG)
    add_common_arguments(anticipate)
    add_window_arguments(anticipate)
    extract = tasks.add_parser("extract", help="extract the features of every video", epilog=_EPILOG)
    add_extract_arguments(extract)
    for task in (segment, anticipate, extract):
        add_cluster_arguments(task)
        task.set_defaults(handler=run)


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the batch runs and the size of its workers."""
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--address",
        help="join a running Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start a local Ray)",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker slots, each with one actor per stage (default: as many as the cluster holds)",
    )
    group.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        metavar="N",
        help="CPUs per worker slot, shared by its stages (default 1; also the torch threads)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        metavar="N",
        help="GPUs per worker slot, 0.5 puts two on a GPU (default: 1 where the cluster has GPUs, else 0)",
    )


def job_from_arguments(args: argparse.Namespace):
    """The BatchJob the parsed arguments describe (checked before any cluster work)."""
    from ..batch import BatchJob
    from ..predictor import AnticipationWindow, VideoFeaturizer

    if args.out is None:
        raise ConfigError("actfusion batch writes one file per video: add --out DIR (shared by every node)")
    if args.task == "extract":
        return BatchJob(
            "extract",
            args.out,
            device=args.device,
            feature_settings=extraction_settings(args),
            i3d_weights=None if args.i3d_weights is None else str(args.i3d_weights.absolute()),
            precision=args.precision,
            batch_size=args.batch_size,
        )
    window = AnticipationWindow()
    if args.task == "anticipate":
        window = AnticipationWindow(args.ratio, args.observed, args.horizon)
        if window.observed is not None:  # at least one of the model's feature frames (its card says the rate)
            window.check_rate(VideoFeaturizer.from_card(args.weights).feature_settings().features_per_second)
    return BatchJob(
        args.task,
        args.out,
        weights=args.weights,
        device=args.device,
        seed=args.seed,
        format=args.format or "json",
        plot=args.plot,
        html=args.html,
        window=window,
    )


def run(args: argparse.Namespace) -> int:
    from ..batch import ClusterOptions
    from ..batch import run as run_batch

    job = job_from_arguments(args)
    cluster = ClusterOptions(args.address, args.workers, args.cpus_per_worker, args.gpus_per_worker)
    inputs = args.inputs if args.task == "extract" else args.videos
    report = run_batch(inputs, job, cluster, progress=not args.quiet)
    return report_outcome(report, args.quiet)
