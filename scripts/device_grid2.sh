#!/usr/bin/env bash
# GPU check of the batched grid with several targets per model (< 4 minutes on one H100/H200).
# Whole fine-tuning runs of a ResNet-26 at the CIFAR-10-C protocol's sizes (1,000 training
# images per target, 5 lrs, batch 64, 100 val / 900 test images, bf16 autocast):
#   grid.json  every trained option: per-lr loop (one target) vs the batched grid training
#              TARGETS targets at once (members = 5 lrs x TARGETS; the protocol has 19
#              corruptions x 3 seeds = 57 targets per option), EPOCHS epochs; images/s, ratio,
#              GFLOP/s, fraction of the card's bf16 peak and of the same-process conv ceiling,
#              peak memory (batched / (loop x members)), projected full-protocol wall time
#              and, per option, the training memory of one step (bytes saved for backward, peak
#              of live storages, CUDA max_memory_allocated of the step; batched / (loop x
#              members)) with the member layout and with vmap's built-in rules (before/after)
#   builtin.json  block1 and all as grid.json, 1 epoch, run with vmap's built-in layout rules
#              (--builtin-layout): the whole run's peak memory before the member layout
#   big.json   block1 and all with BIG_TARGETS targets (the protocol's 57: 285 members), 1 epoch
#   fp32.json  block2, block3, head with one target in fp32 with TF32 off, loop and batched:
#              whether the (lr, epoch) selection agrees when neither side rounds to bf16/TF32
#   summary.txt  the lines printed at the end
# Usage (lead's device batch): OUT=/path/to/out bash scripts/device_grid2.sh
# CPU smoke test (seconds): DEVICE=cpu QUICK=1 OUT=/tmp/g2 bash scripts/device_grid2.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-results/device_grid2}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
test -x "$PY" || PY=python3
T0=$(date +%s)
G=(-m realdata.bench grid --device "$DEVICE")
if [ "${QUICK:-0}" = 1 ]; then
  SIZE=(--n 64 --val 16 --test 16 --depth 8)
  TARGETS=2; BIG_TARGETS=3; EPOCHS=1
else
  SIZE=()
  TARGETS="${TARGETS:-15}"; BIG_TARGETS="${BIG_TARGETS:-57}"; EPOCHS="${EPOCHS:-2}"
  # warm-up (CUDA context, cuDNN kernel choice) outside the timed runs; result discarded
  timeout 15 "$PY" "${G[@]}" --quick --no-memory --targets 2 --out "$OUT/warmup.json" \
    > /dev/null 2>&1 || true
  rm -f "$OUT/warmup.json"
fi
timeout "${GRID_TIMEOUT:-105}" "$PY" "${G[@]}" "${SIZE[@]}" --epochs "$EPOCHS" \
  --targets "$TARGETS" --compare-layout --out "$OUT/grid.json" > "$OUT/grid.log" 2>&1 \
  || echo "grid: exit $?"
timeout "${BUILTIN_TIMEOUT:-35}" "$PY" "${G[@]}" "${SIZE[@]}" --epochs 1 --options block1 all \
  --targets "$TARGETS" --builtin-layout --no-memory --out "$OUT/builtin.json" \
  > "$OUT/builtin.log" 2>&1 || echo "builtin: exit $?"
timeout "${BIG_TIMEOUT:-60}" "$PY" "${G[@]}" "${SIZE[@]}" --epochs 1 --options block1 all \
  --targets "$BIG_TARGETS" --no-memory --out "$OUT/big.json" > "$OUT/big.log" 2>&1 \
  || echo "big: exit $?"
timeout "${FP32_TIMEOUT:-25}" "$PY" "${G[@]}" "${SIZE[@]}" --epochs "$EPOCHS" --fp32 --no-memory \
  --options block2 block3 head --out "$OUT/fp32.json" > "$OUT/fp32.log" 2>&1 \
  || echo "fp32: exit $?"
"$PY" - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
import json, os, sys
out = sys.argv[1]
for name in ("grid", "builtin", "big", "fp32"):
    path = os.path.join(out, f"{name}.json")
    if not os.path.exists(path):
        print(f"{name}: no result (timed out or failed; see {name}.log)")
        continue
    d = json.load(open(path))
    print(f"== {name}: {d['device_name']} bf16={d['bf16_autocast']} epochs={d['epochs']} "
          f"targets={d['targets']} members={d['members']} "
          f"same-process conv ceiling {d['measured_peak_flops']['conv'] / 1e9:.0f} GFLOP/s")
    for r in d["rows"]:
        frac = r["batched_peak_fraction"]
        mem = r.get("batched_peak_over_loop_peak_times_members")
        print(f"{r['tuned']:>6}: loop {r['loop_images_per_s']:8.0f} img/s, batched "
              f"{r['batched_images_per_s']:8.0f} img/s, x{r['ratio_batched_over_loop']:.2f}, "
              f"{r['batched_gflop_per_s']:.0f} GFLOP/s, peak fraction "
              f"{'n/a' if frac is None else f'{frac:.4f}'}, same selection "
              f"{r['same_selection']} {r['selected_loop']} {r['selected_batched']}, groups "
              f"{r['grid']['groups']}, run peak memory ratio {'n/a' if mem is None else f'{mem:.3f}'}")
        for key in ("memory", "memory_builtin_layout"):
            m = r.get(key)
            if m:
                cuda = m.get("cuda_peak_ratio")
                print(f"        step memory ({m['layout']}, {m['members']} members), batched / "
                      f"(loop x members): saved {m['saved_ratio']:.3f}, live peak "
                      f"{m['peak_ratio']:.3f}, CUDA peak "
                      f"{'n/a' if cuda is None else f'{cuda:.3f}'}")
    p = d["projection"]
    print(f"   full CIFAR-10-C protocol from the rates of {p['options_measured']}: loop "
          f"{p['loop_min']:.1f} min, batched {p['batched_min']:.1f} min")
PYEOF
echo "done in $(( $(date +%s) - T0 )) s"
