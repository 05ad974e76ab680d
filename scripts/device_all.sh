#!/usr/bin/env bash
# One GPU batch for a session (< 9.5 minutes on one H100/H200): the batched lr grid of realdata
# (scripts/device_grid.sh) and the sims engine checks (scripts/device_sims.sh). The device tool
# returns at most 8 files, so every JSON/text output is packed into $OUT/device.tar.gz, with the
# console log beside it.  Usage: OUT=dir bash scripts/device_all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-device_out}"; mkdir -p "$OUT"; W="$(mktemp -d /tmp/device_all.XXXXXX)"
export PY="${PY:-python3}"
T0=$(date +%s)
echo "== realdata: batched lr grid vs per-lr loop"
OUT="$W/grid" REPS="${REPS:-1}" GRID_TIMEOUT="${GRID_TIMEOUT:-170}" bash scripts/device_grid.sh
echo "== sims: compile cache, batch curve, twolayer on the device (--full: scripts/device_full.sh)"
OUT="$W/sims" bash scripts/device_sims.sh
tar -czf "$OUT/device.tar.gz" -C "$W" grid sims
echo "done in $(( $(date +%s) - T0 )) s"
