#!/usr/bin/env bash
# Train the U-Net denoiser (issue 16) on a lent GPU: the training a shared 2-core CPU cannot afford.
# Used on a lent H100 (its image has PyTorch; afmwatch's other packages travel as wheels in .whl/, as for
# gpu_session.sh). The training runs STEPS steps of a one-cycle schedule, ended within TRAIN_SECONDS by the
# trainer's --time-limit (the schedule keeps pace with the clock). INIT=model fine-tunes that model instead
# of starting from random weights. The model, its report, panel and the log go to $OUT; it is measured on
# real surfaces afterwards (`benchmarks/denoise_real.py`).
# The first shipped model: OUT=... STEPS=18000 PER_KIND=300 bash benchmarks/gpu_denoiser.sh (no time limit
# then: TRAIN_SECONDS=0). For how the current one was made, see models/DENOISERS.md.
set -uo pipefail
OUT="${OUT:-$PWD/gpu-out}"
TRAIN_SECONDS="${TRAIN_SECONDS:-300}"  # 0: no time limit
STEPS="${STEPS:-100000}"
PER_KIND="${PER_KIND:-200}"  # pairs of every surface kind at each size
DATA_SEED="${DATA_SEED:-1}"
DEVICE="${DEVICE:-cuda}"
WORKERS="${WORKERS:-$(nproc)}"
INIT="${INIT:-}"
LR="${LR:-0.001}"
ARCH_OPTIONS="${ARCH_OPTIONS:-{\"channels\": [16, 32, 64, 96], \"blocks\": 2\}}"
# a dry run of the script on any machine: DEVICE=cpu PER_KIND=1 STEPS=5 TRAIN_SECONDS=0 OUT=/tmp/dry bash ...
mkdir -p "$OUT"
exec > >(tee "$OUT/denoiser.log") 2>&1
if [ -d "${WHEELS:-.whl}/site" ]; then  # the wheels unpacked here, as for gpu_session.sh
  export PYTHONPATH="${WHEELS:-.whl}/site:$PWD"
elif [ -d "${WHEELS:-.whl}" ]; then
  site="$(mktemp -d)"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${WHEELS:-.whl}"/*.whl || exit 1
  export PYTHONPATH="$site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
echo "cores $(nproc), start $(date -u +%T)"

# the recipe (models/DENOISERS.md): every synthetic surface kind at 256 and 512 px, half scale too,
# 16 patches of 128 rows x 256 columns (whole rows of a 256-px scan), one-cycle Adam
RECIPE=(--arch unet --patch 128 256 --batch-size 16 --half-scale --seed 0 --device "$DEVICE" --no-progress
        --steps "$STEPS" --lr "$LR")
if [ -n "$INIT" ]; then
  RECIPE+=(--init "$INIT")  # its architecture options come from the file
else
  RECIPE+=(--arch-options "$ARCH_OPTIONS")
fi
if [ "$TRAIN_SECONDS" != 0 ]; then
  RECIPE+=(--time-limit "$TRAIN_SECONDS")
fi

python3 -m afmwatch train-denoiser --synthetic "$PER_KIND" --synthetic-seed "$DATA_SEED" --synthetic-sizes 256 512 \
  --workers "$WORKERS" "${RECIPE[@]}" --val-fraction 0.01 --out "$OUT/denoiser-unet.safetensors" > "$OUT/train.log" 2>&1
echo "training: exit $? at $(date -u +%T)"
grep -v '"debug"\|\[debug' "$OUT/train.log" | tail -25
ls -la "$OUT"
echo "done $(date -u +%T)"
