"""The single-block winner: named only on a paired per-seed difference beyond the t criterion
(two-sided 95% Student-t critical value of the comparison's seeds times its s.e.) against every
other block; otherwise a tie and its top set. Summary rows, verdict entries, the markdown table and
the size curve carry it (with mutations: unpaired s.e., z = 0)."""

from __future__ import annotations

import dataclasses
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paper_figures import realdata as fig
from realdata import summary
from realdata.records import SCHEMA_VERSION, RunRecord
from realdata.summary import paired_diff, summarize, summary_csv, verdicts, winner, winners
from sims.infra import RunStore
from sims.infra.stats import mean_se, t_critical

BLOCKS = ["block1", "block2", "block3", "head"]
#: every field of the record schema (the ones the summaries do not read left empty)
_EMPTY = {f.name: None for f in dataclasses.fields(RunRecord)}

#: block1 has the highest mean, but block1 - block2 = +.02, -.01, +.04 (mean 1.7, s.e. 1.5 points):
#: not separated; both beat block3, head and all by far (block1 - all = +.12, +.11, +.14: 14 s.e.,
#: beyond the 4.30 s.e. of the t criterion at 3 seeds).
TIE = {"block1": [0.62, 0.60, 0.70], "block2": [0.60, 0.61, 0.66], "block3": [0.40, 0.41, 0.42],
       "head": [0.30, 0.31, 0.30], "all": [0.50, 0.49, 0.56], "none": [0.1, 0.1, 0.1]}
#: Seeds differ a lot (0.3 .. 0.9) and the blocks move together: block1 - block2 is
#: +.02, +.015, +.02, +.015 (paired s.e. 0.0014), while the unpaired s.e. of the difference is 0.18.
PAIRED = {"block1": [0.30, 0.50, 0.70, 0.90], "block2": [0.28, 0.485, 0.68, 0.885],
          "block3": [0.20, 0.40, 0.60, 0.80], "head": [0.10, 0.30, 0.50, 0.70],
          "all": [0.25, 0.45, 0.65, 0.85]}


def _recs(accs: dict[str, list[float]], variant: str = "v", level: str = "input") -> list[dict]:
    return [{**_EMPTY, "schema_version": SCHEMA_VERSION, "settings": "s",
             "id": f"{variant}-{o}-{s}", "task": "t", "variant": variant, "level": level,
             "tuned": o, "method": "fixed", "seed": s, "status": "ok", "test_metric": v,
             "val_metric": v, "blocks": BLOCKS}
            for o, vals in accs.items() for s, v in enumerate(vals)]


def _series(accs: dict[str, list[float]]) -> dict[str, dict[int, float]]:
    return {o: dict(enumerate(v)) for o, v in accs.items()}


def _unpaired(a, b):
    """The fault to inject: difference of means with the unpaired s.e. sqrt(se_a² + se_b²)."""
    (ma, sa), (mb, sb) = mean_se(list(a.values())), mean_se(list(b.values()))
    return ma - mb, math.hypot(sa, sb), min(len(a), len(b))


def _bare_argmax(monkeypatch):
    """The fault to inject: every winner call made with z = 0 (a bare argmax of the means among
    blocks that beat the rest on average)."""
    real = summary.winner
    monkeypatch.setattr(summary, "winner", lambda s, b, **kw: real(s, b, z=0.0))


# ----------------------------------------------------------------------------- winner()


def test_the_best_mean_is_no_winner_when_not_separated_by_z_paired_se():
    w = winner(_series(TIE), BLOCKS)
    assert w["best_block"] == "block1" and w["winner"] is None
    assert w["top_set"] == ["block1", "block2"] and w["label"] == "tie: block1, block2"
    assert "no significant winner" in w["reason"]
    c = w["comparisons"]["block2"]
    assert c["diff"] == pytest.approx(0.05 / 3) and c["se"] == pytest.approx(0.01453, abs=1e-5)
    # mutation: z = 0 (a bare argmax) names block1 -- the assertion above would be red
    assert winner(_series(TIE), BLOCKS, z=0.0)["winner"] == "block1"


def test_a_paired_winner_that_an_unpaired_standard_error_would_miss(monkeypatch):
    w = winner(_series(PAIRED), BLOCKS)
    assert w["winner"] == "block1" and w["top_set"] == ["block1"] and w["label"] == "block1"
    c = w["comparisons"]["block2"]
    assert c["diff"] == pytest.approx(0.0175) and c["se"] == pytest.approx(0.0014434, rel=1e-4)
    assert c["n"] == 4
    # mutation: an unpaired implementation sees +1.75 ± 18 points and names nobody
    monkeypatch.setattr(summary, "paired_diff", _unpaired)
    assert summary.winner(_series(PAIRED), BLOCKS)["winner"] is None


def test_the_top_set_against_all_holds_fails_or_is_inconclusive():
    w = winner(_series(TIE), BLOCKS)
    assert w["beats_all"] == "holds" and set(w["vs_all"]) == {"block1", "block2"}
    assert w["vs_all"]["block2"]["diff"] == pytest.approx(0.32 / 3)
    # the winner alone is compared with all
    assert winner(_series(PAIRED), BLOCKS)["vs_all"].keys() == {"block1"}
    # all beats every block of the top set -> fails
    low = {**TIE, "all": [0.80, 0.82, 0.81]}
    assert winner(_series(low), BLOCKS)["beats_all"] == "fails"
    # one top-set block is not separated from all -> inconclusive, not holds
    mixed = {**TIE, "all": [0.60, 0.55, 0.65]}
    assert winner(_series(mixed), BLOCKS)["beats_all"] == "inconclusive"
    no_all = {k: v for k, v in TIE.items() if k != "all"}
    assert winner(_series(no_all), BLOCKS)["beats_all"] == "not judged"


def test_one_block_or_one_common_seed_is_never_a_winner():
    only = winner(_series({"head": [0.9, 0.8], "all": [0.5, 0.4]}), BLOCKS)
    assert only["winner"] is None and only["label"] == "only head" and only["top_set"] == ["head"]
    assert winner({}, BLOCKS)["label"] == "" and winner({}, BLOCKS)["best_block"] is None
    # block2 shares one seed with block1: no standard error, so it stays in the top set
    s = _series(PAIRED)
    s["block2"] = {0: 0.1}
    w = winner(s, BLOCKS)
    assert w["winner"] is None and w["top_set"] == ["block1", "block2"]


# ----------------------------------------------------------------------------- summaries


def test_verdict_entries_and_summary_rows_carry_the_winner():
    recs = _recs(TIE, "tie") + _recs(PAIRED, "paired")
    v = {e["shift"]: e for e in verdicts(recs)}
    assert v["tie"]["best_block"] == "block1" and v["tie"]["winner"] is None  # kept, and the claim
    assert v["tie"]["winner_label"] == "tie: block1, block2" and v["tie"]["beats_all"] == "holds"
    assert v["paired"]["winner"] == "block1" and v["paired"]["top_set"] == ["block1"]
    assert v["paired"]["winner_comparisons"]["block2"]["n"] == 4
    rows = {(r["shift"], r["tuned"]): r for r in summarize(recs)}
    assert [rows[("tie", b)]["in_top_set"] for b in BLOCKS] == [True, True, False, False]
    assert not any(rows[("tie", b)]["is_winner"] for b in BLOCKS)
    assert [rows[("paired", b)]["is_winner"] for b in BLOCKS] == [True, False, False, False]
    assert rows[("tie", "all")]["is_winner"] is None and rows[("tie", "cross-val")]["in_top_set"] is None
    assert winners(recs)[("t", "paired")]["winner"] == "block1"
    text = summary_csv(summarize(recs)).splitlines()
    assert text[0].endswith(",is_winner,in_top_set") and text[1].endswith(",True,True")


def test_the_printout_names_the_winner_or_the_tie(monkeypatch):
    from realdata.benchmark import _verdict_line

    def lines():
        return {v["shift"]: _verdict_line(v) for v in verdicts(_recs(TIE, "tie")
                                                                + _recs(PAIRED, "paired"))}

    got = lines()
    assert ("; winner block1 60.0 (beats every other single block by > t(n−1, two-sided 95%) s.e., "
            "paired)") in got["paired"]
    assert "no significant winner (tie: block1, block2; highest mean block1 64.0)" in got["tie"]
    assert "top set - all: block1 +12.3 ± 0.9, block2 +10.7 ± 0.7 (holds)" in got["tie"]
    assert "winner block1" not in got["tie"]
    _bare_argmax(monkeypatch)  # mutation: z = 0 names the tie's highest mean
    assert "; winner block1" in lines()["tie"]


def _table(recs):
    rows = summarize(recs)
    blocks = {(r["task"], r["variant"]): list(r["blocks"]) for r in recs}
    return fig._table(rows, blocks, winners(recs))


def _line(table: str, shift: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| t | {shift} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table_bolds_only_a_significant_winner_and_marks_a_tie(monkeypatch):
    recs = _recs(TIE, "tie") + _recs(PAIRED, "paired")
    table = _table(recs)
    tie, paired = _line(table, "tie"), _line(table, "paired")
    head = [c.strip() for c in table.splitlines()[2].strip("|").split("|")]
    assert head[-2:] == ["winner", "top set − all"] and len(tie) == len(head)
    # (a) the best mean of a tie is not bold; the top set is marked, the column says tie
    assert not any("**" in c for c in tie)
    assert tie[3].endswith("†") and tie[4].endswith("†") and "†" not in tie[5] + tie[6]
    assert tie[-2] == "tie: block1, block2"
    assert tie[-1].startswith("block1 +12.3 ± 0.9, block2 +10.7 ± 0.7") and tie[-1].endswith(
        "(holds)")
    # a paired winner is the only bold cell of its line
    assert [c for c in paired if "**" in c] == ["**60.0 ± 12.9**"] and paired[-2] == "block1"
    assert "paired per-seed difference" in table.splitlines()[0]
    assert "c = the two-sided 95% Student-t critical value" in table.splitlines()[0]
    # (c) mutation: z = 0 bolds the tie's highest mean
    _bare_argmax(monkeypatch)
    assert "**" in _line(_table(recs), "tie")[3]


def test_table_is_written_by_the_cli(tmp_path):
    RunStore(tmp_path).append(_recs(TIE, "tie") + _recs(PAIRED, "paired"))
    assert fig.main(["--results", str(tmp_path)]) == 0
    table = (tmp_path / "figures" / "realdata_table.md").read_text()
    assert _line(table, "tie")[-2] == "tie: block1, block2" and _line(table, "paired")[-2] == "block1"


# ----------------------------------------------------------------------------- size curve


def test_size_curve_follows_the_highest_mean_and_says_it_is_not_a_winner(tmp_path, monkeypatch):
    import paper_figures.realdata_experiments as rx
    from realdata.experiments.size_curve import size_verdicts
    from tests.realdata.experiments.test_size_curve import _recs as size_recs

    tie = {n: {"block1": [0.50 + n / 100, 0.40, 0.62], "block2": [0.49 + n / 100, 0.42, 0.60],
               "head": [0.1, 0.1, 0.1], "all": [0.3, 0.3, 0.3]} for n in (1, 10)}
    recs = [{**r, "id": f"{i}", "settings": "s"} for i, r in enumerate(size_recs(tie))]
    (v,) = size_verdicts(recs)
    assert v["best_block"] == "block1" and v["winner"] is None
    assert v["choice"] == "highest mean, not a significant winner"
    assert v["winner_label"] == "tie: block1, block2"
    assert size_verdicts(recs, z=0.0)[0]["choice"] == "paired winner"  # mutation: bare argmax
    RunStore(tmp_path).append(recs)
    drawn = {}

    def keep(fig_, out_dir, stem):
        drawn[stem] = [t.get_text() for ax in fig_.axes if ax.get_legend()
                       for t in ax.get_legend().get_texts()]
        return []

    monkeypatch.setattr(rx, "_save", keep)
    rx.draw_size(tmp_path)
    assert drawn["size_curve"] == ["block1 (highest mean, n.s.)", "all", "head"]
    md = (tmp_path / "figures" / "size_curve.md").read_text()
    assert "| block1 (highest mean, not a significant winner; tie: block1, block2) |" in md


# ----------------------------------------------------------------------------- properties


def _oracle(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    d = [a[s] - b[s] for s in a if s in b]
    if len(d) < 2:
        return (statistics.fmean(d) if d else math.nan), math.nan, len(d)
    return statistics.fmean(d), statistics.stdev(d) / math.sqrt(len(d)), len(d)


@st.composite
def _cases(draw):
    """Block -> seed -> metric in steps of 0.01 (inexact in binary, so the order of summation
    shows in the last bits) with shared per-seed offsets (paired structure), some runs missing;
    a seed relabelling; a z."""
    k = draw(st.integers(2, 4))
    n = draw(st.integers(1, 6))
    offset = draw(st.lists(st.integers(0, 30), min_size=n, max_size=n))
    series = {}
    for b in BLOCKS[:k]:
        vals = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n))
        keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        series[b] = {s: (offset[s] + vals[s]) * 0.01 for s in range(n) if keep[s] or s == 0}
    perm = draw(st.permutations(range(n)))
    return series, perm, draw(st.sampled_from([None, 0.0, 1.0, 2.0, 3.0]))


def _crit(n: int, z: float | None) -> float:
    """The standard errors a difference over n pairs must exceed (z, else the 95% t value)."""
    return z if z is not None else t_critical(n)


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_a_named_winner_has_the_highest_mean_and_beats_each_block_by_the_criterion(case):
    series, _, z = case
    w = winner(series, BLOCKS, z=z)
    means = {b: statistics.fmean(v.values()) for b, v in series.items()}
    best = w["best_block"]
    assert all(means[best] >= m - 1e-12 for m in means.values())
    assert best in w["top_set"] and w["top_set"] == [b for b in BLOCKS if b in w["top_set"]]
    for o, c in w["comparisons"].items():
        d, se, n = _oracle(series[best], series[o])
        assert c["n"] == n and c["diff"] == pytest.approx(d, abs=1e-12)
        assert math.isnan(c["se"]) == math.isnan(se) and (math.isnan(se) or c["se"] == pytest.approx(
            se, abs=1e-12))
        separated = n >= 2 and c["diff"] > _crit(n, z) * c["se"]
        assert (o not in w["top_set"]) == separated
        if n < 2 and z is None:
            assert math.isnan(c["threshold"])  # no t value without a standard error
        else:
            assert c["threshold"] == pytest.approx(_crit(n, z), rel=1e-12)
    if w["winner"] is not None:
        assert w["winner"] == best and w["top_set"] == [best]
        assert all(c["n"] >= 2 and c["diff"] > _crit(c["n"], z) * c["se"]
                   for c in w["comparisons"].values())
    else:
        assert len(w["top_set"]) >= 2 or len(series) == 1 or not w["comparisons"]
    # a stricter criterion never names a winner the laxer one did not
    stricter = {"z": z + 1.0} if z is not None else {"confidence": 0.99}
    if winner(series, BLOCKS, **stricter)["winner"] is not None:
        assert w["winner"] is not None


@settings(max_examples=200, deadline=None)
@given(_cases())
def test_relabelling_seeds_jointly_across_blocks_changes_nothing(case):
    series, perm, z = case
    relabelled = {b: {perm[s]: v for s, v in reversed(list(d.items()))}
                  for b, d in reversed(list(series.items()))}
    assert repr(winner(relabelled, BLOCKS, z=z)) == repr(winner(series, BLOCKS, z=z))
    a, b = series[BLOCKS[0]], series[BLOCKS[1]]
    pa, pb = relabelled[BLOCKS[0]], relabelled[BLOCKS[1]]
    assert repr(paired_diff(pa, pb)) == repr(paired_diff(a, b))


def test_the_examples_in_the_summary_docstrings_hold():
    import doctest

    result = doctest.testmod(summary)
    assert result.attempted >= 2 and result.failed == 0
