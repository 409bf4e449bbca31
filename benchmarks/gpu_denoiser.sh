#!/usr/bin/env bash
# Train the U-Net denoiser (issue 16) on a lent GPU: the training a shared 2-core CPU cannot afford.
# Used on a lent H100 (its image has PyTorch; afmwatch's other packages travel as wheels in .whl/, as for
# gpu_session.sh). The training runs STEPS steps, or as many as fit TRAIN_SECONDS by a short timing run
# first. The model, its report, panel and the log go to $OUT; it is measured on real surfaces afterwards
# (`benchmarks/denoise_real.py`). The shipped model: OUT=... STEPS=18000 PER_KIND=300 bash benchmarks/gpu_denoiser.sh
set -uo pipefail
OUT="${OUT:-$PWD/gpu-out}"
TRAIN_SECONDS="${TRAIN_SECONDS:-300}"
PER_KIND="${PER_KIND:-200}"  # pairs of every surface kind at each size
DEVICE="${DEVICE:-cuda}"
TIME_STEPS="${TIME_STEPS:-60}" MIN_STEPS="${MIN_STEPS:-100}"
# a dry run of the script on any machine: DEVICE=cpu PER_KIND=1 TIME_STEPS=3 MIN_STEPS=5 TRAIN_SECONDS=1
mkdir -p "$OUT" /tmp/gpu
exec > >(tee "$OUT/denoiser.log") 2>&1
if [ -d "${WHEELS:-.whl}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${WHEELS:-.whl}"/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
nproc

# the recipe (models/DENOISERS.md): every synthetic surface kind at 256 and 512 px, half scale too,
# 16 patches of 128 rows x 256 columns (whole rows of a 256-px scan), one-cycle Adam, peak 1e-3
RECIPE=(--arch unet --patch 128 256 --batch-size 16 --half-scale --seed 0 --device "$DEVICE" --no-progress
        --arch-options '{"channels": [16, 32, 64, 96], "blocks": 2}')

# seconds per step, from 60 steps (TIME_STEPS) on a few pairs (a step does not depend on the data's size; the first
# steps' start-up makes the estimate cautious)
# (cuDNN's choice of kernels in the first steps dominates: on the H100 60 steps took 9.9 s, the next 1700
# took 29.6 s; STEPS=N skips the timing)
if [ -n "${STEPS:-}" ]; then
  steps=$STEPS
else
  python3 -m afmwatch train-denoiser --synthetic 2 --workers 1 "${RECIPE[@]}" --steps "$TIME_STEPS" --val-fraction 0 \
    --out /tmp/gpu/time.safetensors > /tmp/gpu/time.log 2>&1 || { tail -20 /tmp/gpu/time.log; exit 1; }
  per_step=$(python3 -c "import json; print(json.load(open('/tmp/gpu/time.report.json'))['seconds'] / $TIME_STEPS)")
  steps=$(python3 -c "print(max($MIN_STEPS, int($TRAIN_SECONDS / (1.15 * $per_step)) // 100 * 100))")
  echo "$per_step s/step -> $steps steps ($(date -u +%T))"
fi

python3 -m afmwatch train-denoiser --synthetic "$PER_KIND" --synthetic-sizes 256 512 --workers "$(nproc)" \
  "${RECIPE[@]}" --steps "$steps" --val-fraction 0.01 --out "$OUT/denoiser-unet.safetensors" > "$OUT/train.log" 2>&1
echo "training: exit $? at $(date -u +%T)"
grep -v '"debug"' "$OUT/train.log" | tail -25
ls -la "$OUT"
echo "done $(date -u +%T)"
