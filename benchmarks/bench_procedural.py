"""Procedural benchmark: held-out videos -> features -> segment/anticipate with the bundled demo model.

Prints TAS metrics (Acc, Edit, F1@10/25/50) of ActFusion next to its encoder alone, and MoC
(alpha 0.3, beta 0.5) next to the "repeat the last observed step" baseline,
on videos the demo model never saw (seeds from 1000).

    .venv/bin/python benchmarks/bench_procedural.py --videos 24 [--out /tmp/heldout] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness import timed

from actfusion_sdk.demo.heldout import HELDOUT_SEED, heldout_benchmark
from actfusion_sdk.demo.scoring import score_videos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=24, help="held-out videos (default 24)")
    parser.add_argument("--seed", type=int, default=HELDOUT_SEED, help="benchmark seed (default 1000)")
    parser.add_argument("--out", type=Path, default=None, help="video directory (default: temp)")
    parser.add_argument("--weights", default=None, help="model (default: bundled demo)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        videos, seconds = timed(lambda: heldout_benchmark(out, args.videos, seed=args.seed))
        print(f"rendered {len(videos)} held-out videos in {seconds:.0f} s", file=sys.stderr)
        scores, seconds = timed(lambda: score_videos(videos, weights=args.weights, progress=True))
        print(f"extracted and scored in {seconds:.0f} s", file=sys.stderr)
    print(json.dumps(scores.to_dict(), indent=1) if args.json else scores.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
