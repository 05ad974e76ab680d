#!/usr/bin/env bash
# GPU check for the batched lr grid (< 4 minutes on one H100/H200): per-lr loop vs batched grid,
# whole fine-tuning runs of a ResNet-26 at the CIFAR-10-C protocol's sizes (1,000 training
# images, 5 lrs, batch 64, 100 val / 900 test images), 3 epochs, 2 interleaved repetitions,
# every trained option; JSON with images/s, ratios, FLOPs per image, the fraction of the device's
# bf16 peak and the projected full-protocol wall time.
# Usage (lead's device batch): OUT=/path/to/out bash scripts/device_grid.sh
# CPU smoke test of the same script: DEVICE=cpu QUICK=1 OUT=/tmp/g bash scripts/device_grid.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-results/device_grid}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
test -x "$PY" || PY=python
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" 2>&1 || true
if [ "${QUICK:-0}" = 1 ]; then
  timeout 550 "$PY" -m realdata.bench grid --device "$DEVICE" --quick --out "$OUT/grid.json" \
    > "$OUT/grid.txt" 2>&1
else
  # warm-up (CUDA context, cuDNN kernel choice) outside the timed runs; result discarded
  timeout 40 "$PY" -m realdata.bench grid --device "$DEVICE" --quick --out "$OUT/warmup.json" \
    > /dev/null 2>&1 || true
  timeout "${GRID_TIMEOUT:-190}" "$PY" -m realdata.bench grid --device "$DEVICE" --epochs "${EPOCHS:-3}" --reps "${REPS:-2}" \
    --out "$OUT/grid.json" > "$OUT/grid.txt" 2>&1
fi
"$PY" - "$OUT/grid.json" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{d['device_name']} bf16={d['bf16_autocast']} epochs={d['epochs']} reps={d['reps']}")
for r in d["rows"]:
    frac = r["batched_peak_fraction"]
    print(f"{r['tuned']:>6}: loop {r['loop_images_per_s']:8.0f} img/s, batched "
          f"{r['batched_images_per_s']:8.0f} img/s, x{r['ratio_batched_over_loop']:.2f}, "
          f"same selection {r['same_selection']}, peak fraction "
          f"{'n/a' if frac is None else f'{frac:.4f}'}")
p = d["projection"]
print(f"full CIFAR-10-C protocol: loop {p['loop_min']:.1f} min, batched {p['batched_min']:.1f} min")
PYEOF
