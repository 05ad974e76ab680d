"""Compare two sweeps' records bit for bit, keyed by a record's content rather than its id.

    python scripts/compare_records.py BEFORE/runs.jsonl AFTER/runs.jsonl [--ignore id,package_version]
        [--rtol R --atol A]

Each record is keyed by every field except the ignored ones and the measured ones (``wall_s``);
the comparison of the remaining values is exact (floats compared by their JSON text), or, with
``--rtol``/``--atol``, floats (also inside lists and dicts) agree when |a − b| <= atol + rtol·max(|a|,
|b|) while everything else (booleans, integers, strings, None) must be equal. Prints one JSON line:
counts of matched, only-before, only-after, and differing records, the fields in which they differ,
and per field that differs by its JSON text the largest absolute and relative float difference.
Exit 1 if anything differs beyond the tolerance.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter

MEASURED = ("wall_s",)
KEY_FIELDS = ("seed", "steps", "n_records", "gtol", "p1", "nonneg_head", "d", "k", "n", "family",
              "shift", "shift_kind", "rank", "alpha", "t", "seed_index", "pool_n", "activation",
              "method")


def load(path: str, ignore: set[str]) -> dict[str, dict]:
    """Records of a runs.jsonl keyed by the canonical JSON of their :data:`KEY_FIELDS`."""
    out = {}
    with open(path) as fh:
        for line in fh:
            rec = json.loads(line)
            key = json.dumps({k: rec.get(k) for k in KEY_FIELDS}, sort_keys=True)
            if key in out:
                raise SystemExit(f"{path}: two records for {key}")
            out[key] = {k: v for k, v in rec.items() if k not in ignore and k not in MEASURED}
    return out


def _floats(a, b, pairs: list) -> bool:
    """Collect the (a, b) float pairs of two JSON values; False if they differ in anything else."""
    def number(x) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool)

    if number(a) and number(b) and (isinstance(a, float) or isinstance(b, float)):
        pairs.append((float(a), float(b)))
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_floats(x, y, pairs) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_floats(a[k], b[k], pairs) for k in a)
    return json.dumps(a) == json.dumps(b)


def _close(x: float, y: float, rtol: float, atol: float) -> bool:
    return x == y or (math.isnan(x) and math.isnan(y)) or abs(x - y) <= atol + rtol * max(abs(x),
                                                                                        abs(y))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--ignore", default="id,package_version")
    p.add_argument("--rtol", type=float, default=0.0, help="relative float tolerance (default exact)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute float tolerance (default exact)")
    args = p.parse_args(argv)
    ignore = set(args.ignore.split(","))
    a, b = load(args.before, ignore), load(args.after, ignore)
    diff_fields: Counter[str] = Counter()
    spread: dict[str, dict[str, float]] = {}
    differing = 0
    for key in a.keys() & b.keys():
        ra, rb = a[key], b[key]
        fields = set()
        for k in ra.keys() | rb.keys():
            va, vb = ra.get(k, "<absent>"), rb.get(k, "<absent>")
            if json.dumps(va) == json.dumps(vb):
                continue
            pairs: list[tuple[float, float]] = []
            same_kind = _floats(va, vb, pairs)
            worst = spread.setdefault(k, {"max_abs": 0.0, "max_rel": 0.0})
            for x, y in pairs:
                gap, size = abs(x - y), max(abs(x), abs(y))
                if math.isfinite(gap):
                    worst["max_abs"] = max(worst["max_abs"], gap)
                    worst["max_rel"] = max(worst["max_rel"], gap / size if size else 0.0)
            if not same_kind or not all(_close(x, y, args.rtol, args.atol) for x, y in pairs):
                fields.add(k)
        if fields:
            differing += 1
            diff_fields.update(fields)
    out = {"before": len(a), "after": len(b), "matched": len(a.keys() & b.keys()),
           "only_before": len(a.keys() - b.keys()), "only_after": len(b.keys() - a.keys()),
           "differing": differing, "differing_fields": dict(diff_fields), "ignored": sorted(ignore),
           "rtol": args.rtol, "atol": args.atol, "float_spread": spread}
    print(json.dumps(out))
    return 1 if differing or out["only_before"] or out["only_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
