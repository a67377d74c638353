#!/usr/bin/env bash
# Train-speed yardstick: the PyTorch reference ResNet-18 and medjax's, same machine, same batch.
#   tools/compare_torch.sh [DATA.npz] [BATCH] [STEPS]
# PyTorch goes into its own venv (never a medjax dependency). Run nothing else meanwhile:
# on a small CPU any other process changes both numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
npz="${1:-${MEDJAX_DATA_DIR:-../shared/data}/breastmnist.npz}"
batch="${2:-128}"
steps="${3:-20}"
reference="${TORCH_REFERENCE:-../shared/bench/torch_resnet18_reference.py}"
venv="${TORCH_VENV:-/tmp/medjax-torch-venv}"
if [ ! -x "$venv/bin/python" ]; then
  # torch 2.13.0's CPU wheel is the pinned reference; it is built for Python 3.11 here.
  "${TORCH_PYTHON:-python3.11}" -m venv "$venv"
  "$venv/bin/pip" install --quiet torch==2.13.0 numpy
fi
echo "torch:  $("$venv/bin/python" "$reference" "$npz" --steps "$steps" --batch "$batch")"
for dtype in float32 bfloat16; do
  echo "medjax: $(python -m medjax.bench --model resnet18 --image-size 28 --batch-size "$batch" \
    --steps "$steps" --dtype "$dtype")"
done
