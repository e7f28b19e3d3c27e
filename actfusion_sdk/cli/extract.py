"""`actfusion extract`: videos -> features/<name>.npy ([2048, T] float32) + features/<name>.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError, InputError
from ._common import report_outcome


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="extract I3D features from videos",
        description=(
            "Extract i3d_r50 features from videos (files or directories) into OUT/features/<name>.npy "
            "([2048, T] float32, MS-TCN layout) with a JSON sidecar. Finished videos are skipped; failures "
            "are merged into OUT/failures.json and the exit code is 3 if any video failed. Videos sharing a "
            "file name get distinct output names (see the README)."
        ),
    )
    add_extract_arguments(parser)
    parser.set_defaults(handler=run)


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, --out and the extractor options of `actfusion extract`."""
    parser.add_argument(
        "inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files or directories of videos"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument(
        "--i3d-weights", type=Path, metavar="FILE", help="Kinetics i3d_r50 weights (.pyth or state_dict file)"
    )
    parser.add_argument(
        "--settings",
        metavar="demo|kinetics|FILE.json",
        help="feature settings: 'demo' (seeded weights), 'kinetics' (needs --i3d-weights), or a JSON file "
        "holding settings or a model card with 'features' (default: kinetics with --i3d-weights, else demo)",
    )
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), help="compute precision (default: the settings')"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def extraction_settings(args: argparse.Namespace):
    """The FeatureSettings named by --settings (demo, kinetics or a JSON file), with --batch-size checked."""
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    return _settings(args.settings, args.i3d_weights is not None)


def _settings(choice: str | None, has_weights: bool):
    from ..features.settings import FeatureSettings

    if choice is None:
        choice = "kinetics" if has_weights else "demo"
    if choice == "demo":
        return FeatureSettings.demo()
    if choice == "kinetics":
        return FeatureSettings.kinetics()
    path = Path(choice)
    if not path.is_file():
        raise ConfigError(f"--settings {choice!r} is neither 'demo', 'kinetics' nor an existing JSON file")
    try:
        data = json.loads(path.read_text())
    except ValueError as err:
        raise ConfigError(f"--settings file '{path}' is not valid JSON: {err}") from err
    if isinstance(data, dict) and isinstance(data.get("features"), dict):
        data = data["features"]  # a model card: use the settings its model was trained with
    return FeatureSettings.from_dict(data)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..features.extract import extract_to_directory, find_videos
    from ..features.i3d import I3DFeatureExtractor
    from ..outputs import prepare_output_dir

    settings = extraction_settings(args)
    prepare_output_dir(args.out)
    videos = find_videos(args.inputs)
    if not videos:
        raise InputError(f"no video files found in {', '.join(args.inputs)}")
    extractor = I3DFeatureExtractor(
        settings,
        weights=args.i3d_weights,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
    )
    with (
        tqdm(total=len(videos), unit="video", disable=args.quiet, file=sys.stderr) as files_bar,
        tqdm(unit="feat", disable=args.quiet, file=sys.stderr, leave=False) as features_bar,
    ):

        def on_video(index: int, video: Path) -> None:
            files_bar.n = index
            files_bar.set_postfix_str(video.name)
            features_bar.reset()

        def progress(done: int, expected: int | None) -> None:
            features_bar.total = max(expected or 0, done)
            features_bar.n = done
            features_bar.refresh()

        report = extract_to_directory(videos, args.out, extractor, on_video=on_video, progress=progress)
        files_bar.n = len(videos)
        files_bar.refresh()
    return report_outcome(report, args.quiet)
