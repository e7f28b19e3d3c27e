#!/usr/bin/env bash
# Wheels that let benchmarks/device_check.sh run the whole pipeline on the GPU machine, whose python 3.12 has
# torch, triton, numpy, scipy, pillow, torchvision, tqdm, safetensors and matplotlib but no PyAV or
# pytorchvideo. Writes .whl/ at the repository root (git-ignored, about 36 MB): carry it with the device call
# (`carry: [".whl"]`); device_check.sh installs it into a temporary folder when `import av` fails there.
#   benchmarks/wheelhouse.sh                     # for the device's CPython 3.12
#   PYTHON_VERSION=3.11 benchmarks/wheelhouse.sh # another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(${PIP:-.venv/bin/python -m pip})
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
# The versions this project is tested with; the pure-Python ones are what pytorchvideo.models imports.
AV=${AV_VERSION:-18.1.0}
PURE=(pytorchvideo==0.1.5 fvcore==0.1.5.post20221221 iopath==0.1.10 termcolor==3.3.0)

rm -rf .whl
mkdir -p .whl
"${PIP[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PYTHON_VERSION" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "av==$AV"
"${PIP[@]}" wheel --quiet --disable-pip-version-check --no-deps -w .whl "${PURE[@]}"
du -sh .whl
ls .whl
