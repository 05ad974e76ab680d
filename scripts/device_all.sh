#!/usr/bin/env bash
# A session's GPU checks in three calls that each fit a device call (< 9 minutes on one H100/H200),
# in the order of what is still open (a device session has 15 minutes in all, starts included):
#   PART=full  a time-boxed, resumable slice of --full with shape buckets and its projection
#              (scripts/device_full.sh; MINUTES, default 5; re-run on the same warm machine to go on)
#   PART=grid  the batched lr grid with seeds and targets in one model, its CUDA peak memory with the
#              member layout and with vmap's built-in rules (scripts/device_grid2.sh)
#   PART=sims  the twolayer 256-problem table, the GD step time against batch size and
#              python -m sims.bench's cold / cached / warm (scripts/device_sims.sh)
# The device tool returns at most 8 files, so every output is packed into $OUT/<PART>.tar.gz.
# Usage: OUT=dir PART=full|grid|sims bash scripts/device_all.sh   (TINY=1 / QUICK=1: CPU smoke test)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-device_out}"; mkdir -p "$OUT"; W="$(mktemp -d /tmp/device_all.XXXXXX)"
export PY="${PY:-python3}"
T0=$(date +%s)
case "${PART:-sims}" in
  sims)
    echo "== twolayer on the device"
    mkdir -p "$W/sims"
    timeout 90 "$PY" scripts/device_twolayer.py --problems "${TL_PROBLEMS:-256}" --steps 2000 \
      --unrolls "${UNROLLS:-default}" --chunks auto 2> "$W/sims/tl.err" | tee "$W/sims/twolayer.jsonl"
    echo "== batch curve and bench ($(( $(date +%s) - T0 )) s)"
    OUT="$W/sims" SKIP_TWOLAYER=1 bash scripts/device_sims.sh
    tar -czf "$OUT/sims.tar.gz" -C "$W" sims ;;
  full)
    echo "== --full slice with shape buckets"
    OUT="$W/full" MINUTES="${MINUTES:-5}" RESULTS="${RESULTS:-/tmp/sims-full}" bash scripts/device_full.sh
    tar -czf "$OUT/full.tar.gz" -C "$W" full ;;
  grid)
    echo "== realdata: batched lr grid (seeds and targets in one model) vs per-lr loop"
    if [ "${TINY:-0}" = 1 ] || [ "${QUICK:-0}" = 1 ]; then  # CPU smoke test at tiny sizes
      OUT="$W/grid" DEVICE=cpu QUICK=1 bash scripts/device_grid2.sh
    else
      OUT="$W/grid" bash scripts/device_grid2.sh
    fi
    tar -czf "$OUT/grid.tar.gz" -C "$W" grid ;;
  *) echo "PART must be full, grid or sims" >&2; exit 2 ;;
esac
echo "done in $(( $(date +%s) - T0 )) s"
