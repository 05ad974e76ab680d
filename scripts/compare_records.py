"""Compare two sweeps' records bit for bit, keyed by a record's content rather than its id.

    python scripts/compare_records.py BEFORE/runs.jsonl AFTER/runs.jsonl [--ignore id,package_version]

Each record is keyed by every field except the ignored ones and the measured ones (``wall_s``);
the comparison of the remaining values is exact (floats compared by their JSON text). Prints one
JSON line: counts of matched, only-before, only-after, and differing records, and the fields in
which they differ. Exit 1 if anything differs.
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--ignore", default="id,package_version")
    args = p.parse_args(argv)
    ignore = set(args.ignore.split(","))
    a, b = load(args.before, ignore), load(args.after, ignore)
    diff_fields: Counter[str] = Counter()
    differing = 0
    for key in a.keys() & b.keys():
        ra, rb = a[key], b[key]
        fields = {k for k in ra.keys() | rb.keys()
                  if json.dumps(ra.get(k, "<absent>")) != json.dumps(rb.get(k, "<absent>"))}
        if fields:
            differing += 1
            diff_fields.update(fields)
    out = {"before": len(a), "after": len(b), "matched": len(a.keys() & b.keys()),
           "only_before": len(a.keys() - b.keys()), "only_after": len(b.keys() - a.keys()),
           "differing": differing, "differing_fields": dict(diff_fields), "ignored": sorted(ignore)}
    print(json.dumps(out))
    return 1 if differing or out["only_before"] or out["only_after"] else 0


if __name__ == "__main__":
    sys.exit(main())
