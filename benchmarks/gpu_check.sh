#!/usr/bin/env bash
# GPU check on one CUDA device, in under 8 minutes:
#   1. the meta-step benchmark at 256 px, full width: images/s and peak memory, fp32 vs bf16 autocast;
#   2. a 2-epoch full-size trial (Ray Train, NCCL, bf16, pinned host-to-device copies) on a few hundred
#      synthetic 256 px images, with its records.
# Usage (on the GPU machine, in a checkout with the project installed):
#   bash benchmarks/gpu_check.sh [OUT_DIR]          PYTHON=path/to/python to choose the interpreter
# Prints one JSON line per measurement and the trial's per-epoch summary; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${1:-${OUT:-/tmp/anrl-gpu-check}}
mkdir -p "$OUT"
export RAY_USAGE_STATS_ENABLED=0 RAY_DATA_DISABLE_PROGRESS_BARS=1 WANDB_MODE=offline
"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('cuda', ok, torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0) if ok else ''); sys.exit(0 if ok else 3)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

start=$(date +%s)
# 1. meta step, 256 px, full width (the paper's network), B = 5 per domain and class, 3 domains
for prec in fp32 bf16; do
  flag=""; [ "$prec" = bf16 ] && flag="--bf16"
  timeout 150 "$PY" benchmarks/meta_step.py --img-size 256 --width 1.0 --batch-per-class 5 --domains 3 \
    --mode maml --device cuda $flag --steps 10 --warmup 3 | tee -a "$OUT/meta_step.jsonl"
done

# 2. a 2-epoch full-size trial on a small synthetic benchmark at 256 px (~600 crops)
DATA="$OUT/synthetic256"
[ -d "$DATA/M" ] || timeout 180 "$PY" -m anrl_ray.cli convert synthetic --out "$DATA" --subjects 8 --img-size 256 \
  --videos-per-subject 2 --frames-per-video 3
timeout 300 "$PY" -m anrl_ray.cli train --protocol OCI_M --data "$DATA" --profile full --out "$OUT/trial" \
  epochs=2 num_workers=1 gpus_per_worker=1 cpus_per_worker=4 max_steps_per_epoch=20 eval_batch_size=32 \
  | tee "$OUT/trial.json"
"$PY" - "$OUT/trial/run/records.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind", "epoch") == "epoch":
        print(json.dumps({"epoch": r["epoch"], "train_seconds": r["train_seconds"], "epoch_seconds": r["epoch_seconds"],
                          "val_auc": r["val"]["auc"], "target_auc": r["target_metrics"]["auc"],
                          "bf16": r["config"]["bf16"], "device": "cuda", "workers": r["workers"]}))
PY
echo "gpu_check: done in $(( $(date +%s) - start )) s; results in $OUT"
