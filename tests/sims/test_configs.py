"""configs/: every sims preset file loads and equals its preset, over any starting preset."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from sims.config import PRESETS, preset, resolve, to_toml, with_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("start", PRESETS)
def test_preset_file_equals_its_preset(name, start):
    assert resolve(start, CONFIGS / f"sims-{name}.toml") == preset(name)


@pytest.mark.parametrize("name", PRESETS)
def test_header_gives_the_reproducing_command(name):
    text = (CONFIGS / f"sims-{name}.toml").read_text()
    cmd = re.search(r"^#\s+(python -m sims\.sweep .*)$", text, re.M)
    assert cmd and f"--config configs/sims-{name}.toml" in cmd.group(1)


def test_every_sims_config_file_is_a_preset():
    assert sorted(p.name for p in CONFIGS.glob("sims-*.toml")) == sorted(
        f"sims-{n}.toml" for n in PRESETS)


def test_a_changed_file_no_longer_equals_its_preset(tmp_path):
    text = (CONFIGS / "sims-gpu.toml").read_text().replace("seeds = 20", "seeds = 21")
    (tmp_path / "g.toml").write_text(text)
    assert resolve("quick", tmp_path / "g.toml") == dataclasses.replace(preset("gpu"), seeds=21)


def test_to_toml_round_trips_a_custom_config(tmp_path):
    cfg = with_overrides(preset("quick"), {"preset": "custom", "lr": 0.05, "ns": [3, 5],
                                           "input_shifts": ["rotate:1:0.5"], "output_shifts": []})
    (tmp_path / "c.toml").write_text(to_toml(cfg))
    assert resolve("full", tmp_path / "c.toml") == cfg
