"""Backbones: published state_dict layouts, block maps, checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from realdata.models import (
    CheckpointMismatchError,
    assign_parameters,
    build_backbone,
    load_checkpoint,
)
from tests.realdata.conftest import TINY, tiny


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_parameter_in_exactly_one_block(name):
    model = tiny(name)
    owned = assign_parameters(model, model.block_map())
    flat = [p for ps in owned.values() for p in ps]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters())
    assert len(flat) == len(set(flat))
    assert all(owned[b] for b in model.block_map())  # no empty block
    assert [s for s, _ in model.stages()] == list(model.block_map())


@pytest.mark.parametrize("name", sorted(TINY))
def test_stages_compose_to_forward_and_split_anywhere(name):
    model = tiny(name).eval()
    x = torch.rand(2, 3, TINY[name][1], TINY[name][1])
    full = model(x)
    assert full.shape == (2, 4)
    for j in range(1, len(model.stages())):
        h = model(x, start=0, stop=j)
        torch.testing.assert_close(model(h, start=j), full, rtol=0, atol=0)


def test_published_layouts_key_names_and_sizes():
    """Key names and parameter counts of the published architectures."""
    r50 = build_backbone("resnet50", 1000)
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032  # torchvision resnet50
    sd = r50.state_dict()
    for k in ("conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight",
              "layer1.0.downsample.1.weight", "layer4.2.conv3.weight", "fc.bias"):
        assert k in sd
    wrn = build_backbone("wrn28_10", 10).state_dict()
    for k in ("conv1.weight", "block1.layer.0.convShortcut.weight", "block3.layer.3.bn2.bias",
              "bn1.running_var", "fc.weight"):
        assert k in wrn
    assert "block1.layer.1.convShortcut.weight" not in wrn
    assert tuple(wrn["block3.layer.0.conv1.weight"].shape) == (640, 320, 3, 3)
    r26 = build_backbone("resnet26", 10).state_dict()
    for k in ("conv1.weight", "layer1.3.bn2.weight", "layer3.0.conv1.weight", "bn.weight",
              "fc.weight"):
        assert k in r26
    assert not any("downsample" in k for k in r26)  # parameter-free shortcuts (TTT code)
    assert tuple(r26["fc.weight"].shape) == (10, 64)


def test_block_map_missing_parameter_raises():
    model = tiny("resnet26")
    with pytest.raises(ValueError, match=r"in no block: \['fc.weight', 'fc.bias'\]"):
        assign_parameters(model, {"body": ("conv1", "layer*", "bn")})
    with pytest.raises(ValueError, match="in several blocks"):
        assign_parameters(model, {"a": ("conv1", "layer1", "layer2", "layer3", "bn"),
                                  "b": ("layer3", "fc")})


def test_user_model_block_map_patterns():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.rand(1, 3, 8, 8))
    owned = assign_parameters(net, {"early": ("0",), "late": ("[3]*",)})
    assert owned == {"early": ["0.weight", "0.bias"], "late": ["3.weight", "3.bias"]}


def test_checkpoint_roundtrip_containers_and_prefixes(tmp_path):
    src = tiny("resnet26", seed=1)
    sd = src.state_dict()
    for i, obj in enumerate([sd, {"net": sd, "head": {}},
                             {"state_dict": {f"module.{k}": v for k, v in sd.items()}}]):
        path = tmp_path / f"c{i}.pt"
        torch.save(obj, path)
        dst = tiny("resnet26", seed=2)
        assert load_checkpoint(dst, path) == []
        for k, v in dst.state_dict().items():
            assert torch.equal(v, sd[k]), k


def test_checkpoint_for_other_architecture_names_keys(tmp_path):
    path = tmp_path / "wrn.pt"
    torch.save(tiny("wrn28_10").state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(\d+\): \['layer1") as e:
        load_checkpoint(tiny("resnet26"), path)
    assert "unexpected keys" in str(e.value) and "block1.layer.0" in str(e.value)
    path2 = tmp_path / "k.pt"
    torch.save(tiny("resnet26", num_classes=7).state_dict(), path2)
    with pytest.raises(CheckpointMismatchError, match=r"fc.weight: checkpoint \(7, 64\)"):
        load_checkpoint(tiny("resnet26"), path2)
    with pytest.raises(ValueError, match="checkpoint file not found"):
        load_checkpoint(tiny("resnet26"), tmp_path / "nope.pt")
    torch.save({"epoch": 3}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match="holds no state_dict"):
        load_checkpoint(tiny("resnet26"), tmp_path / "bad.pt")


def test_unknown_backbone_and_bad_knobs():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'; known"):
        build_backbone("vgg", 10)
    with pytest.raises(ValueError, match="depth must be 6N\\+2"):
        build_backbone("resnet26", 10, depth=9)


def test_normalization_is_not_in_state_dict():
    model = tiny("resnet50")
    assert not any(k.startswith("normalize") for k in model.state_dict())
