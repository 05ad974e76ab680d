"""Figures of the mechanism experiments, drawn from stored records only.

* :func:`draw_noise`: the noise-in-one-block matrix (rows: perturbed block; columns: tuned option;
  cell: ``acc(option) - acc(all)`` in points, mean over seeds) and its table with paired s.e. and
  the verdict per row -> ``FIG/noise_in_block.{png,pdf}``, ``FIG/noise_in_block.md``.
* :func:`draw_size`: accuracy against labelled target examples per class for the followed block
  (the paired winner over sizes, else the highest mean, labelled as such), ``all`` and the head,
  one panel per ``(task, shift)`` -> ``FIG/size_curve.{png,pdf}``, ``FIG/size_curve.md`` (how the
  block was chosen, its gap to ``all`` per size with paired s.e., and the shrink verdict).
* :func:`draw_levels`: the level diagnostic of ``RESULTS/levels.json``
  (:mod:`realdata.experiments.levels`): per target, the paired movement ``P_b`` of every block
  (left) and the distribution shift ``D_b`` above the source floor (right), coloured by the
  target's level -> ``FIG/levels.{png,pdf}``, ``FIG/levels.md``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from paper_figures.save import save_figure
from sims.infra.stats import criterion_legend

__all__ = ["draw_levels", "draw_noise", "draw_size"]


def _records(results: Path) -> list[dict[str, Any]]:
    from sims.infra import RunStore

    if not (results / "runs.jsonl").is_file():
        raise ValueError(f"no runs.jsonl in {results}; run python -m realdata.benchmark first")
    records = RunStore(results).load()
    if not records:
        raise ValueError(f"{results / 'runs.jsonl'} holds no records")
    return records


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{stem}.{ext}"
        paths.append(save_figure(fig, path, dpi=150))
    plt.close(fig)
    return paths


def _pts(x: float) -> str:
    return "" if math.isnan(x) else f"{100 * x:+.1f}"


def draw_noise(results: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """The noise-in-one-block matrix of ``results`` (records of a ``noise-in-block*`` task)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realdata.experiments.noise_in_block import noise_verdicts
    from realdata.summary import summarize
    from sims.infra import write_text_atomic

    results = Path(results)
    records = [r for r in _records(results) if "transform_info" in r
               and "perturbed_block" in r["transform_info"]]
    if not records:
        raise ValueError(f"{results} holds no noise-in-block records (run --task noise-in-block)")
    out_dir = Path(out_dir) if out_dir else results / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = summarize(records)
    verdicts = {(v["task"], v["perturbed"]): v for v in noise_verdicts(records)}
    written: list[Path] = []
    lines = []
    for task in sorted({r["task"] for r in records}):
        blocks = next(list(r["blocks"]) for r in records if r["task"] == task)
        cols = [*blocks, "all", "none"]
        perturbed = [b for b in blocks if any(r["shift"] == b for r in rows if r["task"] == task)]
        mat = [[math.nan] * len(cols) for _ in perturbed]
        cell = {}
        for r in rows:
            if r["task"] == task and r["shift"] in perturbed and r["tuned"] in cols:
                i, j = perturbed.index(r["shift"]), cols.index(r["tuned"])
                mat[i][j] = 100 * r["rel_vs_all"]
                cell[(r["shift"], r["tuned"])] = r
        fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2, 0.8 * len(perturbed) + 1.6))
        finite = [abs(x) for row in mat for x in row if not math.isnan(x)]
        lim = max(finite) if finite else 1.0
        im = ax.imshow(mat, cmap="RdBu", vmin=-lim, vmax=lim)
        for i, p in enumerate(perturbed):
            for j, c in enumerate(cols):
                if not math.isnan(mat[i][j]):
                    ax.text(j, i, f"{mat[i][j]:+.1f}", ha="center", va="center", fontsize=8,
                            fontweight="bold" if c == p else "normal")
        ax.set_xticks(range(len(cols)), [f"tune {c}" for c in cols], rotation=30, ha="right",
                      fontsize=8)
        ax.set_yticks(range(len(perturbed)),
                      [f"noise in {p}: {verdicts.get((task, p), {}).get('verdict', '?')}"
                       for p in perturbed], fontsize=8)
        fig.colorbar(im, ax=ax, label="acc − acc(all) [pts]")
        n_seeds = max(r["n_seeds"] for r in rows if r["task"] == task)
        ax.set_title(f"{task}: accuracy relative to tuning all ({n_seeds} seeds)", fontsize=9)
        fig.tight_layout()
        written += _save(fig, out_dir, f"noise_in_block_{task}" if task != "noise-in-block"
                         else "noise_in_block")
        lines += [f"### {task}", "",
                  "| noise in | " + " | ".join(cols) + " | verdict |",
                  "|---|" + "---|" * (len(cols) + 1)]
        for p in perturbed:
            cells = []
            for c in cols:
                r = cell.get((p, c))
                if r is None:
                    cells.append("")
                    continue
                txt = f"{100 * r['mean_acc']:.1f}"
                if c != "all" and not math.isnan(r["rel_vs_all"]):
                    txt += f" ({_pts(r['rel_vs_all'])} ± {100 * r['rel_se']:.1f})"
                cells.append(f"**{txt}**" if c == p else txt)
            v = verdicts.get((task, p), {})
            lines.append(f"| {p} | " + " | ".join(cells) + f" | {v.get('verdict', '')} |")
        lines.append("")
    table = out_dir / "noise_in_block.md"
    write_text_atomic(table, "Accuracy % (difference to `all` ± paired s.e., points); bold: the "
                      "perturbed block tuned. verdict: holds when the perturbed block beats every "
                      "other option by > c paired s.e., fails when one beats it by > c s.e., "
                      f"inconclusive otherwise; {criterion_legend()}.\n\n" + "\n".join(lines))
    return [table, *written]


def draw_size(results: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Accuracy against target-set size of ``results`` (a ``--train-n-grid`` run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realdata.experiments.size_curve import size_rows, size_verdicts
    from sims.infra import write_text_atomic

    results = Path(results)
    records = _records(results)
    rows = size_rows(records)
    verdicts = size_verdicts(records)
    if not any(len(v["sizes"]) >= 2 for v in verdicts):
        raise ValueError(f"{results} holds fewer than two target-set sizes for every shift; run "
                         "python -m realdata.benchmark --train-n-grid 1 2 5 10 20 50 first")
    out_dir = Path(out_dir) if out_dir else results / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    ncol = min(4, len(verdicts))
    nrow = math.ceil(len(verdicts) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.9 * nrow), squeeze=False)
    lines = ["| task | shift | block followed | " + " | ".join(
        f"{n}/class" for n in sorted({r["n_per_class"] for r in rows})) + " | shrinks |"]
    sizes_all = sorted({r["n_per_class"] for r in rows})
    lines.append("|---|---|---|" + "---|" * (len(sizes_all) + 1))
    for ax, v in zip(axes.flat, verdicts):
        key = (v["task"], v["shift"])
        blocks = [r for r in rows if (r["task"], r["shift"]) == key]
        head = next((r["tuned"] for r in reversed(blocks) if r["tuned"] not in ("all", "none")),
                    None)
        curves = [(v["best_block"], "#4C72B0"), ("all", "black")]
        if head != v["best_block"]:  # the head is drawn once, as the followed block when it is
            curves.append((head, "#C44E52"))
        for lab, colour in curves:
            if lab is None:
                continue
            pts = sorted((r["n_per_class"], r["mean_acc"], r["se"]) for r in blocks
                         if r["tuned"] == lab)
            xs = [p[0] for p in pts]
            ax.errorbar(xs, [100 * p[1] for p in pts],
                        yerr=[0 if math.isnan(p[2]) else 100 * p[2] for p in pts], marker="o",
                        ms=3, capsize=2, color=colour,
                        label=f"{lab} ({_SHORT[v['choice']]})" if lab == v["best_block"]
                        else lab)
        ax.set_xscale("log")
        ax.set_xlabel("labelled target examples per class", fontsize=8)
        ax.set_ylabel("test accuracy [%]", fontsize=8)
        ax.set_title(f"{v['shift'] or v['task']} ({v['level']}): shrinks {v['verdict']}",
                     fontsize=9)
        ax.legend(fontsize=7)
        gaps = [(f"{_pts(g['diff'])} ± {100 * g['se']:.1f}" if (g := v["gaps"].get(n)) and
                 not math.isnan(g["se"]) else (_pts(g["diff"]) if g else ""))
                for n in sizes_all]
        how = v["choice"] + ("; " + v["winner_label"] if v["winner_label"].startswith("tie")
                             else "")
        followed = f"{v['best_block']} ({how})" if v["best_block"] else "-"
        lines.append(f"| {v['task']} | {v['shift'] or '-'} | {followed} | "
                     + " | ".join(gaps) + f" | {v['verdict']} |")
    for ax in list(axes.flat)[len(verdicts):]:
        ax.axis("off")
    fig.suptitle("accuracy against target-set size (mean ± s.e. over seeds)", fontsize=10)
    fig.tight_layout()
    written = _save(fig, out_dir, "size_curve")
    table = out_dir / "size_curve.md"
    legend = ("Gap acc(block followed) − acc(all), points ± paired s.e., per labelled target "
              "examples per class. The block followed is the paired winner over sizes (its "
              "per-seed accuracy, averaged over sizes, beats every other single block by > c "
              "s.e.); where there is none, it is the highest mean, named as such with the blocks "
              "it ties with, and its row describes that block, not the best one. shrinks: holds "
              "when gap(smallest) − gap(largest), paired by seed, exceeds c s.e., fails below −c "
              f"s.e., inconclusive otherwise; {criterion_legend()}.\n\n")
    write_text_atomic(table, legend + "\n".join(lines) + "\n")
    return [table, *written]


#: Legend tag of the followed block, by the ``choice`` of its size verdict.
_SHORT = {"paired winner": "paired winner", "highest mean, not a significant winner":
          "highest mean, n.s.", "the only single block": "only block"}

_LEVEL_COLOURS = {"input": "#4C72B0", "feature": "#55A868", "output": "#C44E52"}


def draw_levels(results: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """The level diagnostic stored in ``results/levels.json``."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from realdata.experiments.levels import level_markdown, level_verdicts
    from sims.infra import write_text_atomic

    results = Path(results)
    src = results / "levels.json"
    if not src.is_file():
        raise ValueError(f"no levels.json in {results}; run python -m realdata.experiments.levels "
                         f"--out {results} first")
    try:
        table = json.loads(src.read_text())
        blocks, targets = list(table["floor"]), table["targets"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{src} is not a levels table ({exc}); rerun the levels command") from exc
    levels = table.get("levels", {})
    verdicts = level_verdicts(table, levels)
    out_dir = Path(out_dir) if out_dir else results / "figures"
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = range(len(blocks))
    for name in targets:
        colour = _LEVEL_COLOURS.get(levels.get(name, ""), "grey")
        p = table.get("paired", {}).get(name)
        if p:
            ax1.plot(xs, [p[b] for b in blocks], marker="o", ms=3, color=colour, alpha=0.8)
            ax1.annotate(name, (len(blocks) - 1, p[blocks[-1]]), fontsize=6, color=colour,
                         xytext=(3, 0), textcoords="offset points", va="center")
        d = targets[name]
        ax2.plot(xs, [d[b] - table["floor"][b] for b in blocks], marker="o", ms=3, color=colour,
                 alpha=0.8)
        ax2.annotate(name, (len(blocks) - 1, d[blocks[-1]] - table["floor"][blocks[-1]]),
                     fontsize=6, color=colour, xytext=(3, 0), textcoords="offset points",
                     va="center")
    for ax, title, ylabel in (
            (ax1, "paired: same images, shifted vs clean", "mean ||h(x') − h(x)|| / ||h(x)||"),
            (ax2, "distribution: mean shift above the source floor",
             "||μ_t − μ_s|| / spread − floor")):
        ax.set_xticks(list(xs), blocks, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xlim(-0.2, len(blocks) - 0.2 + 0.9)
    handles = [plt.Line2D([], [], color=c, marker="o", label=lvl)
               for lvl, c in _LEVEL_COLOURS.items() if lvl in set(levels.values())]
    ax2.legend(handles=handles, fontsize=7, title="level", title_fontsize=7)
    fig.suptitle("how much each block's activations move between source and target images",
                 fontsize=10)
    fig.tight_layout()
    written = _save(fig, out_dir, "levels")
    md = out_dir / "levels.md"
    write_text_atomic(md, level_markdown(table, verdicts))
    return [md, *written]
