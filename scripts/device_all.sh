#!/usr/bin/env bash
# The lead's one GPU batch (< 9.5 minutes on one H100): twolayer, sims, realdata and datasets checks.
# Writes at most 8 small files under $OUT; work folders go to /tmp. Usage: OUT=dir bash scripts/device_all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-device_out}"; mkdir -p "$OUT"; W=/tmp/devwork; mkdir -p "$W"
PY="${PY:-python3}"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; "$PY" -c \
  "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__)"; } \
  > "$OUT/env.txt" 2>&1
echo "== twolayer"; timeout 90 "$PY" scripts/device_twolayer.py 2>&1 | tee "$OUT/twolayer.jsonl"
echo "== sims"
s=$(date +%s)
timeout 150 "$PY" -m sims.sweep --config configs/sims-gpu.toml --executor serial --quiet --out "$W/sweep" \
  > "$OUT/sims_sweep.txt" 2>&1; echo "rc=$? wall=$(( $(date +%s) - s ))s" >> "$OUT/sims_sweep.txt"
tail -25 "$OUT/sims_sweep.txt"
timeout 70 "$PY" -m sims.bench --loop-sample 100 2>&1 | tail -3 | tee "$OUT/sims_bench.txt"
echo "== realdata"
timeout 100 "$PY" -m realdata.bench throughput --device cuda --batch-size 256 --steps 30 \
  --out "$OUT/realdata_throughput.json" 2>&1 | tail -15
echo "== datasets"
PY="$PY" OUT="$W/ds" timeout 170 bash scripts/device_datasets.sh 2>&1 | tail -15
cp "$W/ds/device_datasets.json" "$OUT/" 2>/dev/null || true
echo "done"
