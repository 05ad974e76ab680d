#!/usr/bin/env bash
# GPU check (datasets issue): CIFAR-10-C quick grid on generated data; images/s for block1, head, all.
# Usage on the device machine (repo root): OUT=/some/dir bash scripts/device_datasets.sh
# Expected runtime: < 3.5 min on one H100 (generation of 3 corruptions x 50,000 images on CPU,
# 9 runs with bf16 + channels_last + pinned memory, then 3 runs with them off).
set -euo pipefail
OUT="${OUT:-results/device_datasets}"
PY="${PY:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 200 "$PY" scripts/device_datasets.py --out "$OUT" "$@"
rm -rf "$OUT/data" "$OUT/resnet26_random.pt"   # generated inputs are not results
echo "wrote $OUT/device_datasets.json"
