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
from tests.realdata.conftest import blobs, tiny

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
    assert grid.grid == {"batched": True, "groups": [3], "fallbacks": [], "targets": 1,
                         "member_bytes": None, "memory_budget": None}
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

    def small_device(model, block_map, tuned, members, *args):
        if len(members) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, block_map, tuned, members, *args)

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
    for extra, want in (([], False), (["--grid-batch", "on"], True), (["--no-grid-batch"], False),
                        (["--grid-batch", "off"], False)):  # default auto: the loop on CPU
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
    (:class:`realdata.member_layout.MemberOps`); the batched run follows the loop's bf16
    losses."""
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


# ------------------------------------------------------- several targets (seeds, corruptions)


def _targets(toy_splits, n2: int = 64):
    """Three targets of equal training size: the toy splits with seeds 0 and 1 (same data,
    other order) and other data (other val/test sizes) with seed 2; ``n2`` resizes the third's
    training set (another shape: it trains in its own group)."""
    other = (blobs(n2, seed=4), blobs(20, seed=5), blobs(16, seed=6))
    return [(*toy_splits, 0), (*toy_splits, 1), (*other, 2)]


def _many(targets, proto=PROTO, **cfg):
    """Per target ``(loop result, loop change, batched result, batched change)``: the loop runs
    :func:`finetune` on each target alone; the batched path trains all of them as one grid."""
    loops = []
    for tr, va, te, seed in targets:
        model = tiny("resnet26")
        init = {k: v.clone() for k, v in model.state_dict().items()}
        res = finetune(model, model.block_map(), tr, va, te, protocol=proto, seed=seed,
                       config=FinetuneConfig(grid_batch=False, **cfg))
        loops.append((res, {k: v.double() - init[k].double()
                            for k, v in model.state_dict().items()}))
    model = tiny("resnet26")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    out = train._finetune_targets(model, model.block_map(), targets, protocol=proto,
                                  config=FinetuneConfig(**cfg), metric="accuracy",
                                  progress="off", desc="t")
    assert all(torch.equal(v, init[k]) for k, v in model.state_dict().items())
    pairs = []
    for (loop, loop_d), (res, state) in zip(loops, out, strict=True):
        final = {**init, **(state or {})}
        pairs.append((loop, loop_d, res, {k: final[k].double() - init[k].double()
                                          for k in init}))
    return pairs


@pytest.mark.parametrize(("tuned", "bn"), [
    pytest.param(t, b, marks=() if (t, b) in {("block1", "train"), ("head", "eval")}
                 else pytest.mark.slow)
    for t in ("block1", "block2", "block3", "head", "all") for b in ("eval", "train")])
def test_targets_and_seeds_batched_equal_the_loop_per_target(toy_splits, tuned, bn):
    pairs = _many(_targets(toy_splits), tuned=tuned, bn=bn)
    for loop, a, grid, b in pairs:
        assert grid.grid["batched"] and grid.grid["targets"] == 3 and grid.grid["groups"] == [9]
        assert _same(loop, a, grid, b)
    assert len({tuple(p[2].traces[0].train_loss) for p in pairs}) == 3  # three data orders


def test_groups_split_across_targets_and_shapes(toy_splits):
    """Groups of 4 members over 2 targets x 3 lrs, and a third target of another training size
    in its own groups; each target still equals its loop."""
    pairs = _many(_targets(toy_splits, n2=48), tuned="block3", grid_group=4)
    assert pairs[0][2].grid["groups"] == [4, 2, 3]
    assert all(_same(*p) for p in pairs)


def test_a_forced_small_memory_budget_splits_groups_with_the_same_results(toy_splits):
    probe = _many(_targets(toy_splits)[:2], tuned="block2", grid_memory=10**15)
    one = probe[0][2].grid["member_bytes"]
    assert probe[0][2].grid["groups"] == [6] and one > 0
    pairs = _many(_targets(toy_splits)[:2], tuned="block2", grid_memory=int(2.5 * one))
    assert pairs[0][2].grid["groups"] == [2, 2, 2]
    assert pairs[0][2].grid["memory_budget"] == int(2.5 * one)
    assert all(_same(*p) for p in pairs)
    with pytest.raises(ValueError, match="grid_memory must be >= 0"):
        FinetuneConfig(grid_memory=-1)


def test_member_bytes_grows_with_the_batch_and_the_tuned_blocks(toy_splits):
    model = tiny("resnet26")
    split = train._Split(toy_splits[0], "train", 0)
    sizes = {(t, bs): grid_batch.member_bytes(model, model.block_map(), t, split, 0, bs, "eval")
             for t in (("head",), ("block1", "block2", "block3", "head")) for bs in (8, 32)}
    assert sizes[("head",), 8] < sizes[("head",), 32]
    assert sizes[("head",), 32] < sizes[("block1", "block2", "block3", "head"), 32]


def test_divergence_among_targets(toy_splits):
    proto = Protocol(epochs=2, lrs=(1e30, 1e-3), batch_size=32)
    pairs = _many(_targets(toy_splits)[1:], proto=proto, tuned="block3-head")
    for loop, a, grid, b in pairs:
        assert grid.best_lr == 1e-3 and grid.traces[0].error and _same(loop, a, grid, b)
        assert grid.traces[0].error.split(")")[1] == loop.traces[0].error.split(")")[1]


def test_members_fed_the_wrong_target_order_are_caught(toy_splits, monkeypatch):
    """Mutation: every target drawn with the first target's seed no longer matches the loop."""
    real = grid_batch._train_group

    def one_seed(model, block_map, tuned, members, split_sets, seeds, *args):
        return real(model, block_map, tuned, members, split_sets, [seeds[0]] * len(seeds),
                    *args)

    monkeypatch.setattr(grid_batch, "_train_group", one_seed)
    pairs = _many(_targets(toy_splits)[:2], tuned="head")
    assert _same(*pairs[0]) and not _same(*pairs[1])


def test_finetune_many_returns_per_target_results_and_checks_input(toy_splits):
    model = tiny("resnet26")
    res = train.finetune_many(model, model.block_map(), _targets(toy_splits)[:2], protocol=PROTO,
                              config=FinetuneConfig(tuned="head"))
    assert [r.grid["targets"] for r in res] == [2, 2] and res[0].lrs == PROTO.lrs
    loop = train.finetune_many(model, model.block_map(), _targets(toy_splits)[:2],
                               protocol=PROTO, config=FinetuneConfig(tuned="head",
                                                                     grid_batch=False))
    assert [r.test_metric for r in res] == [r.test_metric for r in loop]
    with pytest.raises(ValueError, match="at least one"):
        train.finetune_many(model, model.block_map(), [], protocol=PROTO,
                            config=FinetuneConfig())


def test_stacked_adam_mask_freezes_masked_members_only():
    torch.manual_seed(0)
    init = torch.randn(3, 5)
    grads = [torch.randn(3, 5) for _ in range(4)]
    full, masked = init.clone(), init.clone()
    a, b = StackedAdam([full], [1e-2] * 3, 1e-2), StackedAdam([masked], [1e-2] * 3, 1e-2)
    mask = torch.tensor([True, False, True])
    for g in grads:
        a.step([full], [g])
        bad = g.clone()
        bad[1] = float("nan")  # a masked member's gradient may be non-finite
        b.step([masked], [bad], mask=mask)
    assert torch.equal(masked[1], init[1]) and torch.equal(b.exp_avg[0][1], torch.zeros(5))
    assert torch.equal(masked[mask], full[mask])


def test_streamed_batches_and_staged_flips_follow_the_loop(toy_splits):
    """Targets staged on the device with flips drawn up front, and (limit 0: no prefix cache,
    nothing staged) batches streamed from the splits with the frozen prefix run per step."""
    for cfg in ({"augment": True}, {"cache_limit_bytes": 0}):
        pairs = _many(_targets(toy_splits), tuned="block2", **cfg)
        assert not pairs[0][2].cached and all(_same(*p) for p in pairs)
