"""The t criterion of the realdata verdicts: at 3 seeds a paired difference of about 3 s.e. is
no 95% claim (t critical value 4.30), though the old fixed 2 s.e. called it one; at 32 seeds both
agree. The mutation forces the old rule (the t critical value replaced by 2.0) and the 3-seed
assertions turn red."""

from __future__ import annotations

import json

import pytest

from realdata.experiments.noise_in_block import noise_verdicts
from realdata.experiments.size_curve import size_verdicts
from realdata.summary import paired_diff, paired_verdict, verdicts, winner
from sims.infra import RunStore, stats
from tests.realdata.experiments.test_noise_in_block import _recs as noise_recs
from tests.realdata.experiments.test_size_curve import _recs as size_recs
from tests.realdata.test_winner import BLOCKS, _recs, _series

#: per-seed gaps (+.05, +.02, +.07): mean 4.67 points, s.e. 1.45, i.e. 3.2 s.e. over 3 seeds
GAP3 = (0.05, 0.02, 0.07)
#: 32 seeds, gaps 0.027 ± 0.05 alternating: 3.0 s.e. (t critical value 2.04 at 32 seeds)
GAP32 = tuple(0.027 + 0.05 * (-1) ** s for s in range(32))


def _accs(gaps: tuple[float, ...]) -> dict[str, list[float]]:
    """block1 ahead of block2 and of ``all`` by ``gaps`` per seed, far ahead of block3 and head;
    seeds spread widely (0.5 .. 0.8) so only the pairing separates them."""
    b1 = [0.5 + 0.3 * ((7 * s) % 11) / 10 for s in range(len(gaps))]
    return {"block1": b1, "block2": [x - g for x, g in zip(b1, gaps)],
            "block3": [x - 0.3 - g for x, g in zip(b1, gaps)],
            "head": [x - 0.4 - 2 * g for x, g in zip(b1, gaps)],
            "all": [x - g for x, g in zip(b1, gaps)]}


def _old_rule(monkeypatch):
    """The fault to inject: every default criterion back to a fixed 2 s.e., whatever n."""
    monkeypatch.setattr(stats, "t_critical", lambda n, confidence=stats.CONFIDENCE: 2.0)


def test_the_construction_is_3_s_e_at_3_seeds_and_at_32():
    for gaps, n in ((GAP3, 3), (GAP32, 32)):
        s = _series(_accs(gaps))
        d, se, k = paired_diff(s["block1"], s["block2"])
        assert k == n and 2.9 < d / se < 3.3


def test_paired_verdict_at_3_seeds_is_inconclusive_under_t_but_holds_at_2_s_e(monkeypatch):
    s = _series(_accs(GAP3))
    others = ["block2", "block3", "head", "all"]
    v = paired_verdict(s, "block1", others)
    assert v["verdict"] == "inconclusive"
    assert v["criterion"] == "t(n−1, two-sided 95%) s.e."
    assert v["comparisons"]["block2"]["threshold"] == pytest.approx(4.303, abs=1e-3)
    assert paired_verdict(s, "block1", others, z=2.0)["verdict"] == "holds"  # the explicit override
    assert paired_verdict(s, "block1", others, z=2.0)["criterion"] == "2 s.e."
    _old_rule(monkeypatch)  # mutation: the old fixed threshold calls it holds
    assert paired_verdict(s, "block1", others)["verdict"] == "holds"


def test_the_reverse_at_3_seeds_is_no_fails_under_t():
    s = _series(_accs(GAP3))
    assert paired_verdict(s, "block2", ["block1"])["verdict"] == "inconclusive"
    assert paired_verdict(s, "block2", ["block1"], z=2.0)["verdict"] == "fails"


def test_winner_and_beats_all_at_3_seeds_are_a_tie_under_t(monkeypatch):
    s = _series(_accs(GAP3))
    w = winner(s, BLOCKS)
    assert w["winner"] is None and w["label"] == "tie: block1, block2"
    assert w["beats_all"] == "inconclusive"
    old = winner(s, BLOCKS, z=2.0)
    assert old["winner"] == "block1" and old["beats_all"] == "holds"
    _old_rule(monkeypatch)
    assert winner(s, BLOCKS)["winner"] == "block1"


def test_at_32_seeds_t_and_2_s_e_agree():
    s = _series(_accs(GAP32))
    others = ["block2", "block3", "head", "all"]
    for kw in ({}, {"z": 2.0}):
        assert paired_verdict(s, "block1", others, **kw)["verdict"] == "holds"
        w = winner(s, BLOCKS, **kw)
        assert w["winner"] == "block1" and w["beats_all"] == "holds"
    c = winner(s, BLOCKS)["comparisons"]["block2"]
    assert c["n"] == 32 and c["threshold"] == pytest.approx(2.040, abs=1e-3)
    # and a gap of 1.5 s.e. is nothing under either
    half = _series(_accs(tuple(0.0135 + 0.05 * (-1) ** k for k in range(32))))
    for kw in ({}, {"z": 2.0}):
        assert winner(half, BLOCKS, **kw)["winner"] is None


def test_verdict_entries_and_verdicts_json_carry_the_criterion(tmp_path, monkeypatch):
    (v,) = verdicts(_recs(_accs(GAP3), "three"))
    assert v["verdict"] == "inconclusive" and v["winner"] is None
    assert v["criterion"] == "t(n−1, two-sided 95%) s.e."
    assert verdicts(_recs(_accs(GAP3), "three"), z=2.0)[0]["verdict"] == "holds"
    (many,) = verdicts(_recs(_accs(GAP32), "many"))
    assert many["verdict"] == "holds" and many["winner"] == "block1"
    RunStore(tmp_path).append(_recs(_accs(GAP3), "three"))
    from paper_figures import realdata as fig

    assert fig.main(["--results", str(tmp_path)]) == 0
    table = (tmp_path / "figures" / "realdata_table.md").read_text()
    assert "Student-t critical value" in table and "**" not in table.split("\n\n", 1)[1]
    _old_rule(monkeypatch)
    assert verdicts(_recs(_accs(GAP3), "three"))[0]["verdict"] == "holds"
    assert fig.main(["--results", str(tmp_path)]) == 0
    assert "**" in (tmp_path / "figures" / "realdata_table.md").read_text().split("\n\n", 1)[1]
    json.dumps(v)  # a plain-JSON entry (verdicts.json)


def test_size_shrink_at_3_seeds_is_inconclusive_under_t(monkeypatch):
    # block1's gap to all is 10 points at 1 per class and shrinks by GAP3 at 10 per class: 3.2 s.e.
    base = [0.60, 0.70, 0.65]
    acc = {1: {"block1": base, "head": [0.2] * 3, "all": [x - 0.10 for x in base]},
           10: {"block1": base, "head": [0.2] * 3,
                "all": [x - 0.10 + g for x, g in zip(base, GAP3)]}}
    (v,) = size_verdicts(size_recs(acc))
    assert v["verdict"] == "inconclusive" and v["shrink_n"] == 3
    assert v["threshold"] == pytest.approx(4.303, abs=1e-3) and "criterion 4.3 s.e." in v["reason"]
    assert size_verdicts(size_recs(acc), z=2.0)[0]["verdict"] == "holds"
    _old_rule(monkeypatch)
    assert size_verdicts(size_recs(acc))[0]["verdict"] == "holds"


def test_noise_verdict_at_3_seeds_is_inconclusive_under_t(monkeypatch):
    accs = {k: v for k, v in _accs(GAP3).items() if k != "block3"}
    (v,) = noise_verdicts(noise_recs(accs))
    assert v["verdict"] == "inconclusive" and v["perturbed"] == "block1"
    _old_rule(monkeypatch)
    assert noise_verdicts(noise_recs(accs))[0]["verdict"] == "holds"
