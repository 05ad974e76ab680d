#!/usr/bin/env bash
# A session's GPU checks in four calls that each fit a device call (< 9 minutes on one H100/H200);
# a device session has 15 minutes in all, starts included, so run them in the order of what is
# still open: probe (the --full projection with every d measured), full, grid, sims:
#   PART=probe one bucketed group per d of --full (d = 1024 first, up to 300 s at 10 seeds, 3 in the
#              GD tier; then 256, 64, 16 at 25 seeds, 8 in the GD tier: the preset's ratio, while
#              500 s last), cold and warm, and the projection
#              of the whole --full from them (scripts/profile_group.py --bucketed,
#              scripts/device_sims_project.py --probe): the d = 1024 term the slice cannot reach
#   PART=full  a time-boxed, resumable slice of --full with shape buckets and its projection
#              (scripts/device_full.sh; MINUTES, default 5; re-run on the same warm machine to go on)
#   PART=grid  the batched lr grid with seeds and targets in one model, its CUDA peak memory with the
#              member layout and with vmap's built-in rules (scripts/device_grid2.sh)
#   PART=sims  the twolayer 256-problem table, the GD step time against batch size and
#              python -m sims.bench's cold / cached / warm (scripts/device_sims.sh)
# The device tool returns at most 8 files, so every output is packed into $OUT/<PART>.tar.gz.
# Usage: OUT=dir PART=full|probe|grid|sims bash scripts/device_all.sh   (TINY=1 / QUICK=1: CPU smoke test)
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
  probe)
    echo "== one bucketed group of --full per d, then the projection"
    mkdir -p "$W/probe"
    # the costly d first (it decides the projection), at fewer seeds so that it ends in its share
    if [ "${TINY:-0}" = 1 ] || [ "${QUICK:-0}" = 1 ]; then  # CPU smoke test
      DIMS="64 16"; SEEDS_OF() { echo "--seeds 3 --gd-seeds 1 --gd-steps 50"; }
    else
      DIMS="${PROBE_DIMS:-1024 256 64 16}"
      SEEDS_OF() { if [ "$1" -ge 1024 ]; then echo "--seeds 10 --gd-seeds 3"; else echo "--seeds 25 --gd-seeds 8"; fi; }
    fi
    for d in $DIMS; do
      LEFT=$(( ${PROBE_SECONDS:-500} - ($(date +%s) - T0) ))
      [ "$d" -ge 1024 ] && [ "$LEFT" -gt "${BIG_SECONDS:-300}" ] && LEFT="${BIG_SECONDS:-300}"
      [ "$LEFT" -gt 20 ] || { echo "no time left for d = $d" | tee -a "$W/probe/probe.err"; break; }
      echo "-- d = $d (up to $LEFT s)"
      # shellcheck disable=SC2046
      timeout "$LEFT" "$PY" scripts/profile_group.py --d "$d" --n-ratios 2 --families gaussian \
        --k 4 --bucketed --repeat 1 $(SEEDS_OF "$d") 2>> "$W/probe/probe.err" | tee -a "$W/probe/probe.jsonl"
      RC=${PIPESTATUS[0]}; WHY=""; [ "$RC" = 124 ] && WHY=" (cut at $LEFT s: cold + warm take longer)"
      echo "d = $d exit $RC$WHY after $(( $(date +%s) - T0 )) s" | tee -a "$W/probe/probe.err"
    done
    "$PY" scripts/device_sims_project.py --probe "$W/probe/probe.jsonl" --preset full \
      --dims probed --post-s "${POST_S:-62}" 2>> "$W/probe/probe.err" \
      | tee "$W/probe/projection.json"
    tar -czf "$OUT/probe.tar.gz" -C "$W" probe ;;
  grid)
    echo "== realdata: batched lr grid (seeds and targets in one model) vs per-lr loop"
    if [ "${TINY:-0}" = 1 ] || [ "${QUICK:-0}" = 1 ]; then  # CPU smoke test at tiny sizes
      OUT="$W/grid" DEVICE=cpu QUICK=1 bash scripts/device_grid2.sh
    else
      OUT="$W/grid" bash scripts/device_grid2.sh
    fi
    tar -czf "$OUT/grid.tar.gz" -C "$W" grid ;;
  *) echo "PART must be full, probe, grid or sims" >&2; exit 2 ;;
esac
echo "done in $(( $(date +%s) - T0 )) s"
