#!/usr/bin/env bash
# Train-speed yardstick, like for like: the PyTorch reference ResNet-18 in float32 and under
# bfloat16 autocast, and medjax's in float32 and bfloat16, same machine, same batch.
#   tools/compare_torch.sh [DATA.npz] [BATCH] [STEPS] [ROUNDS]
# ROUNDS > 1 repeats the four in turn (interleaved), for a machine with other load: compare
# each program's best round. PyTorch runs from its own venv (never a medjax dependency):
# TORCH_VENV names an existing one (e.g. the one of tools/torch-reference.txt); without it one
# is made in /tmp. PYTHON is medjax's interpreter. Run nothing else meanwhile: on a small CPU
# any other process changes every number.
set -euo pipefail
cd "$(dirname "$0")/.."
npz="${1:-${MEDJAX_DATA_DIR:-../shared/data}/breastmnist.npz}"
batch="${2:-128}"
steps="${3:-20}"
rounds="${4:-1}"
python="${PYTHON:-python}"
# A copy of ../shared/bench/torch_resnet18_reference.py with an --autocast flag.
reference="${TORCH_REFERENCE:-tools/torch_resnet18_reference.py}"
venv="${TORCH_VENV:-/tmp/medjax-torch-venv}"
if [ ! -x "$venv/bin/python" ]; then
  "${TORCH_PYTHON:-python3.11}" -m venv "$venv"
  "$venv/bin/pip" install --quiet torch==2.14.1 numpy
fi
for _ in $(seq "$rounds"); do
  for autocast in none bfloat16; do
    echo "torch:  $("$venv/bin/python" "$reference" "$npz" --steps "$steps" --batch "$batch" \
      --autocast "$autocast")"
  done
  for dtype in float32 bfloat16; do
    echo "medjax: $("$python" -m medjax.bench --model resnet18 --image-size 28 \
      --batch-size "$batch" --steps "$steps" --dtype "$dtype")"
  done
done
