"""Figures are written atomically and respect the umask (one writer: paper_figures.save)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from PIL import Image

from paper_figures.realdata import main as realdata_figures
from paper_figures.save import save_figure
from sims.infra import RunStore
from tests.realdata.test_paper_figures import _rec


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_save_figure_is_atomic_and_respects_the_umask(tmp_path: Path, umask: int) -> None:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    (tmp_path / "f.png").write_bytes(b"old")
    old = os.umask(umask)
    try:
        paths = [save_figure(fig, tmp_path / f"f.{ext}", dpi=50) for ext in ("png", "pdf")]
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]  # no temp left
    for p in paths:
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask
    with Image.open(paths[0]) as img:
        assert img.format == "PNG"
    assert paths[1].read_bytes().startswith(b"%PDF")


def test_realdata_figures_and_table_respect_the_umask(tmp_path: Path) -> None:
    recs = [_rec("input-noise", "input", t, s, a + 0.01 * s)
            for t, a in (("block1", 0.6), ("block2", 0.5), ("head", 0.4), ("all", 0.5),
                         ("none", 0.1)) for s in (0, 1)]
    RunStore(tmp_path).append(recs)
    old = os.umask(0o022)
    try:
        assert realdata_figures(["--results", str(tmp_path)]) == 0
    finally:
        os.umask(old)
    written = list((tmp_path / "figures").iterdir())
    assert {p.suffix for p in written} == {".png", ".pdf", ".md"}
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o644"}
