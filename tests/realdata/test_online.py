"""Unsupervised online adaptation (MEMO, TENT), the torch AugMix, and ``--objective`` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import realdata.benchmark as bench
from realdata import augmix, online
from realdata.data.base import LoadRequest, TargetSplits, TensorImages
from realdata.models import assign_parameters
from realdata.online import OnlineConfig, adapt_online, marginal_entropy, mean_entropy, run_stream
from realdata.tasks import Protocol, TaskSpec, register_task
from tests.realdata.conftest import blobs, prepare_tiny_source, tiny

pytestmark = pytest.mark.usefixtures("one_thread")

# ----------------------------------------------------------------------------- AugMix

@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), side=st.sampled_from([8, 16, 32]))
def test_views_are_images_and_seeded(seed, side):
    x = torch.rand(3, side, side, generator=torch.Generator().manual_seed(seed))
    v = augmix.memo_views(x, 4, np.random.default_rng(seed))
    assert v.shape == (4, 3, side, side) and float(v.min()) >= 0 and float(v.max()) <= 1
    assert torch.equal(v, augmix.memo_views(x, 4, np.random.default_rng(seed)))


@pytest.mark.parametrize("name", sorted(augmix.OPS))
def test_each_op_keeps_range_and_changes_a_generic_image(name):
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    y = augmix.OPS[name](x, 3.0, 1.0)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1 + 1e-6
    assert not torch.allclose(y, x, atol=1e-3)


def test_op_definitions():
    x = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(augmix.rotate(x, 0.0, 1.0), x, atol=1e-5, rtol=0)
    assert torch.equal(augmix.solarize(x, 0.0), x)  # threshold 1: nothing inverted
    ac = augmix.autocontrast(x * 0.5 + 0.2, 0)
    assert torch.allclose(ac.amin(dim=(1, 2)), torch.zeros(3)) and torch.allclose(
        ac.amax(dim=(1, 2)), torch.ones(3))
    eq = augmix.equalize(x * 0.3, 0)  # a dark image is spread over [0, 1]
    assert float(eq.max()) == 1.0 and float(eq.mean()) > 0.4
    assert len(torch.unique(augmix.posterize(x, 3.0))) <= 16  # 4 bits
    shifted = augmix.translate(x, 3.0, 1.0, 0)  # 16 px side: 1.6 px to the right, black fill
    assert float(shifted[:, :, 0].abs().max()) < float(x[:, :, 0].abs().max())


# ----------------------------------------------------------------------------- objectives

def test_losses_are_the_published_entropies():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    p = logits.softmax(1)
    pbar = p.mean(0)
    torch.testing.assert_close(marginal_entropy(logits), -(pbar * pbar.log()).sum())
    torch.testing.assert_close(mean_entropy(logits), -(p * p.log()).sum(1).mean())
    assert float(marginal_entropy(logits)) >= float(mean_entropy(logits))  # concavity


def _stream(n=12, seed=3):
    return blobs(n, seed=seed)


def test_online_adapts_only_tuned_block_and_carries_state():
    model = tiny("resnet26")
    bm = model.block_map()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = OnlineConfig(objective="tent", tuned="block1", lrs=(1e-2,), batch_size=4)
    names = online.configure_surgery(model, bm, ("block1",), "eval")
    params = [p for n, p in model.named_parameters() if n in set(names)]
    run_stream(model, params, _stream(), cfg, 1e-2, seed=0)
    owned = assign_parameters(model, bm)
    sd = model.state_dict()
    changed = {b for b, ns in owned.items() if any(not torch.equal(sd[n], before[n]) for n in ns)}
    assert changed == {"block1"}  # carried forward: the weights after the stream differ
    # BN running statistics stay the source's in eval mode
    assert all(torch.equal(sd[k], before[k]) for k in sd if "running" in k)


def test_episodic_resets_and_online_differs():
    outs = {}
    for episodic in (False, True):
        model = tiny("resnet26")
        init = {k: v.clone() for k, v in model.state_dict().items()}
        cfg = OnlineConfig(objective="memo", tuned="all", lrs=(5e-2,), n_augs=4,
                           episodic=episodic)
        names = online.configure_surgery(model, model.block_map(), model.block_names, "eval")
        params = [p for n, p in model.named_parameters() if n in set(names)]
        pred, _, _ = run_stream(model, params, _stream(8), cfg, 5e-2, seed=0)
        outs[episodic] = pred
        same = all(torch.equal(v, init[k]) for k, v in model.state_dict().items())
        assert same == episodic


def test_prediction_follows_the_adaptation_step(monkeypatch):
    """The first example is predicted by the model *after* its step (adapt, then predict)."""
    torch.manual_seed(0)
    model = tiny("resnet26")
    cfg = OnlineConfig(objective="tent", tuned="head", lrs=(10.0,), momentum=0.0, batch_size=2)
    names = online.configure_surgery(model, model.block_map(), ("head",), "eval")
    params = [p for n, p in model.named_parameters() if n in set(names)]
    stream = _stream(2)
    x = stream.batch(torch.arange(2))[0]
    with torch.no_grad():
        ref = tiny("resnet26")
    opt = torch.optim.SGD([p for n, p in ref.named_parameters() if n.startswith("fc")], lr=10.0)
    ref.eval()
    loss = mean_entropy(ref(x[torch.randperm(2, generator=torch.Generator().manual_seed(0))]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    order = torch.randperm(2, generator=torch.Generator().manual_seed(0))
    want = ref(x[order]).argmax(1)
    pred, _, _ = run_stream(model, params, stream, cfg, 10.0, seed=0)
    assert torch.equal(pred, want)


def test_none_predicts_like_plain_evaluation_and_batch_bn_leaves_running_stats():
    model = tiny("resnet26")
    test = _stream(16)
    res = adapt_online(model, model.block_map(), _stream(8, 5), test,
                       config=OnlineConfig(objective="memo", tuned="none"), seed=0)
    x, y, _ = test.batch(torch.arange(16))
    with torch.no_grad():
        acc = float((model.eval()(x).argmax(1) == y).double().mean())
    assert res.status == "ok" and res.test_accuracy == pytest.approx(acc)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapt_online(model, model.block_map(), _stream(8, 5), test,
                 config=OnlineConfig(objective="tent", tuned="block2", bn="batch", lrs=(1e-3,)),
                 seed=0)
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)  # source state restored
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_lr_selected_on_validation_stream():
    model = tiny("resnet26")
    res = adapt_online(model, model.block_map(), _stream(8, 5), _stream(8),
                       config=OnlineConfig(objective="memo", tuned="block1", lrs=(1e-2, 1e-4),
                                           n_augs=2), seed=0)
    assert set(res.val_by_lr) == {"0.01", "0.0001"}
    assert res.val_metric == max(res.val_by_lr.values())
    assert f"{res.best_lr:g}" in res.val_by_lr and res.val_by_lr[f"{res.best_lr:g}"] == \
        res.val_metric


def test_diverging_lr_is_skipped():
    model = tiny("resnet26")
    res = adapt_online(model, model.block_map(), _stream(8, 5), _stream(8),
                       config=OnlineConfig(objective="tent", tuned="all", lrs=(1e30, 1e-3),
                                           batch_size=4), seed=0)
    assert res.status == "ok" and set(res.val_by_lr) <= {"1e+30", "0.001"}


@pytest.mark.parametrize("kw", [{"lrs": (0.0,)}, {"lrs": (-1.0,)}, {"n_augs": 0},
                                {"objective": "rotation"}, {"bn": "train"}, {"steps": 0}])
def test_bad_online_config(kw):
    with pytest.raises(ValueError):
        OnlineConfig(**kw)


# ----------------------------------------------------------------------------- CLI

def _load(req: LoadRequest) -> TargetSplits:
    test = blobs(0) if req.variant == "empty" else blobs(16, seed=60)
    return TargetSplits(blobs(req.train_n, seed=req.seed), blobs(8, seed=50), test,
                        num_classes=4, info={"source": "generated"})



register_task(TaskSpec(
    name="tinyonline", shift_level="input", backbone="resnet26", num_classes=4, load=_load,
    variants=("a", "empty"), quick_variants=("a",),
    protocol=Protocol(epochs=1, lrs=(1e-2,), train_n=8, batch_size=8),
    backbone_kwargs={"depth": 8}, needs_data=False, prepare_source=prepare_tiny_source))


@pytest.mark.parametrize("objective", ["memo", "tent"])
def test_objective_through_cli(objective, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--task", "tinyonline", "--seeds", "0", "--no-progress", "--objective",
            objective, "--tuned", "none", "block1", "all", "--online-lrs", "1e-3", "--memo-augs",
            "2", "--online-batch-size", "8", "--online-bn", "batch", "--out", str(out)]
    assert bench.main(argv) == 0, capsys.readouterr().err
    recs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs)
    for r in recs:
        assert r["objective"] == objective and r["online"]["bn"] == "batch"
        assert r["online"]["lrs"] == [1e-3] and r["online"]["episodic"] is False
        assert 0 <= r["test_metric"] <= 1 and not math.isnan(r["val_metric"])
    csv = (out / "summary.csv").read_text()
    assert ",block1," in csv and ",cross-val," in csv


def test_other_objective_is_another_setting(tmp_path, capsys):
    """A folder of tent runs refuses memo runs (the objective is part of the settings); forced,
    the summary holds the memo runs only and the run ids differ."""
    out = tmp_path / "out"
    base = ["--task", "tinyonline", "--seeds", "0", "--no-progress", "--tuned", "block1",
            "--online-lrs", "1e-3", "--memo-augs", "2", "--online-batch-size", "8", "--out",
            str(out)]
    assert bench.main([*base, "--objective", "tent"]) == 0
    capsys.readouterr()
    assert bench.main([*base, "--objective", "memo"]) == 2
    err = capsys.readouterr().err
    assert "--objective" in err and "--force-new-settings" in err and err.count("\n") == 1
    assert bench.main([*base, "--objective", "memo", "--force-new-settings"]) == 0
    recs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["objective"] for r in recs] == ["tent", "memo"]
    assert len({r["id"] for r in recs}) == 2 and len({r["settings"] for r in recs}) == 2
    rows = bench.summarize(recs, {"tinyonline": recs[1]["settings"]})
    assert [r["mean_acc"] for r in rows if r["tuned"] == "block1"] == [recs[1]["test_metric"]]


def test_objective_without_test_stream_is_one_line_error(tmp_path, capsys):
    rc = bench.main(["--task", "tinyonline", "--variants", "empty", "--objective", "memo",
                     "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "the test split is empty" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv,msg", [
    (["--objective", "memo", "--methods", "rgn"], "are supervised"),
    (["--memo-augs", "4"], "need --objective"),
    (["--objective", "tent", "--online-lrs", "0"], "online lrs must be positive"),
])
def test_cli_online_bad_input(argv, msg, tmp_path, capsys):
    rc = bench.main(["--task", "tinyonline", "--out", str(tmp_path), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.count("\n") == 1


def test_tensor_images_empty_stream_message():
    with pytest.raises(ValueError, match="needs a test stream"):
        adapt_online(tiny("resnet26"), tiny("resnet26").block_map(), blobs(4),
                     TensorImages(torch.zeros(0, 3, 8, 8), []),
                     config=OnlineConfig(), seed=0)

