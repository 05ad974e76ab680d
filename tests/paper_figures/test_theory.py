"""paper_figures theory: every figure is a non-empty PNG of the expected size (plus a PDF)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paper_figures.__main__ import main as cli
from paper_figures.theory import DPI, FIGSIZE, draw_theory
from sims.engine import compute_group
from sims.grid import shape_groups
from sims.infra import RunStore, write_json_atomic
from tests.sims.tiny import TINY


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("theory")
    store = RunStore(out)
    for g in shape_groups(TINY):
        store.append(compute_group(g))
    write_json_atomic(out / "config.json", {"config": TINY.to_dict()})
    return out


def test_cli_draws_all_figures(results: Path, capsys) -> None:
    assert cli(["theory", "--results", str(results)]) == 0
    printed = capsys.readouterr().out.split()
    names = {Path(p).stem for p in printed}
    assert names == {"loss_vs_n_gaussian", "loss_vs_n_sparse", "phase_gaussian",
                     "phase_sparse", "c5_success"}
    for p in map(Path, printed):
        assert p.is_file() and p.stat().st_size > 1000
        if p.suffix == ".png":
            with Image.open(p) as im:
                assert im.size == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))
                px = np.asarray(im.convert("L"), dtype=float)
            assert px.std() > 5  # not a blank canvas
        else:
            assert p.read_bytes()[:4] == b"%PDF"


def test_draw_to_other_folder(results: Path, tmp_path: Path) -> None:
    paths = draw_theory(results, tmp_path / "figs")
    assert len(paths) == 10 and all(p.parent == tmp_path / "figs" for p in paths)


def test_missing_results_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert cli(["theory", "--results", str(tmp_path)]) == 2
    assert "runs.jsonl not found" in capsys.readouterr().err
    assert cli(["nope"]) == 2


def test_figures_respect_the_umask_and_leave_no_temp(results: Path, tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        paths = draw_theory(results, out_dir=tmp_path)
    finally:
        os.umask(old)
    assert paths and sorted(tmp_path.iterdir()) == sorted(paths)
    assert {oct(p.stat().st_mode & 0o777) for p in paths} == {"0o644"}


def _rec(method: str, seed: int, loss: float, gd_seeds: int | None) -> dict:
    r = {"activation": "relu", "shift": "output", "method": method, "n": 8, "d": 16, "k": 2,
         "seed_index": seed, "target_loss": loss, "initial_target_loss": 1.0}
    return r if gd_seeds is None else {**r, "gd_seeds": gd_seeds}


def test_phase_compares_tune_modes_on_the_same_seeds() -> None:
    """With cost tiers, `full` ran on seeds 0-1 only; `last` is worse than `full` there but far better
    on the closed-form-only seeds 2-3. The winner must come from seeds 0-1 (full), not from means over
    different seeds (which would pick last). Untiered, where `full` ran on every seed, the two modes
    trade places from seed to seed: no significant winner."""
    from paper_figures.theory import TIE, TUNES, phase_winners

    def records(gd_seeds):
        rs = [_rec("full", s, 0.15, gd_seeds) for s in (0, 1)]
        rs += [_rec("last", s, 0.2, gd_seeds) for s in (0, 1)]
        rs += [_rec("last", s, 0.001, gd_seeds) for s in (2, 3)]
        if gd_seeds is None:
            rs += [_rec("full", s, 0.15, gd_seeds) for s in (2, 3)]
        return rs

    _, _, grid = phase_winners(records(2), "relu", "output")
    assert TUNES[grid[0][0]] == "full"
    _, _, grid = phase_winners(records(None), "relu", "output")
    assert grid[0][0] == TIE


def _cell(first: list[float], full: list[float]) -> list[dict]:
    return ([_rec("first", s, x, None) for s, x in enumerate(first)]
            + [_rec("full", s, x, None) for s, x in enumerate(full)])


def test_phase_names_no_winner_without_a_significant_paired_difference() -> None:
    """`full` has the lower mean, but the per-seed differences change sign: a bare argmin of the
    means (the mutation below) would name `full`; the paired test calls the cell a tie."""
    from paper_figures.theory import TIE, TUNES, phase_winners

    recs = _cell(first=[0.30, 0.50, 0.40, 0.60], full=[0.45, 0.30, 0.55, 0.42])
    _, _, grid = phase_winners(recs, "relu", "output")
    assert grid[0][0] == TIE
    _, _, grid = phase_winners(recs, "relu", "output", z=0.0)  # mutation: any lower mean wins
    assert TUNES[grid[0][0]] == "full"


def test_phase_pairs_the_runs_of_a_seed() -> None:
    """The seeds' losses spread widely, but `first` is below `full` on every seed by 0.01: paired,
    that is a clear winner; with the pairing broken (full's seeds rotated) the same numbers are a
    tie, so the pairing is what decides."""
    from paper_figures.theory import TIE, TUNES, cell_winner, phase_winners

    first = [0.10, 0.90, 0.30, 0.70, 0.50]
    full = [x + 0.01 for x in first]
    _, _, grid = phase_winners(_cell(first, full), "relu", "output")
    assert TUNES[grid[0][0]] == "first"
    rotated = full[1:] + full[:1]
    assert cell_winner({"first": dict(enumerate(first)), "full": dict(enumerate(rotated))}) == TIE


def test_phase_keeps_the_runs_of_different_shifts_apart(monkeypatch) -> None:
    """Two input shifts (alpha 2 and 3) with the same seed indices are different runs and both
    count: `first` wins under alpha 2 and `full` under alpha 3, so the cell has no significant
    winner. Keying runs by seed alone (the mutation) keeps one shift's runs and names `full`."""
    import paper_figures.theory as theory

    recs = []
    for alpha, gaps in ((2.0, (0.05, 0.06, 0.04)), (3.0, (-0.01, -0.02, -0.015))):
        for s, gap in enumerate(gaps):
            base = {"alpha": alpha, "shift_kind": "scale"}
            recs.append({**_rec("first", s, 0.1 * (s + 1), None), **base})
            recs.append({**_rec("full", s, 0.1 * (s + 1) + gap, None), **base})
    _, _, grid = theory.phase_winners(recs, "relu", "output")
    assert grid[0][0] == theory.TIE
    monkeypatch.setattr(theory, "RUN_FIELDS", ("seed_index",))
    _, _, grid = theory.phase_winners(recs, "relu", "output")
    assert theory.TUNES[grid[0][0]] == "full"


def test_phase_cell_at_3_runs_and_3_s_e_is_a_tie_under_the_t_criterion(monkeypatch) -> None:
    """`first` is below `full` by 0.05, 0.02, 0.07 on three runs (3.2 s.e.): the old fixed 2 s.e.
    named `first`; the two-sided 95% t value at 3 runs is 4.30, so the cell is a tie. Over 32 runs
    at 3 s.e. (t value 2.04) both rules name `first`. Mutation: the t value replaced by 2."""
    import sims.infra.stats as stats
    from paper_figures.theory import TIE, TUNES, WIN_CONFIDENCE, phase_winners

    assert WIN_CONFIDENCE == 0.95
    first = [0.30, 0.55, 0.42]
    recs = _cell(first, [x + g for x, g in zip(first, (0.05, 0.02, 0.07))])
    assert phase_winners(recs, "relu", "output")[2][0][0] == TIE
    assert TUNES[phase_winners(recs, "relu", "output", z=2.0)[2][0][0]] == "first"
    first32 = [0.2 + 0.02 * ((7 * s) % 11) for s in range(32)]
    many = _cell(first32, [x + 0.027 + 0.05 * (-1) ** s for s, x in enumerate(first32)])
    for z in (None, 2.0):
        assert TUNES[phase_winners(many, "relu", "output", z=z)[2][0][0]] == "first"
    monkeypatch.setattr(stats, "t_critical", lambda n, confidence=0.95: 2.0)
    assert TUNES[phase_winners(recs, "relu", "output")[2][0][0]] == "first"
