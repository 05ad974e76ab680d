#!/usr/bin/env bash
# GPU check of the sims engine (one H100, < 4 minutes): a GPU-sized subset of --full, then the
# bench. Assumes `jax` with CUDA is importable (e.g. pip install -U "jax[cuda12]"). Writes under
# $OUT (default ./device_out). Prints timings; the last line of each step is its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-device_out}"
mkdir -p "$OUT"
python -c "import jax; print('devices:', jax.devices())"
start=$(date +%s)
# The full preset's axes with d up to 256, 20 seeds, shapes merged per (d, family) so only 6
# groups compile; serial executor (one process owns the GPU). Re-running resumes.
cat > "$OUT/gpu.toml" <<'TOML'
dims = [16, 64, 256]
seeds = 20
steps = 5000
merge_shapes = true
chunk = 2048
TOML
timeout 200 python -m sims.sweep --full --config "$OUT/gpu.toml" --executor serial --quiet \
  --out "$OUT/sweep-gpu" | tee "$OUT/sweep-gpu.txt" || echo "sweep stopped (rc=$?); rerun resumes"
echo "sweep wall: $(( $(date +%s) - start )) s"
start=$(date +%s)
timeout 100 python -m sims.bench --loop-sample 100 | tee "$OUT/bench.txt"
echo "bench wall: $(( $(date +%s) - start )) s"
