#!/usr/bin/env bash
# medjax on one GPU, in one command: ResNet-50 and ViT-B/16 at 224 px in bfloat16 at the largest
# batch that fits (images/s, MFU, the step's host and device parts), the input path's images/s
# from pixels held in memory (float32, as the data cache holds them after preprocessing, and
# uint8, a quarter of the bytes), and the same two models in PyTorch (torch.compile,
# channels-last, bf16 autocast) where torch is installed.
#
#   tools/gpu_bench.sh [OUTDIR]     on the GPU machine; OUTDIR defaults to $OUT, else gpu_bench_out
#   tools/gpu_bench.sh --wheels     here, with pip's index reachable: medjax's dependencies that a
#                                   CUDA image without them lacks, as wheels in .whl/ (gitignored);
#                                   carry .whl with the tree and the run installs them first
#   SMALL=1 tools/gpu_bench.sh DIR  a dry run on a CPU at 32 px, a few steps (proves the script)
#
# PY is the Python for medjax (default python3), TORCH_PY the one for PyTorch (default PY).
# Writes OUTDIR/jax.jsonl, input.jsonl, torch.jsonl (one JSON line per measurement, the fields of
# python -m medjax.bench), OUTDIR/summary.md (the table), OUTDIR/log.txt (everything), and prints
# the table last. Budget: BUDGET_S seconds (default 480) for all parts, compilation included;
# each part gets at most its share of what is left, and a part cut short says so in the log.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
PY=${PY:-python3}
TORCH_PY=${TORCH_PY:-$PY}
WHEELS=(grain==0.2.18 array-record==0.8.6 ml-collections==1.1.0 dm-pix==0.4.5 nibabel==5.4.2
  pydicom==3.0.2 portpicker==1.6.0 googleapis-common-protos==1.76.0)

if [[ "${1:-}" == "--wheels" ]]; then
  # Pure-Python or manylinux wheels for CPython 3.12 on x86-64, none of their dependencies:
  # the CUDA image already has jax, flax, optax, orbax, numpy, scipy, scikit-learn and the rest.
  exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
fi

OUTDIR=${1:-${OUT:-gpu_bench_out}}
mkdir -p "$OUTDIR" || exit 1
OUTDIR=$(cd "$OUTDIR" && pwd)
LOG=$OUTDIR/log.txt
: >"$LOG"
: >"$OUTDIR/jax.jsonl"
: >"$OUTDIR/input.jsonl"
: >"$OUTDIR/torch.jsonl"
say() { echo "gpu_bench: $*" | tee -a "$LOG" >&2; }
START=$(date +%s)
# At most $1 seconds, and never past the budget.
allow() {
  local left=$((BUDGET_S - ($(date +%s) - START)))
  ((left < $1)) && echo $((left > 0 ? left : 1)) || echo "$1"
}

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/medjax-site .whl/*.whl >>"$LOG" 2>&1 || say "installing .whl/ failed (see log)"
  export PYTHONPATH=/tmp/medjax-site
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# The search for the largest batch needs the memory JAX leaves to others by default (25%).
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}

# Seconds: the whole run, and at most per JAX model, per input dtype, per PyTorch model. The
# batch search compiles about three times (medjax.perf.max_batch jumps to the batch the first
# step's memory predicts), and ResNet-50's step takes tens of seconds to compile on a GPU.
if [[ -n "${SMALL:-}" ]]; then
  SIZE=32 START_B=2 CAP_B=4 STEPS=2 WARMUP=1 TORCH_FLAGS=(--no-compile) WANT=cpu DEFAULT_B=4
  BUDGET_S=${BUDGET_S:-1800} JAX_S=600 INPUT_S=120 TORCH_S=300
else
  SIZE=224 START_B=128 CAP_B=2048 STEPS=20 WARMUP=3 TORCH_FLAGS=() WANT=gpu DEFAULT_B=256
  BUDGET_S=${BUDGET_S:-480} JAX_S=180 INPUT_S=40 TORCH_S=120
fi

backend=$("$PY" -c "import jax; print(jax.default_backend())" 2>>"$LOG")
if [[ "$backend" != "$WANT" ]]; then
  say "JAX's backend is '${backend:-none}', not $WANT: install a CUDA jax (pip install -U 'jax[cuda12]' or the image's jax-cuda plugin), or SMALL=1 for a CPU dry run"
  exit 2
fi
if ! "$PY" -c "import medjax.bench" 2>>"$LOG"; then
  say "medjax does not import here (the missing module is at the end of $LOG): run tools/gpu_bench.sh --wheels where pip works and carry .whl with the tree"
  exit 2
fi
{
  "$PY" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
} >>"$LOG" 2>&1

jax_bench() {  # model, extra flags...
  local model=$1
  shift
  say "jax $model: --batch-size max from $START_B to $CAP_B, $STEPS steps"
  timeout "$(allow $JAX_S)" "$PY" -m medjax.bench --model "$model" --image-size "$SIZE" --channels 3 \
    --dtype bfloat16 --batch-size max --batch-start "$START_B" --batch-cap "$CAP_B" \
    --steps "$STEPS" --warmup "$WARMUP" --skip-eval "$@" >>"$OUTDIR/jax.jsonl" 2>>"$LOG" ||
    say "jax $model: exit $? (124 = out of budget)"
}
jax_bench resnet50
jax_bench vit_b  # patch 16 is medjax's default: ViT-B/16

# A field of the last JSON line of a file, or $3.
field() { "$PY" -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(next((x[sys.argv[2]] for x in r[::-1] if x.get('model') == sys.argv[3]), sys.argv[4]))" "$@"; }
batch=$(field "$OUTDIR/jax.jsonl" batch_size resnet50 "$DEFAULT_B")
rate=$(field "$OUTDIR/jax.jsonl" train_images_per_s resnet50 "")
for dtype in uint8 float32; do
  say "input path: $dtype pixels, batch $batch, against the ResNet-50 step's ${rate:-unmeasured} images/s"
  timeout "$(allow $INPUT_S)" "$PY" -m medjax.bench --input-pipeline --image-size "$SIZE" --channels 3 \
    --batch-size "$batch" --input-dtype "$dtype" --steps "$STEPS" --warmup "$WARMUP" \
    ${rate:+--step-images-per-s "$rate"} >>"$OUTDIR/input.jsonl" 2>>"$LOG" ||
    say "input path $dtype: exit $?"
done

if "$TORCH_PY" -c "import torch, torchvision; assert torch.cuda.is_available() or '$WANT' == 'cpu'" 2>>"$LOG"; then
  for model in resnet50:resnet50 vit_b_16:vit_b; do
    b=$(field "$OUTDIR/jax.jsonl" batch_size "${model#*:}" "$DEFAULT_B")
    say "torch ${model%%:*}: batch $b (medjax's), channels-last, bf16 ${TORCH_FLAGS[*]:-torch.compile}"
    timeout "$(allow $TORCH_S)" "$TORCH_PY" tools/torch_gpu_bench.py --model "${model%%:*}" --batch-size "$b" \
      --image-size "$SIZE" --steps "$STEPS" --warmup "$WARMUP" "${TORCH_FLAGS[@]}" \
      >>"$OUTDIR/torch.jsonl" 2>>"$LOG" || say "torch ${model%%:*}: exit $?"
  done
else
  say "torch: skipped, no torch with torchvision and CUDA in $TORCH_PY (see log); TORCH_PY names another Python"
fi

"$PY" tools/gpu_bench_summary.py "$OUTDIR" "$(($(date +%s) - START))" | tee "$OUTDIR/summary.md"
