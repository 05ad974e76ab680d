#!/usr/bin/env bash
# The mechanism experiments at the full protocol on one GPU (< 4 minutes; each step is time-boxed
# and resumable, so a rerun into the same work folder continues where it stopped):
# the noise-in-one-block matrix (--task noise-in-block --full, 3 seeds) and the accuracy against
# target-set size (1..50 per class, fog and the label permutation, 3 seeds), then their tables.
# Writes noise_in_block.md, size_curve.md, levels.md and the two PNGs under $OUT.
# Usage: OUT=dir bash scripts/device_mech.sh   (CPU smoke test: DEVICE=cpu PRESET=--quick
#        CKPT=path/to/synthetic-source.pt EXTRA="--epochs 1 --lrs 0.1 --seeds 0" SIZES="1 2")
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-device_out}"; mkdir -p "$OUT"; W="${WORK:-/tmp/devmech}"; mkdir -p "$W"
PY="${PY:-python3}"; DEVICE="${DEVICE:-cuda}"; PRESET="${PRESET:---full}"
EXTRA="${EXTRA:---seeds 0 1 2}"; SIZES="${SIZES:-1 2 5 10 20 50}"
CK=(); [ -n "${CKPT:-}" ] && CK=(--checkpoint "$CKPT")
echo "== noise in one block"
# shellcheck disable=SC2086
timeout 130 "$PY" -m realdata.benchmark --task noise-in-block "$PRESET" --methods --device "$DEVICE" \
  "${CK[@]}" $EXTRA --out "$W/noise" --no-progress 2>&1 | tail -12
[ -z "${CKPT:-}" ] && CKPT=$(ls "$W"/noise/checkpoints/synthetic-source-*.pt 2>/dev/null | head -1)
"$PY" -m paper_figures realdata --results "$W/noise" --figure noise --out "$OUT" | tail -1
echo "== accuracy against target-set size"
# shellcheck disable=SC2086
timeout 80 "$PY" -m realdata.benchmark --task synthetic "$PRESET" --methods --device "$DEVICE" \
  --checkpoint "$CKPT" --variants fog output --tuned block1 block2 block3 head all \
  --train-n-grid $SIZES $EXTRA --out "$W/size" --no-progress 2>&1 | tail -4
"$PY" -m paper_figures realdata --results "$W/size" --figure size --out "$OUT" | tail -1
echo "== shift levels"
"$PY" -m realdata.experiments.levels --checkpoint "$CKPT" --out "$W/levels" --variants all \
  > /dev/null && cp "$W/levels/levels.md" "$OUT/"
rm -f "$OUT"/*.pdf
cat "$OUT"/noise_in_block.md "$OUT"/size_curve.md 2>/dev/null
echo "done"
