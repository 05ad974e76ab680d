#!/usr/bin/env bash
# Device checks of the sims engine, < 7 minutes on one H100/H200; JSON files under $OUT:
#   env.json         jax devices, whether a CUDA jax had to be installed (and if that worked)
#   bench.json       python -m sims.bench: cold / cached / warm engine times, compile_s, programs,
#                    host_s
#   bench_autotune0.json  the same bench (cold and warm, no cache) with XLA's GPU autotuning off
#                    (GPU only; AUTOTUNE_AB=0 skips it): does autotuning make the compile time?
#   batch_curve.json seconds per GD step of twolayer.finetune_batch vs batch size (1 ... 16k)
#   twolayer.jsonl   the 256-problem benchmark of tests/benchmarks/test_twolayer_gd.py, every
#                    (activation, tune), on the device
# (The time-boxed slice of `--full` and its projection: scripts/device_full.sh.)
# Without a GPU jax it runs everything on CPU at tiny sizes (TINY=1 forces that); it never installs
# or downloads anything.
# Usage: OUT=dir bash scripts/device_sims.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-device_out}"; mkdir -p "$OUT"
W="$(mktemp -d /tmp/device_sims.XXXXXX)"
PY="${PY:-python3}"
T0=$(date +%s)
platform() { timeout 60 "$PY" -c "import jax; print(jax.devices()[0].platform)" 2>/dev/null | tail -1; }

P="$(platform)"
INSTALL="none: the script never installs anything (without a GPU jax it runs at tiny sizes on CPU)"
[ "$P" = "gpu" ] || TINY=1
"$PY" - "$OUT/env.json" "$P" "$INSTALL" "${TINY:-0}" <<'PYEOF'
import json, subprocess, sys
out, platform, install, tiny = sys.argv[1:]
try:
    import jax
    devices, version = [str(d) for d in jax.devices()], jax.__version__
except Exception as exc:  # no jax at all
    devices, version = [f"error: {exc}"], None
smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                      "--format=csv,noheader"], capture_output=True, text=True).stdout.strip() \
    if subprocess.run(["which", "nvidia-smi"], capture_output=True).returncode == 0 else None
json.dump({"platform": platform or None, "jax": version, "devices": devices, "gpu_jax_install": install,
           "cpu_fallback_tiny": tiny == "1", "nvidia_smi": smi}, open(out, "w"), indent=1)
PYEOF
cat "$OUT/env.json"; echo

if [ "${TINY:-0}" = "1" ]; then
  BENCH=(--seeds 2 --loop-sample 10); CURVE="1,4,16,64"; TL=(--problems 16 --steps 200 --unrolls default,1)
else
  BENCH=(--loop-sample 20); CURVE="1,64,1024,16384"
  TL=(--problems 256 --steps 2000 --unrolls default,1,32)
fi

[ "${SKIP_TWOLAYER:-0}" = 1 ] || {
echo "== twolayer 256-problem benchmark on the device"
timeout 100 "$PY" scripts/device_twolayer.py "${TL[@]}" --chunks auto 2> "$W/tl.err" \
  | tee "$OUT/twolayer.jsonl" || tail -3 "$W/tl.err"
}

echo "== sims.bench (cold / cached / warm)"
timeout "${BENCH_TIMEOUT:-200}" "$PY" -m sims.bench "${BENCH[@]}" 2> "$W/bench.err" | tail -1 > "$OUT/bench.json" \
  || tail -3 "$W/bench.err"
cat "$OUT/bench.json"

if [ "$P" = "gpu" ] && [ "${AUTOTUNE_AB:-1}" = 1 ]; then
  # Does XLA's GPU autotuning make the ~8-12 s per program? The same bench cold and warm without
  # a cache, with autotuning off (compare compile_s and warm_s with bench.json's cold and warm).
  echo "== sims.bench with XLA_FLAGS=--xla_gpu_autotune_level=0 (cold and warm, no cache)"
  XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_autotune_level=0" timeout 150 "$PY" -m sims.bench \
    "${BENCH[@]}" --no-compile-cache 2> "$W/bench_at0.err" | tail -1 > "$OUT/bench_autotune0.json" \
    || tail -3 "$W/bench_at0.err"
  cat "$OUT/bench_autotune0.json"
fi

echo "== GD step time vs batch size"
timeout 45 "$PY" -m sims.bench --batch-curve "$CURVE" 2> "$W/curve.err" | tail -1 \
  > "$OUT/batch_curve.json" || tail -3 "$W/curve.err"
cat "$OUT/batch_curve.json"

echo "done in $(( $(date +%s) - T0 )) s"
