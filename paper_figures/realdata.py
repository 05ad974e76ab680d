"""``python -m paper_figures realdata --results OUT``: Figure-2-style chart of a benchmark run.

Reads ``OUT/runs.jsonl`` (never recomputes runs), summarizes with :mod:`realdata.summary`, and
draws, for each ``(task, shift)``, the relative accuracy ``acc(block) - acc(all)`` of every tuned
block with its standard error over seeds (the paper's Figure 2), plus Cross-Val and the automatic
methods. Writes ``OUT/figures/realdata_<task>.png`` and ``.pdf``, and
``OUT/figures/realdata_table.md``: mean test accuracy ± s.e. per tuned option; in bold only a
significant winner (:func:`realdata.summary.winner`: the single block whose paired per-seed
difference to every other single block exceeds ``c`` s.e., ``c`` the two-sided 95% Student-t
critical value of that comparison's number of seeds); without one, the top set (the blocks within
``c`` paired s.e. of the highest mean) marked †; a column naming the winner or the tie, and one
with the top set's paired difference to ``all`` and its verdict. The legend above the table states
the criterion.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from paper_figures.save import print_drawn, save_figure
from sims.infra.stats import criterion_legend

__all__ = ["draw", "main"]

_LEVEL_ORDER = {"input": 0, "feature": 1, "output": 2, "natural": 3}
_LEVEL_COLOURS = {"input": "#4C72B0", "feature": "#55A868", "output": "#C44E52",
                  "natural": "#8172B2"}


def draw(results: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Draw one figure per task from ``results/runs.jsonl``; return the written paths.

    Raises:
        ValueError: no ``runs.jsonl`` or no records in it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realdata.records import load_records
    from realdata.summary import summarize, winners
    from sims.infra import write_text_atomic

    results = Path(results)
    if not (results / "runs.jsonl").is_file():
        raise ValueError(f"no runs.jsonl in {results}; run python -m realdata.benchmark first")
    records, older = load_records(results)
    if not records:
        raise ValueError(f"{results / 'runs.jsonl'} holds no records of the current schema"
                         + (f" ({len(older)} older ones: rerun the benchmark)" if older else ""))
    rows = summarize(records)
    blocks = {(r["task"], r["variant"] or ""): list(r["blocks"]) for r in records}
    out_dir = Path(out_dir) if out_dir else results / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    table = out_dir / "realdata_table.md"
    write_text_atomic(table, _table(rows, blocks, winners(records)))
    written.append(table)
    for task in sorted({r["task"] for r in rows}):
        level_of = {r["shift"]: r["level"] for r in rows if r["task"] == task}
        shifts = sorted(level_of, key=lambda s: (_LEVEL_ORDER.get(level_of[s], 9), s))
        ncol = min(4, len(shifts))
        nrow = math.ceil(len(shifts) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
        for ax, shift in zip(axes.flat, shifts):
            sub = {r["tuned"]: r for r in rows if r["task"] == task and r["shift"] == shift}
            level = next(iter(sub.values()))["level"]
            labels = [b for b in blocks[(task, shift)] if b in sub]
            labels += [x for x in ("cross-val", "auto-rgn", "auto-snr") if x in sub]
            vals = [100 * sub[b]["rel_vs_all"] for b in labels]
            errs = [100 * (0 if math.isnan(sub[b]["rel_se"]) else sub[b]["rel_se"])
                    for b in labels]
            colours = [_LEVEL_COLOURS.get(level, "grey") if b in blocks[(task, shift)]
                       else "#999999" for b in labels]
            ax.bar(range(len(labels)), vals, yerr=errs, color=colours, capsize=3)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
            all_acc = sub["all"]["mean_acc"] if "all" in sub else math.nan
            ax.set_title(f"{shift or task} ({level})\nall = {100 * all_acc:.1f}%", fontsize=9)
            ax.set_ylabel("acc − acc(all) [pts]", fontsize=8)
        for ax in list(axes.flat)[len(shifts):]:
            ax.axis("off")
        n_seeds = max(r["n_seeds"] for r in rows if r["task"] == task)
        fig.suptitle(f"{task}: relative accuracy of surgical fine-tuning "
                     f"(mean ± s.e. over {n_seeds} seeds)", fontsize=10)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            written.append(save_figure(fig, out_dir / f"realdata_{task}.{ext}", dpi=150))
        plt.close(fig)
    return written


def _pts(c: dict) -> str:
    """A paired difference ``{"diff", "se", "n"}`` in points: ``+3.0 ± 0.5`` (no s.e.: bare)."""
    se = "" if math.isnan(c["se"]) else f" ± {100 * c['se']:.1f}"
    return f"{100 * c['diff']:+.1f}{se}"


def _legend(z: float | None = None) -> str:
    """The text above ``realdata_table.md``: the criterion, what its marks and last two columns
    mean (``z``: a fixed criterion instead of the t one, as in :func:`realdata.summary.winner`)."""
    return (f"Test accuracy in %, mean ± s.e. over seeds. Criterion: a paired per-seed difference "
            f"counts when it exceeds c s.e., {criterion_legend(z=z)}. **Bold**: the significant "
            f"winner, the single block whose paired per-seed difference to every other single "
            f"block exceeds c s.e. †: where no block wins, the top set, the single blocks whose "
            f"paired difference to the highest mean is within c s.e. (the highest mean alone is "
            f"not a claim). *winner*: the winner, or `tie:` and the top set. *top set − all*: "
            f"each top-set block's paired difference to `all` in points ± s.e.; holds: every one "
            f"beats `all` by > c s.e., fails: `all` beats every one by > c s.e., "
            f"inconclusive otherwise.\n\n")


def _table(rows: list[dict], blocks: dict[tuple[str, str], list[str]],
           wins: dict[tuple[str, str], dict]) -> str:
    """Markdown table: one line per (task, shift), accuracy ± s.e. in %, the significant winner
    in bold (else the top set marked †), the winner or tie, the top set against ``all``.

    Args:
        rows: :func:`realdata.summary.summarize` rows.
        blocks: (task, shift) -> single blocks in depth order.
        wins: (task, shift) -> :func:`realdata.summary.winner` of its blocks.
    """
    extra = ["all", "none", "cross-val", "auto-rgn", "auto-snr"]
    width = max(len(b) for b in blocks.values())
    head = ["task", "shift", "level", *[f"block {i + 1}" for i in range(width - 1)], "head",
            *extra, "winner", "top set − all"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(blocks):
        sub = {r["tuned"]: r for r in rows if (r["task"], r["shift"]) == key}
        if not sub:
            continue
        bl = blocks[key]
        w = wins.get(key, {"winner": None, "top_set": [], "label": "", "vs_all": {},
                           "beats_all": "not judged"})

        def cell(lab: str, w: dict = w, sub: dict = sub) -> str:
            if lab not in sub or math.isnan(sub[lab]["mean_acc"]):
                return ""
            se = sub[lab]["se"]
            txt = f"{100 * sub[lab]['mean_acc']:.1f}" + (
                "" if math.isnan(se) else f" ± {100 * se:.1f}")
            if lab == w["winner"]:
                return f"**{txt}**"
            return f"{txt} †" if w["winner"] is None and lab in w["top_set"] else txt

        cells = [cell(b) for b in bl[:-1]] + [""] * (width - len(bl)) + [cell(bl[-1])]
        level = next(iter(sub.values()))["level"]
        vs = ", ".join(f"{b} {_pts(c)}" for b, c in w["vs_all"].items())
        vs = f"{vs} ({w['beats_all']})" if vs else ""
        lines.append("| " + " | ".join([key[0], key[1] or "-", level, *cells,
                                         *[cell(x) for x in extra], w["label"], vs]) + " |")
    return _legend() + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``--results OUT [--out DIR]``; exit 2 with a one-line reason on bad input."""
    p = argparse.ArgumentParser(prog="python -m paper_figures realdata",
                                description="Figure-2-style chart of a realdata benchmark run.")
    p.add_argument("--results", required=True, help="output folder of python -m "
                                                     "realdata.benchmark (holds runs.jsonl; "
                                                     "levels.json for --figure levels)")
    p.add_argument("--out", default=None, help="figure folder (default RESULTS/figures)")
    p.add_argument("--figure", choices=("blocks", "size", "noise", "levels"), default="blocks",
                   help="blocks: relative accuracy per tuned block (default); size: accuracy "
                        "against target-set size (a --train-n-grid run); noise: the "
                        "noise-in-one-block matrix (a --task noise-in-block run); levels: "
                        "activation movement per block (RESULTS/levels.json of python -m "
                        "realdata.experiments.levels)")
    args = p.parse_args(argv)
    if args.figure == "blocks":
        return print_drawn(lambda: draw(args.results, args.out))
    from paper_figures import realdata_experiments as rx

    chosen = {"size": rx.draw_size, "noise": rx.draw_noise, "levels": rx.draw_levels}[args.figure]
    return print_drawn(lambda: chosen(args.results, args.out))


if __name__ == "__main__":
    raise SystemExit(main())
