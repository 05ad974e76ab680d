"""``python -m paper_figures rgn_weights --results OUT``: the per-block Auto-RGN weights figure.

Reads the Auto-RGN records of ``OUT/runs.jsonl`` (``rgn_block_weights``: per block, the mean over
epochs of the normalised relative gradient norm of the block's tensors, for the selected lr) and
draws one row per ``(task, shift)``: the mean over seeds per block, with its standard error.
Writes ``OUT/figures/rgn_weights.png`` and ``.pdf`` and returns the table it drew.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from paper_figures.save import print_drawn, save_figure

__all__ = ["draw", "main", "rgn_weight_table"]


def rgn_weight_table(records: Sequence[dict]) -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    """``(task, shift) -> block -> (mean, s.e.)`` over seeds of the Auto-RGN block weights
    (block order: the records' ``blocks``)."""
    from sims.infra.stats import mean_se

    vals: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: dict[tuple[str, str], list[str]] = {}
    for r in records:
        w = r.get("rgn_block_weights")
        if r.get("method") != "rgn" or r.get("status") != "ok" or not w:
            continue
        key = (r["task"], r["variant"] or "")
        order[key] = [b for b in r["blocks"] if b in w]
        for b, x in w.items():
            vals[key][b].append(float(x))
    return {k: {b: mean_se(vals[k][b]) for b in order[k]} for k in sorted(vals)}


def draw(results: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw the figure from ``results/runs.jsonl``; ``ValueError`` if it has no Auto-RGN record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realdata.records import load_records

    results = Path(results)
    if not (results / "runs.jsonl").is_file():
        raise ValueError(f"no runs.jsonl in {results}; run python -m realdata.benchmark first")
    table = rgn_weight_table(load_records(results)[0])
    if not table:
        raise ValueError(f"{results / 'runs.jsonl'} has no Auto-RGN record with block weights "
                         "(run the benchmark with --methods rgn)")
    out_dir = Path(out_dir) if out_dir else results / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(table), 1, figsize=(5.0, 1.7 * len(table)), squeeze=False)
    for ax, (key, row) in zip(axes[:, 0], table.items()):
        blocks = list(row)
        ax.bar(range(len(blocks)), [row[b][0] for b in blocks],
               yerr=[row[b][1] for b in blocks], color="#4C72B0", capsize=2)
        ax.set_xticks(range(len(blocks)), blocks, fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"{key[0]}\n{key[1] or '-'}", fontsize=7)
    axes[0, 0].set_title("Auto-RGN: mean normalised RGN per block", fontsize=9)
    fig.tight_layout()
    paths = [out_dir / "rgn_weights.png", out_dir / "rgn_weights.pdf"]
    for p in paths:
        save_figure(fig, p, dpi=120)
    plt.close(fig)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``--results OUT [--out DIR]``; exit 2 with a one-line reason on bad input."""
    p = argparse.ArgumentParser(prog="python -m paper_figures rgn_weights",
                                description="Per-block Auto-RGN weights, one row per shift.")
    p.add_argument("--results", required=True, help="folder holding runs.jsonl")
    p.add_argument("--out", default=None, help="figure folder (default RESULTS/figures)")
    a = p.parse_args(argv)
    return print_drawn(lambda: draw(a.results, a.out))
