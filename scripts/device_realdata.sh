#!/usr/bin/env bash
# GPU check for realdata (< 3 minutes): training images/s when tuning block1, head and all of a
# ResNet-26, fp32 vs bf16 autocast + channels_last (batch 256, 30 timed steps per setting).
# Usage (lead's device batch): OUT=/path/to/out bash scripts/device_realdata.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-results/device_realdata}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
test -x "$PY" || PY=python
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
timeout 150 "$PY" -m realdata.bench throughput --device cuda --batch-size 256 --steps 30 \
  --out "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.txt"
# the engine end to end on the GPU (source model pretrained on CPU, fine-tuning on cuda)
timeout 150 "$PY" -m realdata.benchmark --task synthetic --quick --device cuda --variants output \
  gaussian_noise --seeds 0 --no-progress --out "$OUT/synthetic_cuda" 2>&1 | tee "$OUT/synthetic_cuda.txt"
