#!/usr/bin/env bash
# The one prepared GPU check of issue 3 (about 10 minutes at most, installs nothing). Runs the project from the
# source tree with the machine's own python3, torch and triton; tables go to $OUT (a temporary folder if unset):
#   1. Triton correctness fp32/bf16 with gradients + attention speed (bench_attention.py) and peak memory
#      (bench_attention_memory.py), triton vs reference, B=4, C=256, L=16384, K=5, d=1..2048, fp32 -> attention.md
#   2. the same speed and memory in bf16 (triton vs reference)                                   -> attention.md
#   3. whole-model GPU segmentation timing, breakfast preset, 48 classes, per attention implementation and
#      with the DDIM loop replayed from CUDA graphs (triton+graphs)                               -> model.md
#   4. triton vs torch.compile(reference) vs FlexAttention, d=1,2048, speed and memory           -> attention.md
#   5. launch-configuration timings (tune_attention.py)                                         -> attention_tune.md
#   6. `actfusion selfcheck` of the official test vectors on the GPU with Triton, eager and with CUDA graphs
#      (the vectors: $ACTFUSION_TESTVECTORS, else the repository's tests/data/official)
#   7. the whole pipeline on the GPU: decode + I3D + model on a generated 60 s video (bench_pipeline.py)
#      -> pipeline.md. The device's python has torch and triton but no PyAV or pytorchvideo: build the
#      wheelhouse first (benchmarks/wheelhouse.sh writes .whl/, about 36 MB) and carry `.whl`; this script
#      installs it into a temporary folder when `import av, pytorchvideo` fails.
#   8. the tests that need a GPU (CUDA-graph sampling equal to eager, torch and compiled Triton kernels), with
#      pytest on the staged tree and TRITON_INTERPRET=0 (the suite's default is the interpreter) -> gputests.log
#   9. MS-TCN features (issue 30): seconds of work per second of 320x240 15 fps video for the RGB and flow
#      Inception-I3D on the GPU (batch 8) and TV-L1 on the CPU (OpenCV contrib, when installed; the carried
#      wheelhouse may lack it) -> mstcn.md. Target: both streams >= 10x real time; TV-L1 bounds the whole.
# Each step has its own time limit; a step that fails or runs out is reported and the next one still runs.
#
#   benchmarks/device_check.sh            # on the GPU machine
#   benchmarks/device_check.sh --dry-run  # on a CPU machine: every step at toy sizes (GPU-only parts skipped)
#   STEPS=model,tune benchmarks/device_check.sh   # only some steps:
#                                                 # attention,bf16,model,compare,tune,selfcheck,pipeline,mstcn,gputests
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
fi
if [[ -z "${PYTHON:-}" ]]; then
    PYTHON=python3
    if [[ $DRY_RUN == 1 && -x "$ROOT/.venv/bin/python" ]]; then
        PYTHON="$ROOT/.venv/bin/python"
    fi
fi
OUT=${OUT:-$(mktemp -d)}
export OUT PYTHONUNBUFFERED=1

# The distribution maps kernels/ to actfusion_sdk.kernels (pyproject package-dir); build that layout by copying.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -r "$ROOT/actfusion_sdk" "$STAGE/actfusion_sdk"
cp -r "$ROOT/kernels" "$STAGE/actfusion_sdk/kernels"
cp -r "$ROOT/weights" "$STAGE/actfusion_sdk/weights"
export PYTHONPATH="$STAGE"
cd "$STAGE"  # `python -` / `python -c` put the working directory first on sys.path: make it the staged tree
STEPS=",environment,${STEPS:-attention,bf16,model,compare,tune,selfcheck,pipeline,mstcn,gputests},"

FAILED=()
step() {  # step KEY NAME SECONDS COMMAND...
    local key=$1 name=$2 limit=$3
    shift 3
    if [[ $STEPS != *",$key,"* ]]; then
        echo "=== $name: not selected (STEPS)"
        return
    fi
    echo "=== $name (limit ${limit}s)"
    local start=$SECONDS
    timeout "$limit" "$@"
    local status=$?
    echo "=== $name: exit $status after $((SECONDS - start))s"
    if [[ $status != 0 ]]; then
        FAILED+=("$name (exit $status)")
    fi
}

SPEED=("$PYTHON" "$ROOT/benchmarks/bench_attention.py")
MEMORY=("$PYTHON" "$ROOT/benchmarks/bench_attention_memory.py")
TUNE=("$PYTHON" "$ROOT/benchmarks/tune_attention.py")
if [[ $DRY_RUN == 1 ]]; then
    SIZE=(--batch 1 --channels 64 --length 2048 --dilations 1,64,2048)
    step environment "environment" 60 "$PYTHON" -c "import sys, torch, triton; print(sys.version, torch.__version__, triton.__version__)"
    step attention "offline sm_90a compile" 300 "${TUNE[@]}" --compile-report
    step attention "interpreter correctness + torch vs reference" 600 "${SPEED[@]}" --device cpu "${SIZE[@]}" --repeats 1
    step attention "peak RSS torch vs reference" 120 "${MEMORY[@]}" --device cpu "${SIZE[@]}"
    MODEL_ARGS=(--device cpu --lengths 48 --impls torch,reference)
else
    SIZE=(--batch 4 --channels 256 --length 16384 --kernel-size 5)
    nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem --format=csv
    step environment "environment" 30 "$PYTHON" -c "import sys, torch, triton; print(sys.version, torch.__version__, triton.__version__)"
    step attention "correctness + benchmark fp32" 150 "${SPEED[@]}" --device cuda "${SIZE[@]}" --impls triton,reference
    step attention "peak memory fp32" 60 "${MEMORY[@]}" --device cuda "${SIZE[@]}" --impls triton,reference
    step bf16 "benchmark bf16" 45 "${SPEED[@]}" --device cuda "${SIZE[@]}" --no-check --dtype bf16 \
        --impls triton,reference
    step bf16 "peak memory bf16" 45 "${MEMORY[@]}" --device cuda "${SIZE[@]}" --dtype bf16 --impls triton,reference
    MODEL_ARGS=(--device cuda --lengths 2000,10000 --impls triton,triton+graphs,torch,reference)
fi

step model "whole-model segmentation" 130 "$PYTHON" - "${MODEL_ARGS[@]}" <<'EOF'
"""Whole-model segmentation time per attention implementation (breakfast preset, random weights/features);
an implementation suffixed +graphs replays the DDIM decoder from CUDA graphs."""
import argparse
import os
import time

import torch

from actfusion_sdk.model.actfusion import ActFusion
from actfusion_sdk.model.config import PRESET_CLASSES, preset
from actfusion_sdk.model.inference import segment

parser = argparse.ArgumentParser()
parser.add_argument("--device")
parser.add_argument("--lengths")
parser.add_argument("--impls")
args = parser.parse_args()
torch.manual_seed(0)
model = ActFusion(preset("breakfast"), PRESET_CLASSES["breakfast"]).to(args.device).eval()


def synchronize() -> None:
    if args.device == "cuda":
        torch.cuda.synchronize()


name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
lines = [
    f"### Whole-model segmentation on {name}: breakfast preset, 48 classes, fp32, random weights and features",
    "",
    "| frames | attention | first call s | second call s | labels equal to first impl | max prob diff |",
    "|---|---|---|---|---|---|",
]
print("\n".join(lines), flush=True)
for length in [int(n) for n in args.lengths.split(",")]:
    features = torch.randn(model.config.encoder.input_dim, length, generator=torch.Generator().manual_seed(1))
    first = None
    for variant in args.impls.split(","):
        impl, _, graphs = variant.partition("+")
        model.attention_impl = impl
        times = []
        for _ in range(2):  # the first call includes kernel compilation (and graph capture)
            synchronize()
            start = time.perf_counter()
            prediction = segment(model, features, seed=0, cuda_graphs=graphs == "graphs")
            synchronize()
            times.append(time.perf_counter() - start)
        first = prediction if first is None else first
        agreement = float((prediction.labels == first.labels).mean())
        gap = float(abs(prediction.probs - first.probs).max())
        lines.append(
            f"| {length} | {variant} | {times[0]:.2f} | {times[1]:.2f} | {agreement:.4f} | {gap:.1e} |"
        )
        print(lines[-1], flush=True)
with open(os.path.join(os.environ["OUT"], "model.md"), "a") as handle:
    handle.write("\n".join(lines) + "\n\n")
EOF

if [[ $DRY_RUN == 0 ]]; then
    step compare "compiled reference + FlexAttention" 110 "${SPEED[@]}" --device cuda "${SIZE[@]}" --no-check \
        --impls triton,compiled,flex --dilations 1,2048
    step compare "compiled reference + FlexAttention, peak memory" 90 "${MEMORY[@]}" --device cuda "${SIZE[@]}" \
        --impls triton,compiled,flex --dilations 1,2048
    step tune "launch configurations" 150 "${TUNE[@]}" "${SIZE[@]}" --dilations 1,2048
fi

VECTORS=${ACTFUSION_TESTVECTORS:-$ROOT/tests/data/official}
if [[ -f "$VECTORS/model_50salads.pt" ]]; then
    SELFCHECK=(--device cuda --attention-impl triton)
    if [[ $DRY_RUN == 1 ]]; then
        SELFCHECK=(--device cpu --attention-impl torch)
    fi
    step selfcheck "selfcheck of the official vectors" 60 "$PYTHON" -c \
        "import sys; from actfusion_sdk.cli import main; sys.exit(main(sys.argv[1:]))" selfcheck "${SELFCHECK[@]}" \
        "$VECTORS/attention_layers.pt" "$VECTORS/model_50salads.pt"
    if [[ $DRY_RUN == 0 ]]; then
        step selfcheck "selfcheck of the official model vectors, DDIM from CUDA graphs" 60 "$PYTHON" -c \
            "import sys; from actfusion_sdk.cli import main; sys.exit(main(sys.argv[1:]))" selfcheck \
            "${SELFCHECK[@]}" --cuda-graphs "$VECTORS/model_50salads.pt"
    fi
else
    echo "=== selfcheck of the official vectors: skipped, no test vectors at $VECTORS (set ACTFUSION_TESTVECTORS)"
fi

# The whole pipeline and the tests' fixtures need PyAV and pytorchvideo: install the carried wheelhouse where
# they are missing.
if [[ $STEPS == *",pipeline,"* || $STEPS == *",gputests,"* ]] && ! "$PYTHON" -c "import av, pytorchvideo" 2>/dev/null
then
    if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$STAGE/site" "$ROOT"/.whl/*.whl && export PYTHONPATH="$STAGE:$STAGE/site"
    else
        echo "=== pipeline: no PyAV/pytorchvideo and no wheelhouse at $ROOT/.whl (run benchmarks/wheelhouse.sh)"
    fi
fi
PIPELINE=(--device cuda --seconds 60 --threads 8)
if [[ $DRY_RUN == 1 ]]; then
    PIPELINE=(--device cpu --seconds 8)
fi
step pipeline "whole pipeline: decode + I3D + model" 150 bash -c \
    'set -o pipefail; "$@" | tee -a "$OUT/pipeline.md"' _ "$PYTHON" "$ROOT/benchmarks/bench_pipeline.py" "${PIPELINE[@]}"

MSTCN=(--device cuda --batch 8 --repeats 3)
if [[ $DRY_RUN == 1 ]]; then
    MSTCN=(--device cpu --quick)
fi
step mstcn "MS-TCN features: I3D streams + TV-L1" 120 bash -c \
    'set -o pipefail; "$@" | tee -a "$OUT/mstcn.md"' _ "$PYTHON" "$ROOT/benchmarks/bench_mstcn.py" "${MSTCN[@]}"

# pytest on a copy of the tests beside the staged package (from $ROOT, the source tree would shadow it).
cp -r "$ROOT/tests" "$ROOT/pyproject.toml" "$STAGE/"
step gputests "tests that need a GPU" 150 bash -c \
    'set -o pipefail; TRITON_INTERPRET=0 "$@" 2>&1 | tee "$OUT/gputests.log"' _ \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_acceleration.py

echo "=== tables in $OUT:"
ls -l "$OUT"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    printf '=== FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
echo "=== all steps passed"
