"""The level diagnostic: identical sets are at zero, a pixel change moves block 1, CLI runs."""

from __future__ import annotations

import json

import torch

from realdata.experiments.levels import activation_distance, block_means, main
from tests.realdata.conftest import blobs, tiny


def test_identical_sets_are_at_zero_and_a_pixel_shift_is_not():
    model = tiny("resnet26")
    x = blobs(24, side=16).images
    d0 = activation_distance(model, x, x.clone())
    assert list(d0) == ["block1", "block2", "block3", "head"] and all(v == 0 for v in d0.values())
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


def test_cli_writes_a_table_with_the_floor(tmp_path, capsys):
    from realdata.data.synthetic import BACKBONE_KWARGS
    from realdata.models import build_backbone

    ckpt = tmp_path / "m.pt"
    torch.save(build_backbone("resnet26", 10, **BACKBONE_KWARGS).state_dict(), ckpt)
    assert main(["--checkpoint", str(ckpt), "--out", str(tmp_path), "--per-class", "2"]) == 0
    table = json.loads((tmp_path / "levels.json").read_text())
    assert set(table["targets"]) >= {"input-channels", "output"}
    assert "floor" in capsys.readouterr().out
    assert main(["--checkpoint", str(tmp_path / "no.pt"), "--out", str(tmp_path)]) == 2
