#!/usr/bin/env bash
# `python -m sims.sweep --full` on one GPU for about MINUTES (default 5) minutes, then judge what is
# stored and project the whole --full wall time from it (a projection, not a measurement).
# Resumable: RESULTS (default /tmp/sims-full) keeps the records, so running this again on the same
# machine goes on where it stopped; once every shape group is stored the sweep writes its verdicts.
# What it runs: the slice SLICE of --full (default 1/11: every 11th shape group, a spread over
# d = 16 ... 1024, k and n with about 3 groups per shape bucket, so the projection can tell the
# compilation of a bucket's programs from a group's own cost), up to MINUTES minutes (--max-minutes:
# no group starts after that; one already running finishes), then the rest of --full in order while
# time is left (TOTAL_MINUTES). --full pads every group to one shape bucket per (d, family)
# (shape_buckets = [2.0]); SWEEP_FLAGS adds sweep flags, e.g. SWEEP_FLAGS=--shape-buckets= for none
# (records do not depend on it, so one RESULTS folder may mix both).
# Files under $OUT (few and small):
#   full.json        environment, sweep exit codes and progress lines, the verdicts of the stored
#                    complete shape groups (labelled partial unless the sweep finished), the projection
#   full_small.tgz   config.json, verdicts.json (if complete), summary.csv, and runs.jsonl.gz if it
#                    is under 20 MB
# Usage: OUT=dir [MINUTES=5] [TINY=1] [SWEEP_FLAGS=...] bash scripts/device_full.sh
# TINY=1 (or no GPU): a CPU-sized --full (d = 8, 16, k <= 4, 4 seeds, GD on 2 for 100 steps) in a
# couple of minutes, to test the script.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-device_out}"; mkdir -p "$OUT"
PY="${PY:-python3}"
RESULTS="${RESULTS:-/tmp/sims-full}"
MINUTES="${MINUTES:-5}"
T0=$(date +%s)
P="$(timeout 120 "$PY" -c "import jax; print(jax.devices()[0].platform)" 2>/dev/null | tail -1)"
[ "$P" = "gpu" ] || TINY=1
if [ "${TINY:-0}" = "1" ]; then
  FLAGS=(--dims 8,16 --widths 2,4 --n-ratios 0.5,1 --seeds 4 --gd-seeds 2 --steps 200
         --gd-steps 100 --n-records 5 --mc-samples 512)
  SLICE="${SLICE:-1/2}"; MINUTES="${MINUTES_TINY:-1.5}"
else
  FLAGS=(); SLICE="${SLICE:-1/11}"
fi
# shellcheck disable=SC2206
FLAGS+=(${SWEEP_FLAGS:-})
LOG="$RESULTS.log"; mkdir -p "$RESULTS"; : > "$LOG"
minutes_left() { awk -v t0="$T0" -v now="$(date +%s)" -v m="$1" 'BEGIN{printf "%.2f", m-(now-t0)/60}'; }
sweep() {  # sweep NAME MINUTES ARGS...: one resumable call, its exit code appended to $RESULTS.codes
  # a group already running when --max-minutes passes finishes, up to GRACE seconds (default 120,
  # so that the whole script fits a 9-minute call with MINUTES=5); a killed group is lost, the
  # stored ones are kept
  timeout "$(awk -v m="$2" -v g="${GRACE:-120}" 'BEGIN{printf "%d", m*60+g}')" "$PY" -m sims.sweep --full "${FLAGS[@]}" --executor serial \
    --quiet --no-figures --out "$RESULTS" "${@:3}" >> "$LOG" 2>&1
  echo "$1 $?" >> "$RESULTS.codes"
}
: > "$RESULTS.codes"
echo "== --full slice $SLICE for up to $MINUTES min on $P"
sweep slice "$MINUTES" --slice "$SLICE" --max-minutes "$MINUTES"
LEFT="$(minutes_left "${TOTAL_MINUTES:-$MINUTES}")"
if awk -v l="$LEFT" 'BEGIN{exit !(l > 0.2)}'; then
  echo "== rest of --full for up to $LEFT min"
  sweep rest "$LEFT" --max-minutes "$LEFT"
fi
tail -5 "$LOG"

echo "== judge what is stored, project the whole --full"
timeout "${PROJ_TIMEOUT:-300}" "$PY" scripts/device_sims_project.py --results "$RESULTS" --preset full \
  > "$RESULTS.proj" 2> "$RESULTS.proj.err" || tail -3 "$RESULTS.proj.err"
timeout "${JUDGE_TIMEOUT:-300}" "$PY" - "$OUT/full.json" "$RESULTS" "$P" "$SLICE" "$MINUTES" "$(( $(date +%s) - T0 ))" <<'PYEOF'
import json, sys
from pathlib import Path
import jax
from sims.claims import evaluate, verdict_table
from sims.config import SweepConfig, with_overrides
from sims.grid import shape_groups
from sims.infra import RunStore
out, results, platform, part, minutes, wall = sys.argv[1:]
res = Path(results)
cfg = with_overrides(SweepConfig(), json.loads((res / "config.json").read_text())["config"])
by_id = {r["id"]: r for r in RunStore(res).load()}
groups = shape_groups(cfg)
done = [g for g in groups if all(i in by_id for i in g.record_ids())]
recs = [by_id[i] for g in done for i in g.record_ids()]
verdicts = evaluate(recs, cfg) if recs else []
print(verdict_table(verdicts))
def read(path):
    try:
        return json.loads(Path(path).read_text())
    except Exception as exc:
        return {"error": f"{exc}; {Path(str(path) + '.err').read_text()[-500:] if Path(str(path) + '.err').exists() else ''}"}
complete = len(done) == len(groups)
json.dump({
    "platform": platform, "devices": [str(d) for d in jax.devices()], "slice": part,
    "minutes": float(minutes), "script_wall_s": int(wall),
    "sweep_exit_codes": Path(results + ".codes").read_text().split("\n")[:-1],
    "sweep_log_tail": Path(results + ".log").read_text().splitlines()[-6:],
    "groups_done": len(done), "groups_total": len(groups), "records_judged": len(recs),
    "verdicts_scope": "complete: every shape group" if complete else
                      f"partial: the {len(done)} stored complete shape groups of {len(groups)}",
    "verdicts": {v.claim: {"verdict": v.verdict, "checked": v.checked, "held": v.held,
                           "notes": v.notes()} for v in verdicts},
    "projection": read(results + ".proj"),
}, open(out, "w"), indent=1)
PYEOF
FILES=(config.json)
for f in verdicts.json summary.csv; do [ -f "$RESULTS/$f" ] && FILES+=("$f"); done
if [ -f "$RESULTS/runs.jsonl" ] && [ "$(stat -c %s "$RESULTS/runs.jsonl")" -lt 150000000 ]; then
  gzip -c "$RESULTS/runs.jsonl" > "$RESULTS/runs.jsonl.gz"
  [ "$(stat -c %s "$RESULTS/runs.jsonl.gz")" -lt 20000000 ] && FILES+=(runs.jsonl.gz)
fi
tar -czf "$OUT/full_small.tgz" -C "$RESULTS" "${FILES[@]}"
"$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); p=d['projection']; print(json.dumps({k: d[k] for k in ('groups_done','groups_total','verdicts_scope')}), json.dumps({k: p.get(k) for k in ('groups_measured','fit','projected_s','projected_upper_s','rms_rel_residual','error')}))" "$OUT/full.json"
echo "done in $(( $(date +%s) - T0 )) s"
