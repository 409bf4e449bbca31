#!/usr/bin/env bash
# One short session on a GPU machine: the CUDA path checked and timed against the CPU on the same machine.
# Used on a lent H100 (its image has PyTorch but not afmwatch's other packages: those travel as wheels in
# .whl/, the real samples in .samples/). Everything it prints and measures goes to $OUT (default ./gpu-out).
#   1. the whole test suite with device "auto" (the daemon and training tests then run on CUDA);
#   2. `afmwatch classify` on the real samples on CPU and on CUDA: same decisions, P(bad) within 1e-3;
#   3. `afmwatch train` of the compact network on 600 synthetic scans, 2 epochs, CPU vs CUDA (wall time);
#   4. the forward limit (every network, CPU and CUDA), and the daemon end to end on CUDA (BENCHMARKS-gpu.md);
#   5. (GPU_STEPS=default) the default model's network trained on CUDA at 256 and 512 px, two seeds each;
#   6. (GPU_STEPS=sizes) the compact network's forward rate at 256 and 384 px, CPU and CUDA.
set -uo pipefail
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT" /tmp/gpu
exec > >(tee "$OUT/session.log") 2>&1
if [ -d .whl/site ]; then  # the wheels unpacked here (NSFopen's 26 MB of examples left out)
  export PYTHONPATH="$PWD/.whl/site:$PWD"
elif [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export PYTHONUNBUFFERED=1 AFMWATCH_SAMPLES="$PWD/.samples"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.cuda.is_available())'
STEPS="${GPU_STEPS:-tests,classify,bench,train}"  # a shorter session: GPU_STEPS=tests,classify
want() { case ",$STEPS," in *",$1,"*) return 0 ;; esac; return 1; }
step() { echo; echo "=== $1 ($(date -u +%T))"; }
timed() {  # timed LABEL COMMAND...: runs the command, prints its wall time
  local label=$1 start end; shift; start=$(date +%s.%N); "$@"; local rc=$?; end=$(date +%s.%N)
  echo "$label: $(python3 -c "print(f'{$end - $start:.1f}')") s (exit $rc)"; return $rc
}

if want tests; then
step "tests, device auto"
# the summary (-rf: the names of failed tests) comes only at the end: leave the suite time to finish
timeout 330 python3 -m pytest -q -p no:cacheprovider -n 14 --timeout 150 -rf 2>&1 | grep -v -i benchmark | tail -40

fi

if want classify; then
step "classify the real samples on cpu and cuda"
for d in cpu cuda; do
  # classify exits 1 when a file fails (thermal.nid holds no image): the JSON is complete all the same
  timed "classify $d" sh -c "python3 -m afmwatch classify --device $d --json '$AFMWATCH_SAMPLES' \
    > /tmp/gpu/classify-$d.json 2>/tmp/gpu/classify-$d.err"
done
python3 - <<'EOF'
import json
cpu, cuda = (json.load(open(f"/tmp/gpu/classify-{d}.json")) for d in ("cpu", "cuda"))
rows = {r["path"]: r for r in cpu}
worst, differ = 0.0, []
for r in cuda:
    c = rows[r["path"]]
    if c.get("decision") != r.get("decision"):
        differ.append(r["path"])
    pc, pg = (c.get("probabilities") or {}).get("bad"), (r.get("probabilities") or {}).get("bad")
    if pc is not None and pg is not None:
        worst = max(worst, abs(pc - pg))
print(f"{len(cuda)} files; decisions that differ: {differ or 'none'}; largest |P(bad) cpu - cuda| = {worst:.2e}")
EOF

cp /tmp/gpu/classify-cuda.json "$OUT/" 2>/dev/null
fi

if want bench; then
step "benchmarks: forward limit cpu and cuda, daemon end to end on cuda"
timeout 90 python3 -m benchmarks.forward_limit --seconds 0.5 --markdown "$OUT/BENCHMARKS-gpu.md" --json /tmp/gpu/fwd.json
timeout 150 python3 -m benchmarks.daemon_e2e --device cuda --files 1000 --limit-files 300 --naive-files 100 --markdown "$OUT/BENCHMARKS-gpu.md" --json /tmp/gpu/e2e-cuda.json
fi

if want train; then
step "train compact, 600 scans, 2 epochs: cpu vs cuda"
timeout 60 python3 -m afmwatch synth classify --out /tmp/gpu/train --n 600 --seed 1 --no-gwy --no-previews --workers 16 >/dev/null
for d in cpu cuda; do
  timed "train $d" timeout 100 python3 -m afmwatch train --data /tmp/gpu/train --out "/tmp/gpu/net-$d.safetensors" \
    --arch compact --resize 256 --image-size 256 --epochs 2 --batch-size 32 --seed 0 --device "$d" 2>&1 | tail -2
done
fi

if want default; then
# The default model's network (make default-model's recipe) trained on CUDA, beside the same recipe at
# 512 px, each with two seeds, four runs at once on the one GPU (DM_RUNS="256:0 512:0" picks size:seed; a run
# may add :epochs:arch:scheduler, e.g. "384:1:20:compact:cosine"). The
# networks come back in $OUT/default.tgz. On a lent H100 (2026-11-27) the 9600 scans took 70 s and a 256-px
# run 109 s of training with four at once; the 512-px runs had not finished after 420 s.
# `models combine` with the metrics model and `evaluate` run on the 2-core machine (models/README.md).
# DM_N, DM_EPOCHS, DM_DEVICE shrink it for a dry run on a CPU.
step "default-model networks on cuda: 256 and 512 px, seeds 0 and 1"
mkdir -p "$OUT/default"
timed "synth ${DM_N:-9600}" sh -c "python3 -m afmwatch synth classify --out /tmp/gpu/dm --n ${DM_N:-9600} --seed 1 \
  --no-gwy --no-previews --workers 16 --accepted-flaws 0.3 \
  --surfaces particles,terraces,grains,fibres,grid,domains,blend,substrate >/dev/null 2>&1"
# the same scans as the 2-core machine draws (the Makefile's DEFAULT_MODEL_SURFACES; compare with build/default-model/train/manifest.json there)
sha256sum /tmp/gpu/dm/manifest.json
runs=()
for run in ${DM_RUNS:-256:0 512:0 256:1 512:1}; do  # size:seed[:epochs[:arch[:scheduler]]]
  IFS=: read -r size seed epochs arch sched <<< "$run"
  epochs=${epochs:-${DM_EPOCHS:-20}} arch=${arch:-compact} sched=${sched:-cosine}  # the recipe's rate (Makefile)
  name="$arch-$size-s$seed-$sched$epochs"
  ( timed "train $name" timeout "${TRAIN_LIMIT:-420}" python3 -m afmwatch train --data /tmp/gpu/dm \
      --out "$OUT/default/net-$name.safetensors" --arch "$arch" --resize "$size" --image-size "$size" --epochs "$epochs" \
      --batch-size 32 --optimizer adam --lr 0.001 --scheduler "$sched" --jitter 0.1 --level-polynomial 2 --seed "$seed" \
      --threads "${DM_THREADS:-4}" --device "${DM_DEVICE:-cuda}" > "$OUT/default/train-$name.log" 2>&1 ) &
  runs+=($!)
done
wait "${runs[@]}"  # these runs only: a bare `wait` also waits for the tee above, which never ends
grep -h "balanced\|train .* px" "$OUT"/default/*.log | tail -20
# the machine returns only a few files: one archive
tar czf "$OUT/default.tgz" -C "$OUT" default && rm -rf "$OUT/default"
fi

if want sizes; then
step "forward rate of the compact network at 256 and 384 px, cpu and cuda"
timeout 120 python3 -m benchmarks.forward_limit --image-sizes 256,384 --networks compact --batch-sizes 1,8,32 \
  --seconds 1 --markdown "$OUT/BENCHMARKS-sizes.md" --json /tmp/gpu/sizes.json
fi

tar czf "$OUT/results.tgz" -C /tmp/gpu --exclude train --exclude dm --exclude '*.safetensors' . 2>/dev/null
echo "done $(date -u +%T)"
