"""Summaries of benchmark records: per-option means, relative accuracy vs ``all``, Cross-Val,
protocol diagnostics and paired verdicts.

Pure functions of the stored records (``OUT/runs.jsonl``); used by the benchmark and by
``python -m paper_figures realdata`` (which never recomputes runs).

Definitions (over the seeds of one ``(task, variant)``):

* accuracy of a tuned option: mean test metric; standard error ``sd / sqrt(n)`` (``ddof=1``).
* relative accuracy of a block: mean over seeds of ``metric(block) - metric(all)`` (paired by
  seed), with its standard error -- the paper's Figure 2.
* Cross-Val: per seed, the single block (``block1 .. head``) with the best validation metric; its
  test metric.
* best block (``best_block``): the single block with the highest mean test metric -- the highest
  mean, not a claim: among close blocks it is chosen by noise, and ``best_minus_all`` is then
  biased upward (the winner's curse).
* criterion of every paired comparison below (:func:`sims.infra.stats.beyond`): a mean paired
  difference over ``n`` common seeds counts when it exceeds ``t_critical(n, confidence)`` standard
  errors, the two-sided Student-t critical value with ``n - 1`` degrees of freedom (confidence
  :data:`CONFIDENCE` = 0.95: 12.7 s.e. at 2 seeds, 4.30 at 3, 2.78 at 5, 2.36 at 8); each
  comparison uses its own ``n``. Every function takes ``z=`` to use a fixed number of standard
  errors instead (``z=2.0``: the earlier, lenient rule). Comparisons carry the ``threshold`` used.
* winner (:func:`winner`): the best block, named only when its paired-by-seed difference to every
  other single block is beyond the criterion; otherwise there is no significant winner and the
  *top set* (the single blocks whose paired difference to the best block is not beyond it, the
  best block included) is the claim. ``beats_all`` compares the top set with ``all``.
* ``lr_edge_frac``: fraction of the option's runs whose selected lr is the grid's largest or
  smallest; ``epoch_last_frac``: fraction whose selected epoch is the last one run.

Which records count: with ``settings`` (task -> settings id, see :mod:`realdata.records`) only the
records of those settings; otherwise, per ``(task, variant)``, those sharing the latest record's
settings. Records of other settings (another ``--objective`` included) never mix into the means.

Verdicts (:func:`verdicts`): the paper predicts the first block for input shifts, a middle block
for feature shifts and the head for output shifts. The expected block is the best (highest mean)
of the predicted level; it is compared, paired by seed, with every option of the other levels
(the other single blocks and ``all``). ``holds``: it beats each of them beyond the criterion
(paired by seed); ``fails``: one of them beats it beyond the criterion; ``inconclusive``:
otherwise (also with fewer than two paired seeds); ``not judged``: the level makes no prediction
(natural shifts), or the predicted level's blocks or every other option are missing (named in
``missing``).
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sims.infra.stats import CONFIDENCE, beyond, criterion, mean_se, threshold

__all__ = ["CONFIDENCE", "SUMMARY_COLUMNS", "edge_warning", "label_of", "paired_diff", "paired_verdict",
           "summarize", "summary_csv", "verdict_of", "verdicts", "winner", "winners"]

SUMMARY_COLUMNS = ("task", "shift", "level", "tuned", "n_seeds", "mean_acc", "se",
                   "rel_vs_all", "rel_se", "failed", "lr_edge_frac", "epoch_last_frac",
                   "is_winner", "in_top_set")

_EXPECTED = {"input": "first", "feature": "middle", "output": "last"}

Groups = dict[tuple[str, str], dict[str, dict[int, Mapping[str, Any]]]]


def label_of(rec: Mapping[str, Any]) -> str:
    """Row label of a record: the tuned spec, ``auto-rgn`` / ``auto-snr``, or the baseline's
    method name (``l1``, ``gradual-down``, ``gradual-up``)."""
    if rec["method"] in ("rgn", "snr"):
        return f"auto-{rec['method']}"
    return rec["tuned"] if rec["method"] == "fixed" else rec["method"]


def _settings(rec: Mapping[str, Any]) -> str:
    if "settings" in rec:
        return str(rec["settings"])
    return repr((rec.get("protocol"), rec.get("bn"), rec.get("checkpoint"),
                 rec.get("objective", "supervised"), rec.get("online")))


def _group(records: Iterable[Mapping[str, Any]], settings: Mapping[str, str] | None
           ) -> tuple[Groups, dict[tuple[str, str], str], dict[tuple[str, str], list[str]]]:
    groups: Groups = defaultdict(lambda: defaultdict(dict))
    levels: dict[tuple[str, str], str] = {}
    order: dict[tuple[str, str], list[str]] = {}
    records = list(records)
    latest = {(r["task"], r["variant"] or ""): _settings(r) for r in records}
    for r in records:
        key = (r["task"], r["variant"] or "")
        want = settings.get(r["task"]) if settings else None
        if _settings(r) != (want if want is not None else latest[key]):
            continue
        groups[key][label_of(r)][int(r["seed"])] = r
        levels[key] = r["level"]
        order[key] = list(r["blocks"])
    return groups, levels, order


def _ok(d: Mapping[int, Mapping[str, Any]]) -> dict[int, float]:
    return {s: r["test_metric"] for s, r in d.items() if r["status"] == "ok"}


def _frac(d: Mapping[int, Mapping[str, Any]], key: str) -> float:
    flags = [r.get(key) for r in d.values() if r["status"] == "ok" and r.get(key) is not None]
    return sum(bool(f) for f in flags) / len(flags) if flags else math.nan


def _mean(v: Mapping[int, float]) -> float:
    """Mean of the values, summed in sorted order (relabelling seeds changes no bit)."""
    return mean_se(sorted(v.values()))[0]


def paired_diff(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[float, float, int]:
    """Mean and s.e. (``sd / sqrt(n)``, ``ddof=1``) over the common seeds of ``a - b``, and the
    number of pairs (NaN, NaN, 0 without common seeds). The differences are summed in sorted
    order, so relabelling the seeds of both series alike changes no bit of the result."""
    diffs = sorted(a[s] - b[s] for s in a if s in b)
    if not diffs:
        return math.nan, math.nan, 0
    m, se = mean_se(diffs)
    return m, se, len(diffs)


def _compare(a: Mapping[int, float], b: Mapping[int, float], z: float | None,
             confidence: float) -> dict[str, Any]:
    """:func:`paired_diff` of ``a - b`` as ``{"diff", "se", "n", "threshold"}``: ``threshold`` is
    the number of standard errors the criterion asks of this comparison (``z`` when given, else
    the t critical value of its ``n``; NaN under the t criterion with fewer than two pairs)."""
    d, se, n = paired_diff(a, b)
    return {"diff": d, "se": se, "n": n, "threshold": threshold(n, z=z, confidence=confidence)}


def _beyond(c: Mapping[str, Any], sign: float = 1.0) -> bool:
    """``sign * diff`` of a :func:`_compare` result is positive beyond its threshold."""
    return beyond(sign * c["diff"], c["se"], c["n"], z=c["threshold"])


def paired_verdict(series: Mapping[str, Mapping[int, float]], expected: str,
                   others: Sequence[str], *, z: float | None = None,
                   confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Does ``expected`` beat every option of ``others``, paired by seed?

    Each other option present is compared with ``expected`` on their common seeds
    (:func:`paired_diff` of ``expected - other``). ``holds``: ``expected`` beats every one beyond
    the criterion (:func:`sims.infra.stats.beyond`: by more than the two-sided t critical value of
    the comparison's own number of pairs times its paired standard error, or ``z`` s.e. when
    given); ``fails``: some option beats it beyond the criterion; ``inconclusive``: otherwise,
    including fewer than two paired seeds for some option; ``not judged``: ``expected`` or every
    other option is missing.

    Args:
        series: option -> seed -> metric (fractions); options absent or empty count as missing.
        expected: the option the claim says is best.
        others: the options it must beat.
        z: a fixed number of paired standard errors a difference must exceed instead of the t
            criterion (``None``, the default: the t critical value at ``confidence``).
        confidence: two-sided confidence level of the t criterion.

    Returns:
        ``{"verdict", "reason", "criterion", "expected", "comparisons": {other: {"diff", "se",
        "n", "threshold"}}, "missing": [...]}``.
    """
    present = {k for k, v in series.items() if v}
    missing = [o for o in [expected, *others] if o not in present]
    have = [o for o in others if o in present and o != expected]
    crit = criterion(z=z, confidence=confidence)
    out: dict[str, Any] = {"expected": expected, "comparisons": {}, "missing": missing,
                           "criterion": crit}
    if expected not in present or not have:
        what = expected if expected not in present else "every other option"
        return {**out, "verdict": "not judged", "reason": f"nothing to compare: {what} missing"}
    comps = {o: _compare(series[expected], series[o], z, confidence) for o in have}
    verdict, reason = verdict_of(comps, expected, crit)
    return {**out, "comparisons": comps, "verdict": verdict, "reason": reason}


def verdict_of(comps: Mapping[str, Mapping[str, Any]], expected: str, crit: str
               ) -> tuple[str, str]:
    """The rule of :func:`paired_verdict` on its comparisons (other -> ``{"diff", "se", "n",
    "threshold"}`` of ``expected - other``): ``(verdict, reason)``, ``holds`` when every
    difference is positive beyond its threshold, ``fails`` when some is negative beyond it,
    ``inconclusive`` otherwise; ``crit`` names the criterion in the reason."""
    worse = [o for o, c in comps.items() if _beyond(c, -1.0)]
    if all(_beyond(c) for c in comps.values()):
        return "holds", f"{expected} beats every other option by > {crit}, paired"
    if worse:
        return "fails", f"{', '.join(worse)} beat(s) {expected} by > {crit}, paired"
    return "inconclusive", f"{expected} is not separated from every other option by > {crit}, paired"


def winner(series: Mapping[str, Mapping[int, float]], blocks: Sequence[str], *,
           z: float | None = None, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The significant single-block winner of one target, or the top set of tied blocks.

    The best block is the single block of ``blocks`` with the highest mean (ties: the earlier
    block). It is the **winner** only when its paired difference (:func:`paired_diff`, best minus
    other, on their common seeds) to every other single block present is beyond the criterion
    (:func:`sims.infra.stats.beyond`: the two-sided t critical value of that comparison's number of
    seeds times its paired standard error, or ``z`` s.e. when given) -- an intersection of tests,
    so naming it needs no correction for the number of blocks. Otherwise there is no significant
    winner, and the **top set** is the blocks not significantly worse than the best: those whose
    difference to it is not beyond the criterion or has no s.e. (fewer than two common seeds). A
    named winner is the top set alone.

    Separately, the top set is compared with ``all`` (``beats_all``): ``holds`` when every block of
    the top set beats ``all`` beyond the criterion (whichever of them is truly best, it beats full
    fine-tuning), ``fails`` when ``all`` beats every one of them beyond it, ``inconclusive``
    otherwise, ``not judged`` without ``all`` or single blocks.

    Args:
        series: option -> seed -> metric (fractions; higher is better); options absent or empty
            count as not run. Options other than ``blocks`` and ``all`` are ignored.
        blocks: the single blocks in depth order.
        z: a fixed number of paired standard errors a difference must exceed instead of the t
            criterion (``None``, the default; 0 reduces the winner to a bare argmax over blocks
            that beat the rest on average -- never a claim).
        confidence: two-sided confidence level of the t criterion.

    Returns:
        ``{"best_block"`` (highest mean, not a claim; ``None`` without blocks), ``"winner"``
        (block or ``None``), ``"top_set"`` (blocks in depth order), ``"label"`` (the winner,
        ``"tie: b1, b2"``, ``"only b"`` for a single block run, ``""`` for none), ``"reason"``,
        ``"criterion"`` (in words), ``"comparisons"`` (other block -> ``{"diff", "se", "n",
        "threshold"}`` of best minus other), ``"beats_all"`` and ``"vs_all"`` (top-set block ->
        ``{"diff", "se", "n", "threshold"}`` of block minus ``all``)``}``.

    >>> w = winner({"block1": {0: .6, 1: .7}, "block2": {0: .5, 1: .6}, "head": {0: .6, 1: .5}},
    ...            ["block1", "block2", "head"])
    >>> w["winner"], w["label"], w["top_set"]
    (None, 'tie: block1, head', ['block1', 'head'])
    """
    present = [b for b in blocks if series.get(b)]
    means = {b: _mean(series[b]) for b in present}
    best = max(present, key=lambda b: (means[b], -present.index(b))) if present else None
    comps = {o: _compare(series[best], series[o], z, confidence) for o in present if o != best}
    top = [b for b in present if b == best or not _beyond(comps[b])]
    win = best if comps and top == [best] else None
    crit = criterion(z=z, confidence=confidence)
    if best is None:
        label, reason = "", "no single block ran"
    elif not comps:
        label, reason = f"only {best}", f"only {best} ran: no other single block to compare"
    elif win:
        label, reason = win, f"{win} beats every other single block by > {crit}, paired"
    else:
        label = "tie: " + ", ".join(top)
        reason = (f"no significant winner: {', '.join(top)} are not separated by > {crit}, "
                  f"paired ({best} has the highest mean)")
    out: dict[str, Any] = {"best_block": best, "winner": win, "top_set": top, "label": label,
                           "reason": reason, "criterion": crit, "comparisons": comps,
                           "vs_all": {}}
    if not top or not series.get("all"):
        return {**out, "beats_all": "not judged"}
    vs = {b: _compare(series[b], series["all"], z, confidence) for b in top}
    if all(_beyond(c) for c in vs.values()):
        beats = "holds"
    elif all(_beyond(c, -1.0) for c in vs.values()):
        beats = "fails"
    else:
        beats = "inconclusive"
    return {**out, "vs_all": vs, "beats_all": beats}


def winners(records: Iterable[Mapping[str, Any]], settings: Mapping[str, str] | None = None,
            *, z: float | None = None, confidence: float = CONFIDENCE
            ) -> dict[tuple[str, str], dict[str, Any]]:
    """Per ``(task, shift)``: :func:`winner` of its single blocks (the records counted as in
    :func:`summarize`)."""
    groups, _, order = _group(records, settings)
    return {key: winner({lab: _ok(d) for lab, d in groups[key].items()}, order[key], z=z,
                        confidence=confidence)
            for key in sorted(groups)}


def summarize(records: Iterable[Mapping[str, Any]], settings: Mapping[str, str] | None = None,
              *, z: float | None = None, confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """One row per ``(task, variant, option)`` (columns :data:`SUMMARY_COLUMNS`), in a stable
    order: tasks and variants sorted, options in depth order then ``all``, ``none``, automatic
    methods, ``cross-val``.

    ``is_winner`` and ``in_top_set`` (single blocks only, ``None`` for other options): whether the
    block is the target's significant winner, and whether it is in the top set (:func:`winner`
    with ``z`` and ``confidence``)."""
    groups, levels, order = _group(records, settings)
    rows = []
    for key in sorted(groups):
        by = groups[key]
        blocks = order[key]
        ok = {lab: _ok(d) for lab, d in by.items()}
        labels = [b for b in blocks if b in by] + [x for x in ("all", "none") if x in by]
        labels += sorted(x for x in by if x.startswith("auto-"))
        labels += [x for x in by if x not in labels]
        # Cross-Val: per seed, the single block with the best validation metric
        cv: dict[int, float] = {}
        seeds = set().union(*(by[b].keys() for b in blocks if b in by)) if blocks else set()
        for s in sorted(seeds):
            cands = [(by[b][s]["val_metric"], -i, by[b][s]["test_metric"])
                     for i, b in enumerate(blocks) if b in by and s in by[b]
                     and by[b][s]["status"] == "ok"]
            if cands:
                cv[s] = max(cands)[2]
        series = {lab: ok[lab] for lab in labels}
        if cv:
            series["cross-val"] = cv
            labels.append("cross-val")
        base = ok.get("all", {})
        win = winner(ok, blocks, z=z, confidence=confidence)
        for lab in labels:
            vals = series[lab]
            m, se = mean_se(sorted(vals.values()))
            ranked = lab in blocks and bool(vals)
            rm, rse, _ = paired_diff(vals, base) if lab != "all" else (0.0, 0.0, 0)
            failed = len(by[lab]) - len(vals) if lab in by else 0
            rows.append({"task": key[0], "shift": key[1], "level": levels[key], "tuned": lab,
                         "n_seeds": len(vals), "mean_acc": m, "se": se,
                         "rel_vs_all": rm if base else math.nan,
                         "rel_se": rse if base else math.nan, "failed": failed,
                         "lr_edge_frac": _frac(by[lab], "lr_at_grid_edge") if lab in by
                         else math.nan,
                         "epoch_last_frac": _frac(by[lab], "best_epoch_last") if lab in by
                         else math.nan,
                         "is_winner": lab == win["winner"] if ranked else None,
                         "in_top_set": lab in win["top_set"] if ranked else None})
    return rows


def summary_csv(rows: Sequence[Mapping[str, Any]],
                columns: Sequence[str] = SUMMARY_COLUMNS) -> str:
    """CSV text of :func:`summarize` rows (or rows with other ``columns``; floats with 4
    decimals)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _expected_blocks(exp: str, blocks: Sequence[str]) -> list[str]:
    if exp == "first":
        return list(blocks[:1])
    if exp == "last":
        return list(blocks[-1:])
    return list(blocks[1:-1])


def _fraction(recs: Iterable[Mapping[str, Any]], key: str) -> tuple[int, int]:
    flags = [r.get(key) for r in recs if r["status"] == "ok" and r.get(key) is not None]
    return sum(bool(f) for f in flags), len(flags)


def verdicts(records: Iterable[Mapping[str, Any]], settings: Mapping[str, str] | None = None,
             *, z: float | None = None, confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """Per ``(task, shift)``: the paired verdict on the paper's ordering (see the module doc).

    Each entry: ``task, shift, level, paper_ordering, verdict, reason, criterion`` (in words),
    ``missing, expected_block, comparisons`` (other option -> ``{"diff", "se", "n", "threshold"}``
    of expected minus other, fractions in [0, 1]), ``best_block, best_acc, all_acc,
    best_minus_all, best_minus_all_se, accs, lr_edge_runs, epoch_last_runs`` and ``holds``
    (``True``/``False`` for holds/fails, ``None`` otherwise).

    ``best_block`` is the highest mean, not a claim, and ``best_minus_all`` its paired difference
    to ``all`` (biased upward when blocks are close: the block was picked for its high mean). The
    claims are the :func:`winner` fields: ``winner`` (a block or ``None``), ``top_set``,
    ``winner_label`` (``"block1"`` or ``"tie: block1, block2"``), ``winner_reason``,
    ``winner_comparisons`` (best minus each other block), ``beats_all`` and ``vs_all``.
    """
    groups, levels, order = _group(records, settings)
    out = []
    for key in sorted(groups):
        by, blocks, level = groups[key], order[key], levels[key]
        ok = {lab: _ok(d) for lab, d in by.items()}
        present = {lab for lab, v in ok.items() if v}
        means = {lab: _mean(v) for lab, v in ok.items() if v}
        win = winner(ok, blocks, z=z, confidence=confidence)
        best = win["best_block"]
        all_acc = means.get("all", math.nan)
        bd, bse, _ = paired_diff(ok[best], ok["all"]) if best and "all" in present else (
            math.nan, math.nan, 0)
        runs = [r for d in by.values() for r in d.values()]
        edge, n_edge = _fraction(runs, "lr_at_grid_edge")
        last, n_last = _fraction(runs, "best_epoch_last")
        entry: dict[str, Any] = {
            "task": key[0], "shift": key[1], "level": level, "criterion": win["criterion"],
            "paper_ordering": _EXPECTED.get(level), "best_block": best,
            "best_acc": means.get(best, math.nan) if best else math.nan, "all_acc": all_acc,
            "best_minus_all": bd, "best_minus_all_se": bse,
            "accs": {b: means[b] for b in [*blocks, "all", "none"] if b in means},
            "lr_edge_runs": [edge, n_edge], "epoch_last_runs": [last, n_last],
            "missing": [], "comparisons": {}, "expected_block": None,
            "winner": win["winner"], "top_set": win["top_set"], "winner_label": win["label"],
            "winner_reason": win["reason"], "winner_comparisons": win["comparisons"],
            "beats_all": win["beats_all"], "vs_all": win["vs_all"]}
        exp = _EXPECTED.get(level)
        if exp is None:
            entry.update(verdict="not judged", holds=None,
                         reason=f"the paper makes no prediction for {level} shifts")
            out.append(entry)
            continue
        expected = _expected_blocks(exp, blocks)
        others = [b for b in blocks if b not in expected] + ["all"]
        have_exp = [b for b in expected if b in present]
        have_oth = [o for o in others if o in present]
        entry["missing"] = [b for b in [*expected, *others] if b not in present]
        if not have_exp or not have_oth:
            what = "the predicted level's block(s)" if not have_exp else "every other option"
            entry.update(verdict="not judged", holds=None,
                         reason=f"nothing to compare: {what} missing "
                                f"({', '.join(entry['missing'])})")
            out.append(entry)
            continue
        eb = max(have_exp, key=lambda b: (means[b], -blocks.index(b)))
        pv = paired_verdict(ok, eb, have_oth, z=z, confidence=confidence)
        verdict = pv["verdict"]
        entry.update(expected_block=eb, comparisons=pv["comparisons"], verdict=verdict,
                     reason=pv["reason"],
                     holds=True if verdict == "holds" else (False if verdict == "fails" else None))
        out.append(entry)
    return out


def edge_warning(records: Iterable[Mapping[str, Any]]) -> str | None:
    """A warning line when selected lrs sit at an edge of the grid (``None`` if none do)."""
    by: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        if r["status"] == "ok" and r.get("lr_at_grid_edge") is not None:
            by[label_of(r)].append(bool(r["lr_at_grid_edge"]))
    hit = {lab: (sum(v), len(v)) for lab, v in by.items() if any(v)}
    if not hit:
        return None
    total = sum(k for k, _ in hit.values()), sum(len(v) for v in by.values())
    detail = ", ".join(f"{lab} {k}/{n}" for lab, (k, n) in sorted(hit.items()))
    return (f"warning: the selected lr is at an edge of the grid in {total[0]} of {total[1]} runs "
            f"({detail}); widen the grid (--lrs) before trusting these comparisons")
