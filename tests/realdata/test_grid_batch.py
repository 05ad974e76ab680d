"""The batched lr grid against the per-lr loop: same selection, metrics, snapshots, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import realdata.benchmark as bench
from realdata import grid_batch, train
from realdata.grid_batch import StackedAdam, is_out_of_memory
from realdata.tasks import Protocol
from realdata.train import FinetuneConfig, LrTrace, finetune, row_best, select_best
from tests.realdata.conftest import tiny

PROTO = Protocol(epochs=2, lrs=(1e-2, 1e-3, 1e-4), batch_size=32, eval_batch_size=64)


def _pair(splits, proto=PROTO, model_fn=lambda: tiny("resnet26"), block_map=None, **cfg):
    """(loop result, loop change, batched result, batched change); a change is
    ``final state - initial state`` per state key (the model ends at the selected snapshot)."""
    out = []
    for batched in (False, True):
        model = model_fn()
        init = {k: v.clone() for k, v in model.state_dict().items()}
        res = finetune(model, block_map or model.block_map(), *splits, protocol=proto, seed=0,
                       config=FinetuneConfig(grid_batch=batched, **cfg))
        out += [res, {k: v.double() - init[k].double() for k, v in model.state_dict().items()}]
    return out


def _same(loop, loop_d, grid, grid_d) -> bool:
    """Equal selection, validation/test metrics and curves; training losses to 1e-4; the
    selected snapshot's change from the initial weights to 1% of its norm per tensor (Adam
    divides by the root of the squared gradients, so float noise in a near-zero gradient moves
    an element by up to ~lr per step); untouched tensors identical in both."""
    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        if not a.any():
            return not b.any()
        return float((a - b).norm()) <= 1e-2 * float(a.norm())

    return ((loop.status, loop.best_lr, loop.best_epoch) == (grid.status, grid.best_lr,
                                                              grid.best_epoch)
            and loop.val_metric == grid.val_metric and loop.test_metric == grid.test_metric
            and loop.test_accuracy == grid.test_accuracy
            and [t.val_metric for t in loop.traces] == [t.val_metric for t in grid.traces]
            and all(a.train_loss == pytest.approx(b.train_loss, rel=1e-4, abs=1e-6)
                    for a, b in zip(loop.traces, grid.traces))
            and all(close(loop_d[k], grid_d[k]) for k in loop_d))


FAST = {("block1", "eval"), ("block2", "train"), ("head", "eval"), ("all", "train")}


@pytest.mark.parametrize(("tuned", "bn"), [
    pytest.param(t, b, marks=() if (t, b) in FAST else pytest.mark.slow)
    for t in ("block1", "block2", "block3", "head", "all") for b in ("eval", "train")])
def test_batched_grid_equals_loop(toy_splits, tuned, bn):
    loop, loop_sd, grid, grid_sd = _pair(toy_splits, tuned=tuned, bn=bn)
    assert loop.grid == {"batched": False}
    assert grid.grid == {"batched": True, "groups": [3], "fallbacks": []}
    assert grid.cached == loop.cached and grid.n_trainable == loop.n_trainable
    assert _same(loop, loop_sd, grid, grid_sd)


def test_a_wrong_update_is_caught(toy_splits, monkeypatch):
    """Mutation: members trained with each other's lr no longer match the loop."""
    orig = StackedAdam.__init__

    def swapped(self, params, lrs, weight_decay, **kw):
        orig(self, params, list(reversed(lrs)), weight_decay, **kw)

    monkeypatch.setattr(StackedAdam, "__init__", swapped)
    assert not _same(*_pair(toy_splits, tuned="head"))


def test_augment_and_user_model(toy_splits):
    """Flips drawn as in the loop; any nn.Module with a block map runs batched."""
    assert _same(*_pair(toy_splits, tuned="head", augment=True))

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                   torch.nn.Linear(4, 4))

    bmap = {"features": ("0",), "classifier": ("4",)}
    loop, a, grid, b = _pair(toy_splits, model_fn=net, block_map=bmap, tuned="all")
    assert grid.grid["batched"] and _same(loop, a, grid, b)


def test_stacked_adam_is_torch_adam_per_member():
    torch.manual_seed(0)
    lrs, wd = [1e-1, 1e-2, 3e-4], 1e-2
    init = torch.randn(3, 4, 5)
    grads = [torch.randn(3, 4, 5) for _ in range(6)]
    stacked = init.clone()
    opt = StackedAdam([stacked], lrs, wd)
    for g in grads:
        opt.step([stacked], [g])
    for k, lr in enumerate(lrs):
        p = torch.nn.Parameter(init[k].clone())
        ref = torch.optim.Adam([p], lr=lr, weight_decay=wd, foreach=False)
        for g in grads:
            p.grad = g[k].clone()
            ref.step()
        torch.testing.assert_close(stacked[k], p.detach(), rtol=1e-6, atol=1e-7)


def test_divergence_stops_that_member_with_the_loops_message(toy_splits):
    proto = Protocol(epochs=2, lrs=(1e30, 1e-3), batch_size=32)
    loop, a, grid, b = _pair(toy_splits, proto=proto, tuned="block3-head")
    assert grid.status == "ok" and grid.best_lr == 1e-3 and _same(loop, a, grid, b)
    assert grid.traces[0].error.split("(")[0] == loop.traces[0].error.split("(")[0]
    assert grid.traces[0].error.split(")")[1] == loop.traces[0].error.split(")")[1]
    bad = _pair(toy_splits, proto=Protocol(epochs=1, lrs=(1e30, 1e31), batch_size=32),
                tuned="block3-head")[2]
    assert bad.status == "failed" and "every learning rate diverged" in bad.error


def test_out_of_memory_halves_the_group_and_is_recorded(toy_splits, monkeypatch):
    proto = Protocol(epochs=2, lrs=(1e-2, 3e-3, 1e-3, 1e-4), batch_size=32)
    real = grid_batch._train_group

    def small_device(model, block_map, tuned, lrs, *args):
        if len(lrs) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, block_map, tuned, lrs, *args)

    monkeypatch.setattr(grid_batch, "_train_group", small_device)
    loop, a, grid, b = _pair(toy_splits, proto=proto, tuned="head")
    assert grid.grid["groups"] == [2, 2] and grid.grid["fallbacks"][0]["members"] == 4
    assert "out of memory" in grid.grid["fallbacks"][0]["error"]
    assert _same(loop, a, grid, b)


def test_other_errors_and_one_member_oom_propagate(toy_splits, monkeypatch):
    def broken(*args):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(grid_batch, "_train_group", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        _pair(toy_splits, tuned="head")

    def no_memory(*args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(grid_batch, "_train_group", no_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        _pair(toy_splits, tuned="head")
    assert is_out_of_memory(MemoryError()) and not is_out_of_memory(ValueError("out of memory"))


def test_grid_group_and_loop_fallbacks_are_recorded(toy_splits):
    model = tiny("resnet26")
    res = finetune(model, model.block_map(), *toy_splits, protocol=PROTO, seed=0,
                   config=FinetuneConfig(tuned="head", grid_group=2))
    assert res.grid["groups"] == [2, 1]
    for cfg, proto in ((FinetuneConfig(tuned="head", method="rgn"), PROTO),
                       (FinetuneConfig(tuned="head"), Protocol(epochs=1, lrs=(1e-2,)))):
        res = finetune(tiny("resnet26"), model.block_map(), *toy_splits, protocol=proto, seed=0,
                       config=cfg)
        assert res.grid["batched"] is False and "per-lr loop" in res.grid["reason"]
    with pytest.raises(ValueError, match="grid_group must be >= 0"):
        FinetuneConfig(grid_group=-1)


scores = st.lists(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), max_size=4),
                  min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(scores)
def test_select_best_is_the_first_maximum_over_lr_then_epoch(table):
    traces = [LrTrace(lr=10.0 ** -i, val_metric=row) for i, row in enumerate(table)]
    cells = [(v, i, e) for i, row in enumerate(table) for e, v in enumerate(row, start=1)]
    chosen = select_best(traces)
    if not cells:
        assert chosen is None
        return
    top = max(v for v, _, _ in cells)
    assert chosen == min((i, e) for v, i, e in cells if v == top)
    assert chosen[1] == row_best(table[chosen[0]])  # one snapshot per lr suffices


def test_no_grid_batch_flag_reaches_the_run():
    argv = ["--task", "synthetic", "--out", "o"]
    for extra, want in (([], True), (["--no-grid-batch"], False)):
        cfg = bench._config_from_args(bench._parser().parse_args([*argv, *extra]))
        plan = bench.TaskPlan(
            task="synthetic", protocol=Protocol(), variants=(None,), blocks=("block1",),
            options=(("all", "fixed"),), checkpoint=bench.SourceCheckpoint("x.pt", "0"),
            fingerprints={(None, s): "f" for s in cfg.seeds}, reader_version="1")
        unit = bench.build_units(cfg, [plan])[0]
        assert cfg.grid_batch is want and unit.finetune_config().grid_batch is want
        assert "grid_batch" not in unit.id_fields()  # how the grid runs is not the result



def test_bf16_autocast_and_channels_last_follow_the_loop(toy_splits, monkeypatch):
    """The GPU paths on CPU: under vmap the autocast casts are applied by hand
    (``_AutocastUnderVmap``); the batched run follows the loop's bf16 losses."""
    monkeypatch.setattr(train, "accelerations",
                        lambda cfg: train.Accelerations(bf16=True, channels_last=True))
    loop, _, grid, _ = _pair(toy_splits, tuned="block2", bn="train")
    assert grid.grid["batched"] and grid.status == loop.status == "ok"
    for a, b in zip(loop.traces, grid.traces, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-2)


def test_channels_last_model_runs_batched(toy_splits):
    """A model in channels_last (as finetune leaves it on CUDA) trains batched: vmap cannot
    query channels_last strides inside batch norm, so the grid drops to the default format,
    says so in its record, and still matches the loop."""
    def model_fn():
        return tiny("resnet26").to(memory_format=torch.channels_last)

    loop, loop_sd, grid, grid_sd = _pair(toy_splits, tuned="block1", model_fn=model_fn)
    assert grid.grid.get("channels_last_dropped") is True
    assert _same(loop, loop_sd, grid, grid_sd)
