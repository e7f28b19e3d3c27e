"""What the subcommands share: the compute options of every command that runs the model, and the
arguments, pipeline and output of `actfusion segment` and `actfusion anticipate`.

Results go to stdout (a table, or an export with --format); progress and written paths go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, InputError, KernelError, WeightsError
from ..model.attention import IMPLEMENTATIONS
from ..outputs import (
    InputFailure,
    InputIdentity,
    Run,
    claim_output_names,
    prepare_output_dir,
    record_failures,
)
from ..result_outputs import Result, result_settings, save_result
from ..results import FORMATS, AnticipationResult, SegmentationResult, activitynet_document
from ..results.labelstudio import labelstudio_tasks

if TYPE_CHECKING:
    from ..predictor import AnticipationWindow, Predictor, PreparedFeatures


def add_compute_arguments(parser: argparse.ArgumentParser, *, threads: bool = False) -> None:
    """--device and --attention-impl (and --threads) for the commands that run the model."""
    parser.add_argument("--device", help="torch device: cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument(
        "--attention-impl",
        default="auto",
        choices=IMPLEMENTATIONS,
        help="dilated attention implementation (default auto: Triton on CUDA, torch on CPU)",
    )
    if threads:
        add_threads_argument(parser)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """--threads: torch's CPU threads for this command."""
    parser.add_argument(
        "--threads", type=int, help="CPU threads for torch (1 is fastest for small models on busy CPUs)"
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Honour --threads when it was given (checked first: an integer from 1 to limits.MAX_THREADS)."""
    if args.threads is not None:
        import torch

        from ..limits import check_threads

        torch.set_num_threads(check_threads(args.threads))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, model and output options of the result-producing subcommands."""
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files to process")
    parser.add_argument(
        "--weights",
        help="checkpoint directory, model.json or .safetensors (default: $ACTFUSION_WEIGHTS, then demo)",
    )
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="print (or with --out, write) this export instead of the table",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="write one file per video into DIR (JSON unless --format)"
    )
    parser.add_argument(
        "--plot", action="store_true", help="also write a timeline PNG per video (into --out or .)"
    )
    parser.add_argument(
        "--html",
        action="store_true",
        help="also write a viewer page per video: the video beside its timeline (into --out or .)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress or file messages on stderr")


def add_local_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of segment and anticipate that `actfusion batch` has no use for (it sizes its workers by
    --cpus-per-worker and extracts on its workers): --threads, --features, --truth."""
    add_threads_argument(parser)
    parser.add_argument(
        "--features",
        type=Path,
        metavar="DIR",
        help="use the features `actfusion extract --out DIR` wrote (checked against each video's content and "
        "the model's feature settings) instead of decoding the videos",
    )
    parser.add_argument(
        "--truth",
        nargs="+",
        type=Path,
        metavar="LABELS",
        help="ground truth drawn under the prediction in --plot and --html: annotation files (CSV, ELAN "
        ".eaf, Label Studio or ActivityNet JSON, a result JSON, MS-TCN labels at the model's feature rate)",
    )


def run_each(
    args: argparse.Namespace,
    command: str,
    answer: Callable[[Predictor, PreparedFeatures], Result],
    window: AnticipationWindow | None = None,
) -> int:
    """Answer every video like `actfusion extract` does: each good one gets its result and its outputs
    (written as soon as that video is done, so an interrupt keeps the finished ones), each failure is one line
    on stderr (and merged into OUT/failures.json); the exit code is 3 if any failed.

    `command` and `window` (anticipate's) go into each output's record (`result_settings`); the window also
    limits extraction to the observed part. `--out` without `--format` writes JSON.
    """
    from ..predictor import Predictor

    if args.out is not None and args.format is None:
        args.format = "json"
    if args.truth is not None and not (args.plot or args.html):
        raise ConfigError(
            "--truth draws the ground truth under the prediction in --plot or --html; add --plot or --html"
        )
    if len(args.videos) > 1 and args.out is None and args.format in ("csv", "mstcn", "eaf"):
        raise ConfigError(
            f"--format {args.format} prints one video at a time; add --out DIR to write one file per video"
        )
    destination = None
    if args.out is not None or args.plot or args.html:
        destination = prepare_output_dir(args.out or Path("."))
    run = Run.begin()
    apply_threads(args)
    predictor = Predictor(args.weights, device=args.device)
    predictor.feature_settings()  # a card that cannot run on video fails here, before any work
    videos = [Path(video) for video in args.videos]
    # Names for every input up front, as `extract` and `batch` claim them, so all three agree.
    names = {} if destination is None else claim_output_names(destination, videos)
    settings = result_settings(command, args.seed, args.format, predictor.card.sha256, window)
    fmt = args.format if args.out is not None else None
    results: list[SegmentationResult | AnticipationResult] = []
    finished: list[Path] = []
    failed: list[InputFailure] = []
    for video in videos:
        try:
            before = _size_and_mtime(video)
            # Features made before (--features DIR, or the per-video cache) are read instead of decoding.
            prepared = predictor.prepare(
                video, progress=not args.quiet, window=window, features_dir=args.features
            )
            identity = InputIdentity.of(video)
            if before is not None and before != (identity.size, identity.mtime_ns):
                raise InputError(f"'{video}' changed while it was read; run again when it is complete")
            result = answer(predictor, prepared)
            if destination is not None:  # written now, so an interrupt later keeps this video's outputs
                drawn = args.plot or args.html
                truth = None if args.truth is None or not drawn else _truth(args.truth, video, result)
                options = (names[video], fmt, args.plot, identity, settings, args.html, truth)
                saved = _saved(video, result, destination, *options)
                for path in saved:
                    note(args, f"wrote {path}")
        except (WeightsError, KernelError):
            raise  # the model or the device, not this video: no other video would fare better
        except Exception as err:  # one bad video must not cost the others their results
            failed.append(InputFailure(video, f"{type(err).__name__}: {err}"))
            print(f"actfusion: {failed[-1].error}", file=sys.stderr)
            continue
        results.append(result)
        finished.append(video)
    if results:
        print_results(results, args)
    if destination is not None and args.out is not None:
        report = record_failures(destination, run, failed, finished)
        if report is not None:
            note(args, f"failures listed in {report}")
    return InputError.exit_code if failed else 0


def _size_and_mtime(path: Path) -> tuple[int, int] | None:
    """The file's size and mtime before it is read, or None where it cannot be read (the decoder says why)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _truth(paths: Sequence[Path], video: Path, result: Result) -> list[str]:
    """`--truth`: the ground truth of `video` on `result`'s frame grid."""
    from ..data.truth import truth_labels

    return truth_labels(paths, video, result.classes, result.fps, result.num_frames)


def _saved(video: Path, result: Result, destination: Path, *options: Any) -> list[Path]:
    """`save_result`, with a failure to write (a full disk, a read-only folder) said as one sentence naming
    the video and the folder (an OSError; `save_result` leaves nothing partial behind)."""
    try:
        return save_result(result, destination, *options)
    except OSError as err:
        raise OSError(
            f"cannot write the outputs of '{video}' into '{destination}': {err.strerror or err} (none of "
            "them was kept; free some space or choose another folder, then run again)"
        ) from err


def print_results(
    results: Sequence[SegmentationResult | AnticipationResult], args: argparse.Namespace
) -> None:
    """Print the results as the arguments ask: an export on stdout (--format without --out), else tables."""
    if args.format is not None and args.out is None:
        print(_stdout_export(results, args.format), end="")
    if args.format is None or args.out is not None:
        print("\n\n".join(result.table() for result in results))


def _stdout_export(results: Sequence[SegmentationResult | AnticipationResult], fmt: str) -> str:
    """One document on stdout: a single export, or for several videos a JSON list / merged ActivityNet /
    Label Studio tasks (csv, mstcn and eaf with several videos need --out, checked in `build_pipeline`)."""
    if len(results) == 1:
        text = results[0].export(fmt)
        return text if text.endswith("\n") else text + "\n"
    if fmt == "activitynet":
        return json.dumps(activitynet_document(results), indent=2) + "\n"
    if fmt == "labelstudio":
        return json.dumps(labelstudio_tasks(results), indent=2) + "\n"
    return "[\n" + ",\n".join(result.to_json() for result in results) + "\n]\n"


def note(args: argparse.Namespace, message: str) -> None:
    """A progress message on stderr, unless --quiet."""
    if not args.quiet:
        print(message, file=sys.stderr)


def report_outcome(report: Any, quiet: bool) -> int:
    """The end of a run over many inputs: its summary on stderr (always when something failed) and where the
    failures are listed; the exit code (3 when any input failed). `report` has `failed`, `summary()` and
    `failures_file`."""
    if report.failed or not quiet:
        print(report.summary(), file=sys.stderr)
    if report.failed:
        print(f"failures listed in {report.failures_file}", file=sys.stderr)
        return InputError.exit_code
    return 0
