"""`actfusion anticipate VIDEO... --ratio 0.3 | --observed S --horizon S`: long-term action anticipation."""

from __future__ import annotations

import argparse

from ._common import add_common_arguments, add_local_arguments, run_each


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "anticipate",
        help="anticipate the actions that follow an observed part",
        description=(
            "Observe the start of each video and anticipate the actions after it: --ratio observes "
            "that fraction of the video (default 0.3); --observed S --horizon S observes S seconds and "
            "anticipates the next S seconds."
        ),
        epilog="Exit codes: 0 ok, 2 usage, 3 input error, 4 weights error.",
    )
    add_common_arguments(parser)
    add_window_arguments(parser)
    add_local_arguments(parser)
    parser.set_defaults(handler=run)


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """--ratio | --observed S --horizon S: what to observe and how far to anticipate."""
    window = parser.add_mutually_exclusive_group()
    window.add_argument(
        "--ratio", type=float, help="observed fraction of each video, in (0, 1) (default 0.3)"
    )
    window.add_argument("--observed", type=float, metavar="S", help="seconds observed (needs --horizon)")
    parser.add_argument("--horizon", type=float, metavar="S", help="seconds to anticipate after --observed")


def run(args: argparse.Namespace) -> int:
    from ..limits import check_seed
    from ..predictor import AnticipationWindow, VideoFeaturizer

    # Checked before loading the model or decoding, so a bad request fails at once: the window and the seed,
    # then (reading only the model card) whether the window observes at least one feature frame.
    window = AnticipationWindow(args.ratio, args.observed, args.horizon)
    check_seed(args.seed)
    if window.observed is not None:
        window.check_rate(VideoFeaturizer.from_card(args.weights).feature_settings().features_per_second)
    return run_each(
        args,
        "anticipate",
        lambda predictor, prepared: predictor.anticipate(prepared, window, seed=args.seed),
        window,
    )
