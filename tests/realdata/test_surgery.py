"""Surgery: block specs, freezing, BN modes, Auto-RGN multipliers, per-example gradients, SNR."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from realdata.surgery import (
    configure_surgery,
    per_example_grads,
    resolve_tuned,
    rgn_multipliers,
    snr_freeze,
    snr_scores,
)
from tests.realdata.conftest import tiny

BLOCKS = ("block1", "block2", "block3", "head")


def test_resolve_tuned():
    assert resolve_tuned("block2", BLOCKS) == ("block2",)
    assert resolve_tuned("block1-block3", BLOCKS) == ("block1", "block2", "block3")
    assert resolve_tuned("block2:head", BLOCKS) == ("block2", "block3", "head")
    assert resolve_tuned("all", BLOCKS) == BLOCKS
    assert resolve_tuned("head", BLOCKS) == ("head",)
    assert resolve_tuned("none", BLOCKS) == ()
    with pytest.raises(ValueError, match="unknown block 'block9'; valid: block1, block2"):
        resolve_tuned("block9", BLOCKS)
    with pytest.raises(ValueError, match="reversed"):
        resolve_tuned("block3-block1", BLOCKS)


def test_configure_surgery_requires_grad_and_bn_modes():
    model = tiny("resnet26")
    names = configure_surgery(model, model.block_map(), ("block2",), "eval")
    assert names and all(n.startswith("layer2.") for n in names)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(names)
    assert not any(m.training for m in model.modules())
    configure_surgery(model, model.block_map(), ("block2",), "train")
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.training == name.startswith("layer2."), name
    with pytest.raises(ValueError, match="bn must be 'eval' or 'train'"):
        configure_surgery(model, model.block_map(), ("block2",), "frozen")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown block"):
        configure_surgery(model, model.block_map(), ("block7",))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e3), st.floats(1e-3, 1e3)), min_size=1, max_size=8),
       st.integers(0, 2**31 - 1))
def test_rgn_multipliers_in_unit_interval_with_max_one(pairs, seed):
    g = torch.Generator().manual_seed(seed)
    grads, params = {}, {}
    for i, (gn, pn) in enumerate(pairs):
        shape = (1 + i % 3, 2)
        gr = torch.randn(shape, generator=g, dtype=torch.float64)
        pr = torch.randn(shape, generator=g, dtype=torch.float64)
        grads[f"t{i}"] = gr / gr.norm() * gn
        params[f"t{i}"] = pr / pr.norm() * pn
    mult = rgn_multipliers(grads, params)
    vals = list(mult.values())
    assert all(0 < v <= 1 for v in vals)
    assert max(vals) == 1.0
    rgn = {k: float(grads[k].norm() / params[k].norm()) for k in grads}
    top = max(rgn, key=rgn.get)
    assert mult[top] == 1.0
    for k in grads:  # ordering preserved
        for k2 in grads:
            if rgn[k] < rgn[k2] * (1 - 1e-9) and rgn[k] > 1e-9 * max(rgn.values()):
                assert mult[k] <= mult[k2]


def test_rgn_rejects_nonfinite_and_mismatch():
    with pytest.raises(ValueError, match="same tensor names"):
        rgn_multipliers({"a": torch.ones(1)}, {"b": torch.ones(1)})
    with pytest.raises(ValueError, match="non-finite gradient"):
        rgn_multipliers({"a": torch.tensor([float("nan")])}, {"a": torch.ones(1)})


@pytest.mark.parametrize("start", [0, 2])
def test_per_example_grads_match_loop(start):
    model = tiny("resnet26").double().eval()
    x = torch.rand(5, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 1])
    if start:
        with torch.no_grad():
            x = model(x, start=0, stop=start)
    names = ["layer3.0.conv1.weight", "bn.weight", "fc.weight", "fc.bias"]
    got = per_example_grads(model, names, x, y, {"start": start} if start else None)
    params = dict(model.named_parameters())
    for i in range(5):
        model.zero_grad()
        out = model(x[i : i + 1], start=start) if start else model(x[i : i + 1])
        F.cross_entropy(out, y[i : i + 1]).backward()
        for n in names:
            torch.testing.assert_close(got[n][i], params[n].grad, rtol=1e-10, atol=1e-12)


def test_per_example_grads_need_bn_eval():
    model = tiny("resnet26").train()
    with pytest.raises(ValueError, match="BatchNorm in eval mode"):
        per_example_grads(model, ["fc.bias"], torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))


def test_snr_scores_definition_and_freeze():
    # per element E[g^2]/Var(g): b: +-1 (mean 0, var 1) -> 1; c: 2 or 0 (mean 1, var 1) -> 2;
    # d: 3 or 1 (mean 2, var 1) -> 5
    b = torch.tensor([[1.0], [-1.0]] * 3)
    c = torch.tensor([[2.0], [0.0]] * 3)
    d = torch.tensor([[3.0, 3.0], [1.0, 1.0]] * 3)
    s = snr_scores({"b": b, "c": c, "d": d})
    assert s == {"b": 0.0, "c": pytest.approx(0.25), "d": 1.0}  # (raw - 1) / (5 - 1)
    assert snr_freeze(s, 0.3) == {"b", "c"}
    assert snr_freeze(s, 0.2) == {"b"}
    assert snr_freeze(s, 0.0) == set()
    assert snr_scores({"b": b, "b2": b.clone()}) == {"b": 1.0, "b2": 1.0}
    with pytest.raises(ValueError, match="threshold"):
        snr_freeze(s, 1.5)
    with pytest.raises(ValueError, match="at least 2 examples"):
        snr_scores({"b": b[:1]})
