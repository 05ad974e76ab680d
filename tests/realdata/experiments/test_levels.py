"""The level diagnostic: identical sets are at zero, paired movement on a network where block 1
moves most by construction, the output target does not move, verdicts can fail, CLI and figure."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import realdata.data.synthetic as syn
from paper_figures.realdata import main as figure_main
from realdata.experiments.levels import (
    ZERO_TOL,
    activation_distance,
    block_means,
    first_block_contrasts,
    level_table,
    level_verdicts,
    main,
    paired_distance,
    synthetic_level_table,
)
from realdata.models.base import Backbone
from tests.realdata.conftest import blobs, tiny


class Smoother(Backbone):
    """block1 = identity, block2 = 4x4 average pooling, block3 = global average, head = linear:
    white pixel noise on smooth images moves block 1 most, by construction. ``sharpen`` makes
    block 2 a high-pass filter instead (the fault: it amplifies the noise)."""

    def __init__(self, sharpen: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.sharpen = sharpen

    def _block2(self, x: torch.Tensor) -> torch.Tensor:
        if self.sharpen:
            return x - F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return F.avg_pool2d(x, 4)

    def stages(self):
        return [("block1", lambda x: x), ("block2", self._block2),
                ("block3", lambda x: x.mean(dim=(2, 3))), ("head", self.fc)]

    def block_map(self):
        return {"block1": (), "block2": (), "block3": (), "head": ("fc",)}


def _smooth_images(n: int = 16, side: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    return 0.2 + 0.6 * F.interpolate(coarse, size=side, mode="bilinear", align_corners=False)


def test_identical_sets_are_at_zero_and_a_pixel_shift_is_not(one_thread):
    model = tiny("resnet26")
    x = blobs(24, side=16).images
    d0 = activation_distance(model, x, x.clone())
    assert list(d0) == ["block1", "block2", "block3", "head"] and all(v == 0 for v in d0.values())
    assert all(v == 0 for v in paired_distance(model, x, x.clone()).values())
    d = activation_distance(model, x, (x + 0.3).clamp(0, 1))
    assert all(v > 0.05 for v in d.values())


def test_block_means_match_a_direct_computation():
    model = tiny("resnet26").eval()
    x = blobs(10, side=16).images
    (_, mu, var), *_ = block_means(model, x, batch_size=3)
    with torch.no_grad():
        h = model(x, start=0, stop=1).reshape(10, -1).double()
    assert torch.allclose(mu, h.mean(0))
    assert abs(var - float(((h - h.mean(0)) ** 2).sum(1).mean())) < 1e-6 * max(1.0, var)


def test_paired_distance_matches_a_direct_computation_and_batches_agree():
    model = tiny("resnet26").eval()
    x = blobs(10, side=16).images
    xs = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    with torch.no_grad():
        a = model(x, start=0, stop=1).reshape(10, -1).double()
        b = model(xs, start=0, stop=1).reshape(10, -1).double()
    want = float(((b - a).norm(dim=1) / a.norm(dim=1)).mean())
    got = paired_distance(model, x, xs, batch_size=3)
    # float32 convolutions differ in the last bits between batch sizes
    assert got["block1"] == pytest.approx(want, rel=1e-6)
    assert got == pytest.approx(paired_distance(model, x, xs, batch_size=10), rel=1e-6)
    with pytest.raises(ValueError, match="same non-empty shape"):
        paired_distance(model, x, xs[:5])


def test_pixel_noise_moves_block1_most_by_construction_and_a_sharpening_fault_fails():
    x = _smooth_images()
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    levels = {"noise": "input"}
    good = level_table(Smoother(), x, x, {"noise": noisy}, {"noise": noisy})
    p = good["paired"]["noise"]
    assert p["block1"] > p["block2"] > p["block3"]
    assert level_verdicts(good, levels)["noise"]["verdict"] == "holds"
    bad = level_table(Smoother(sharpen=True), x, x, {"noise": noisy}, {"noise": noisy})
    v = level_verdicts(bad, levels)["noise"]
    assert v["verdict"] == "fails" and v["most_moved"] != "block1", v


@settings(max_examples=10, deadline=None)
@given(st.floats(0.0, 0.5), st.integers(0, 1000))
def test_paired_movement_is_nonnegative_and_zero_only_without_a_change(scale, seed):
    x = _smooth_images(4, 8)
    xs = x + scale * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    p = paired_distance(Smoother(), x, xs)
    assert all(v >= 0 for v in p.values())
    assert (p["block1"] == 0) == torch.equal(x, xs)


def test_output_target_does_not_move_and_an_output_that_moves_is_caught(monkeypatch, one_thread):
    model = tiny("resnet26", num_classes=10)
    variants = ["gaussian_noise", "input-channels", "feature", "output"]
    table = synthetic_level_table(model, variants, per_class=2, seed=0, image_size=16)
    assert set(table["paired"]) == {"gaussian_noise", "input-channels", "output"}
    assert max(table["paired"]["output"].values()) <= ZERO_TOL
    assert min(table["paired"]["gaussian_noise"].values()) > 0.01
    v = level_verdicts(table, syn.LEVELS)
    assert v["output"]["verdict"] == "holds" and v["output"]["most_moved"] == "none"
    assert v["feature"]["verdict"] == "described"
    real = syn.shift_images

    def leaky(x, variant, severity, seed):  # the fault: the output target changes pixels
        return real(x, "gaussian_noise" if variant == "output" else variant, severity, seed)

    monkeypatch.setattr(syn, "shift_images", leaky)
    bad = synthetic_level_table(model, ["output"], per_class=2, seed=0, image_size=16)
    assert level_verdicts(bad, syn.LEVELS)["output"]["verdict"] == "fails"


def test_cli_writes_table_and_verdicts_and_the_figure_draws_them(tmp_path, capsys, one_thread):
    from realdata.data.synthetic import BACKBONE_KWARGS
    from realdata.models import build_backbone

    ckpt = tmp_path / "m.pt"
    torch.save(build_backbone("resnet26", 10, **BACKBONE_KWARGS).state_dict(), ckpt)
    out = tmp_path / "res"
    assert main(["--checkpoint", str(ckpt), "--out", str(out), "--per-class", "2",
                 "--variants", "gaussian_noise", "feature", "output"]) == 0
    table = json.loads((out / "levels.json").read_text())
    assert set(table["targets"]) == {"gaussian_noise", "feature", "output"}
    assert table["verdicts"]["output"]["verdict"] == "holds"
    assert table["levels"]["gaussian_noise"] == "input"
    assert "floor" in capsys.readouterr().out
    assert figure_main(["--results", str(out), "--figure", "levels"]) == 0
    png = out / "figures" / "levels.png"
    assert png.is_file() and png.stat().st_size > 5000
    assert "| output | output |" in (out / "figures" / "levels.md").read_text()
    assert main(["--checkpoint", str(tmp_path / "no.pt"), "--out", str(out)]) == 2
    assert main(["--checkpoint", str(ckpt), "--out", str(out), "--variants", "rain"]) == 2
    assert "unknown variant(s) ['rain']" in capsys.readouterr().err
    assert figure_main(["--results", str(tmp_path), "--figure", "levels"]) == 2
    assert "no levels.json" in capsys.readouterr().err


def _input_table(block2: list[float]) -> dict:
    """A levels table of one input target whose block-1 mean is highest; ``block2``: block 1
    minus block 2 per image, ``[mean, se, n]``."""
    return {"floor": {}, "targets": {},
            "paired": {"noise": {"block1": 0.30, "block2": 0.30 - block2[0], "block3": 0.10}},
            "paired_contrasts": {"noise": {"block2": block2, "block3": [0.20, 0.01, 50]}}}


def test_input_verdict_needs_block1_ahead_of_every_block_by_the_paired_criterion():
    levels = {"noise": "input"}
    close = level_verdicts(_input_table([0.01, 0.02, 50]), levels)["noise"]
    assert close["verdict"] == "inconclusive" and close["most_moved"] == "block1", close
    assert level_verdicts(_input_table([0.10, 0.02, 50]), levels)["noise"]["verdict"] == "holds"
    beaten = level_verdicts(_input_table([-0.10, 0.02, 50]), levels)["noise"]
    assert beaten["verdict"] == "fails" and "block2" in beaten["reason"], beaten
    old = _input_table([0.10, 0.02, 50])
    del old["paired_contrasts"]
    assert level_verdicts(old, levels)["noise"]["verdict"] == "not judged"


def test_a_bare_argmax_would_call_the_close_input_target_held(monkeypatch):
    """Mutation: a zero threshold (block 1 ahead on the mean is enough) turns the close case into
    ``holds``, which the test above rejects."""
    import sims.infra.stats as stats

    monkeypatch.setattr(stats, "threshold", lambda n, **kw: 0.0)
    v = level_verdicts(_input_table([0.01, 0.02, 50]), {"noise": "input"})["noise"]
    assert v["verdict"] == "holds"


def test_contrasts_pair_the_blocks_by_image():
    """Block 1 moves every image 0.01 more than block 2 while images differ widely: the paired
    s.e. is 0, the unpaired one is not."""
    base = torch.linspace(0.0, 1.0, 20, dtype=torch.float64)
    c = first_block_contrasts({"block1": base + 0.01, "block2": base, "block3": base / 2})
    mean, se, n = c["block2"]
    assert n == 20 and mean == pytest.approx(0.01) and se == pytest.approx(0.0, abs=1e-12)
    assert base.std().item() / 20 ** 0.5 > 0.05
    assert c["block3"][0] == pytest.approx(float((base / 2 + 0.01).mean()))
