"""SweepConfig: presets, TOML, overrides, validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sims.config import SweepConfig, load_toml, preset, resolve, with_overrides
from twolayer import InputShift


def test_presets_are_valid_and_frozen() -> None:
    quick, full = preset("quick"), preset("full")
    assert quick == SweepConfig() and quick.preset == "quick"
    assert max(full.dims) == 1024 and full.seeds == 100 and not full.merge_shapes
    assert max(full.sample_sizes(1024)) == 2048 and min(full.sample_sizes(16)) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.seeds = 3  # type: ignore[misc]
    medium = preset("medium")
    assert medium.dims == (64,) and len(medium.n_ratios) >= 8 and len(medium.widths) >= 4
    assert set(medium.activations) == {"linear", "relu"} and medium.merge_shapes
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_toml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nseeds = 3\ndims = [8, 12]\nwidths = [2]\n'
                    'input_shifts = [{rank = 1, alpha = 2.0, kind = "rotate"}]\nlr = 0.1\n')
    cfg = resolve("quick", path, {"seeds": 5})
    assert cfg.seeds == 5 and cfg.dims == (8, 12) and cfg.lr == 0.1
    assert cfg.input_shifts == (InputShift(1, 2.0, "rotate"),)
    assert load_toml(path)["seeds"] == 3


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"seeds": 0}, "seeds"),
        ({"widths": [32]}, "must not exceed"),
        ({"activations": ["tanh"]}, "activations"),
        ({"input_shifts": ["scale:1"]}, "KIND:RANK:ALPHA"),
        ({"input_shifts": ["scale:1:1.0"]}, "alpha"),
        ({"output_shifts": [1.0]}, "other than 1"),
        ({"p1": 1.5}, "p1"),
        ({"bogus": 1}, "unknown config key"),
        ({"dims": "16"}, "expected a list"),
        ({"steps": 10, "n_records": 20}, "exceeds"),
        ({"tunes": ["first", "first"]}, "duplicates"),
    ],
)
def test_bad_values_raise_one_line_value_errors(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        with_overrides(SweepConfig(), overrides)
    assert "\n" not in str(info.value)


def test_missing_or_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_toml(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = = 3")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_toml(bad)


@given(
    seeds=st.integers(1, 50), steps=st.integers(20, 5000), p1=st.floats(0.01, 0.99),
    dims=st.lists(st.integers(8, 64), min_size=1, max_size=3, unique=True),
)
@settings(max_examples=30, deadline=None)
def test_to_dict_round_trips_through_overrides(seeds, steps, p1, dims) -> None:
    cfg = with_overrides(SweepConfig(), {"seeds": seeds, "steps": steps, "p1": p1, "dims": dims})
    again = with_overrides(SweepConfig(), cfg.to_dict())
    assert again == cfg
    assert all(n >= 1 for d in cfg.dims for n in cfg.sample_sizes(d))
