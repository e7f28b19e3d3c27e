#!/usr/bin/env bash
# Retrain the bundled demo model (weights/demo/) from nothing, with the recipe in its model card:
#   1. render the 60 videos of `make-benchmark --videos 60 --seed 0`, all in the training split
#      (listed in name order, as in the shipped model's run, so the same 12 videos are carved for validation);
#   2. extract their features with the seeded demo extractor;
#   3. `actfusion train --config weights/demo/model.json` (the card's configuration and recipe): 48 videos train,
#      12 validate every 25 epochs, seed 0, one thread; the selected model lands in WORKDIR/run/model.
#
#   benchmarks/train_demo.sh [WORKDIR]               # default WORKDIR: demo_training in the checkout (about 70 minutes on 2 cores)
#   VIDEOS=5 EPOCHS=2 benchmarks/train_demo.sh DIR   # a quick run through every step
# Then score the result on held-out videos:
#   .venv/bin/python benchmarks/bench_procedural.py --videos 20 --weights WORKDIR/run/model
set -euo pipefail
WORK=$(realpath -m "${1:-$(dirname "$0")/../demo_training}")  # relative to where it is called from
cd "$(dirname "$0")/.."
VIDEOS=${VIDEOS:-60}
EPOCHS=${EPOCHS:-450}
ACTFUSION=${ACTFUSION:-.venv/bin/actfusion}
if [[ ! -x $ACTFUSION ]]; then
    echo "error: $ACTFUSION not found; run 'make test' or 'make demo' once to set up .venv" >&2
    exit 2
fi

DATA=$WORK/data
if [[ ! -f $DATA/benchmark.json ]]; then
    "$ACTFUSION" make-benchmark --out "$DATA" --videos "$VIDEOS" --seed 0 --test-fraction 0
    sort -o "$DATA/splits/train.split1.bundle" "$DATA/splits/train.split1.bundle"
fi
# Finished videos are skipped, so an interrupted extraction continues where it stopped.
"$ACTFUSION" extract "$DATA/videos" --out "$DATA" --settings demo
OMP_NUM_THREADS=1 "$ACTFUSION" train --data "$DATA" --config weights/demo/model.json --out "$WORK/run" \
    --name demo --threads 1 --val-fraction 0.2 --epochs "$EPOCHS" --eval-every 25 --resume
