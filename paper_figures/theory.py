"""``python -m paper_figures theory --results OUT``: figures of a ``sims.sweep`` from its records.

Draws (PNG and PDF, into ``OUT/figures`` unless ``--out``), from ``OUT/runs.jsonl`` only:

* ``loss_vs_n_<family>``: relative target loss (target / pretrained) against n/d for each tune mode,
  input-shift and output-shift panels, linear and ReLU rows, mean ± standard error over seeds,
  shifts and widths;
* ``c5_success``: fraction of seeds where first-layer tuning reaches zero loss (sparse family,
  linear, rank-1 scale shift) against the prediction 1 − (1 − p₁)ⁿ;
* ``phase_<family>``: the winning tune mode over (n/d, k/d): the mode with the lowest mean relative
  target loss, named only where its paired per-run difference against every other mode exceeds
  the two-sided Student-t critical value (confidence :data:`WIN_CONFIDENCE`, ``n - 1`` degrees of
  freedom for the cell's ``n`` paired runs) times its standard error (grey: no significant
  winner).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap

from paper_figures.save import print_drawn, save_figure
from sims.infra.stats import CONFIDENCE, beyond, criterion, mean_se
from sims.records import read_records

FIGSIZE = (10.0, 7.0)
DPI = 100
TUNES = ("first", "last", "full")
STYLE = {"none": ("pretrained (none)", "0.5", ":"), "first": ("first layer", "C0", "-"),
         "last": ("last layer", "C1", "-"), "full": ("full", "C2", "--"),
         "oracle": ("oracle", "k", ":")}
TIE_COLOR = "0.85"


def _p1(results: Path, records: list[dict]) -> float:
    for r in records:
        if "p1" in r:
            return float(r["p1"])
    cfg = json.loads((results / "config.json").read_text())
    return float(cfg["config"]["p1"])




def _rel(r: dict) -> float:
    L0 = r["initial_target_loss"]
    return r["target_loss"] / L0 if L0 > 0 else 0.0


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        paths.append(save_figure(fig, out_dir / f"{name}.{ext}", dpi=DPI))
    return paths


def _panel_grid(plt, records: list[dict]):
    """One panel per (activation, shift kind) present in the records: (acts, shifts, fig, axes)."""
    acts = sorted({r["activation"] for r in records})
    shifts = [s for s in ("input", "output") if any(r["shift"] == s for r in records)]
    fig, axes = plt.subplots(len(acts), len(shifts), figsize=FIGSIZE, squeeze=False)
    return acts, shifts, fig, axes


def _loss_vs_n(plt, records: list[dict], family: str, out_dir: Path) -> list[Path]:
    acts, shifts, fig, axes = _panel_grid(plt, records)
    for i, act in enumerate(acts):
        for j, shift in enumerate(shifts):
            ax = axes[i][j]
            sel = [r for r in same_seeds(records) if r["activation"] == act and r["shift"] == shift]
            for method in ("none", "first", "last", "full", "oracle"):
                by_x: dict[float, list[float]] = defaultdict(list)
                for r in sel:
                    if r["method"] == method:
                        by_x[r["n"] / r["d"]].append(max(_rel(r), 1e-18))
                if not by_x:
                    continue
                xs = sorted(by_x)
                ms, ses = zip(*(mean_se(by_x[x]) for x in xs))
                label, color, ls = STYLE[method]
                ax.errorbar(xs, ms, yerr=ses, label=label, color=color, ls=ls, marker="o",
                            ms=3, capsize=2)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{act}, {shift} shift ({family} inputs)")
            ax.set_xlabel("n / d")
            ax.set_ylabel("target loss / pretrained loss")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Target loss after fine-tuning (mean ± s.e. over seeds, shifts, widths)")
    fig.tight_layout()
    paths = _save(fig, out_dir, f"loss_vs_n_{family}")
    plt.close(fig)
    return paths


def _c5(plt, records: list[dict], p1: float, zero_rtol: float, out_dir: Path) -> list[Path]:
    sel = [r for r in records if r["method"] == "first" and r["family"] == "sparse"
           and r["activation"] == "linear" and r["shift_kind"] == "scale" and r["rank"] == 1]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    by_n: dict[int, list[float]] = defaultdict(list)
    for r in sel:
        by_n[r["n"]].append(float(r["limit_target_loss"] <= zero_rtol * r["initial_target_loss"]))
    if by_n:
        ns = sorted(by_n)
        rates = [sum(by_n[n]) / len(by_n[n]) for n in ns]
        ses = [math.sqrt(max(p * (1 - p), 1e-12) / len(by_n[n])) for p, n in zip(rates, ns)]
        ax.errorbar(ns, rates, yerr=ses, marker="o", ls="", capsize=3,
                    label="first layer reaches zero loss (fraction of seeds ± s.e.)")
        grid = [ns[0] + (ns[-1] - ns[0]) * i / 200 for i in range(201)]
        ax.plot(grid, [1 - (1 - p1) ** n for n in grid], color="k",
                label=f"1 − (1 − p₁)ⁿ, p₁ = {p1:g}")
    else:
        ax.text(0.5, 0.5, "no C5 runs (sparse, linear, rank-1 scale shift) in these results",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("n (target samples)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("C5: first-layer tuning succeeds iff direction u₁ is sampled")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths = _save(fig, out_dir, "c5_success")
    plt.close(fig)
    return paths


def same_seeds(records: list[dict]) -> list[dict]:
    """The records of the seeds on which every tune mode ran: with cost tiers (``gd_seeds`` in the
    records) the span-iteration modes ran only on seeds ``0 .. gd_seeds - 1``, so comparing tune
    modes on all seeds would compare means over different seeds; untiered records pass unchanged.

    >>> same_seeds([{"seed_index": 0, "gd_seeds": 1}, {"seed_index": 1, "gd_seeds": 1}, {"seed_index": 5}])
    [{'seed_index': 0, 'gd_seeds': 1}, {'seed_index': 5}]
    """
    return [r for r in records if not r.get("gd_seeds") or r["seed_index"] < r["gd_seeds"]]


#: A cell's best tune mode is named its winner only if its paired per-run difference against every
#: other mode exceeds the two-sided t critical value at this confidence (``n - 1`` degrees of
#: freedom over the cell's ``n`` paired runs) times its standard error, one comparison at a time.
WIN_CONFIDENCE = CONFIDENCE
#: Grid value of a cell whose best mode is not significantly better than another (drawn grey).
TIE = len(TUNES)
#: The fields that identify a run inside a cell: records of different tune modes with the same
#: values are the same problem and data set, so their losses pair.
RUN_FIELDS = ("family", "shift_kind", "rank", "alpha", "t", "seed_index")


def cell_winner(losses: dict[str, dict[tuple, float]], z: float | None = None,
                confidence: float = WIN_CONFIDENCE) -> int:
    """The winning tune mode of one cell (index into ``TUNES``), or :data:`TIE`.

    Args:
        losses: per tune mode, relative target loss per run key (:data:`RUN_FIELDS`).
        z: ``None`` (the default): the paired difference (other mode − best mode, over the ``n``
            runs every mode has) must have mean > t × standard error against every other mode,
            t the two-sided Student-t critical value at ``confidence`` with ``n - 1`` degrees of
            freedom (:func:`sims.infra.stats.beyond`); a number: mean > z × standard error.
        confidence: two-sided confidence level of the t criterion.

    The best mode is the one with the lowest mean over the runs every mode has. One run, or
    differences with zero spread and zero mean (two modes that both reach zero), are a tie.

    >>> cell_winner({"first": {0: 0.1, 1: 0.5}, "full": {0: 0.2, 1: 0.6}})
    0
    >>> cell_winner({"first": {0: 0.1, 1: 0.5}, "full": {0: 0.2, 1: 0.3}}) == TIE
    True
    """
    modes = [m for m in TUNES if m in losses]
    runs = sorted(set.intersection(*(set(losses[m]) for m in modes)), key=repr)
    if not runs:
        return TIE
    means = {m: sum(losses[m][r] for r in runs) / len(runs) for m in modes}
    best = min(modes, key=lambda m: (means[m], TUNES.index(m)))
    for m in modes:
        if m != best:
            mu, se = mean_se([losses[m][r] - losses[best][r] for r in runs])
            if not beyond(mu, se, len(runs), z=z, confidence=confidence):  # one run: no s.e.
                return TIE
    return TUNES.index(best)


def phase_winners(records: list[dict], act: str, shift: str, z: float | None = None,
                  confidence: float = WIN_CONFIDENCE):
    """The winning tune mode per (n/d, k/d) cell (:func:`cell_winner`: index into ``TUNES``, or
    :data:`TIE` where no mode beats every other by a paired difference beyond the criterion: the
    t critical value at ``confidence``, or ``z`` s.e. when given), compared on the
    runs every mode has (with cost tiers, :func:`same_seeds`); ``(xs, ys, grid)`` with grid[y][x]
    (NaN: empty)."""
    cells: dict[tuple, dict[str, dict[tuple, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in same_seeds(records):
        if r["activation"] == act and r["shift"] == shift and r["method"] in TUNES:
            run = tuple(r.get(f) for f in RUN_FIELDS)
            cells[(r["n"] / r["d"], r["k"] / r["d"])][r["method"]][run] = _rel(r)
    xs = sorted({c[0] for c in cells})
    ys = sorted({c[1] for c in cells})
    grid = [[float("nan")] * len(xs) for _ in ys]
    for (x, y), by_m in cells.items():
        grid[ys.index(y)][xs.index(x)] = cell_winner(by_m, z, confidence)
    return xs, ys, grid


def _phase(plt, records: list[dict], family: str, out_dir: Path) -> list[Path]:
    acts, shifts, fig, axes = _panel_grid(plt, records)
    cmap = ListedColormap([STYLE[t][1] for t in TUNES] + [TIE_COLOR])
    for i, act in enumerate(acts):
        for j, shift in enumerate(shifts):
            ax = axes[i][j]
            xs, ys, grid = phase_winners(records, act, shift)
            ax.imshow(grid, origin="lower", cmap=cmap, vmin=-0.5, vmax=TIE + 0.5,
                      aspect="auto")
            ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
            ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
            ax.set_xlabel("n / d")
            ax.set_ylabel("k / d")
            ax.set_title(f"{act}, {shift} shift ({family} inputs)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in [STYLE[t][1] for t in TUNES] + [TIE_COLOR]]
    fig.legend(handles, [STYLE[t][0] for t in TUNES] + ["no significant winner"],
               loc="lower center", ncol=4)
    fig.suptitle(f"Winning tune mode (lowest mean relative target loss), named where its paired "
                 f"per-run difference\n> {criterion(confidence=WIN_CONFIDENCE)} against each other "
                 f"mode (n: the cell's runs)")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    paths = _save(fig, out_dir, f"phase_{family}")
    plt.close(fig)
    return paths


def draw_theory(results: str | Path, out_dir: str | Path | None = None,
                records: list[dict] | None = None, zero_rtol: float | None = None) -> list[Path]:
    """Draw every theory figure of a sweep folder; returns the written paths (PNG and PDF).

    Args:
        results: the sweep's ``--out`` folder (reads ``runs.jsonl`` unless ``records`` given).
        out_dir: figure folder (default ``results/figures``).
        records: records to draw (default: all of ``runs.jsonl``).
        zero_rtol: "zero loss" threshold for C5 (default: the sweep's config, else 1e-10).

    Raises:
        ValueError: if the folder holds no sweep records.
    """
    results = Path(results)
    records = read_records(results) if records is None else records
    if not records:
        raise ValueError(f"{results} holds no records: expected a finished python -m sims.sweep")
    out = Path(out_dir) if out_dir is not None else results / "figures"
    out.mkdir(parents=True, exist_ok=True)
    if zero_rtol is None:
        cfg_path = results / "config.json"
        zero_rtol = (json.loads(cfg_path.read_text())["config"].get("zero_rtol", 1e-10)
                     if cfg_path.is_file() else 1e-10)
    paths: list[Path] = []
    for family in sorted({r["family"] for r in records}):
        fam = [r for r in records if r["family"] == family]
        paths += _loss_vs_n(plt, fam, family, out)
        paths += _phase(plt, fam, family, out)
    paths += _c5(plt, records, _p1(results, records), zero_rtol, out)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m paper_figures theory --results OUT [--out DIR]``."""
    p = argparse.ArgumentParser(prog="python -m paper_figures theory",
                                description="Draw the theory figures of a sims.sweep folder.")
    p.add_argument("--results", required=True, type=Path,
                   help="the --out folder of python -m sims.sweep (holds runs.jsonl)")
    p.add_argument("--out", type=Path, default=None, help="figure folder (default RESULTS/figures)")
    args = p.parse_args(argv)
    return print_drawn(lambda: draw_theory(args.results, args.out))
