"""Fine-tuning with the official protocol: the learning-rate loop and model selection.

:func:`finetune` trains the tuned blocks of a pretrained model on a target's train split for every
learning rate of the protocol's grid (each lr starts again from the pretrained weights), selects the
(lr, epoch) with the best validation metric, and reports the test metric of that snapshot.

Selection rules:

* A learning rate whose training loss becomes non-finite at ANY epoch is excluded from selection
  (its earlier epochs included); its per-epoch validation scores up to the divergence are kept in
  its :class:`LrTrace`, with the error.
* The untuned network's validation and test metrics are always measured (``start_*`` fields).
  With ``Protocol.select_with_start`` the untuned network (epoch 0) is a candidate too; by default
  (the official protocol) only tuned snapshots are.
* Ties keep the first candidate in grid order (epoch 0 first, then the grid's order and epochs).
* The ``l1`` baseline (:mod:`realdata.baselines`) trains every ``(lr, strength)`` pair of the lr
  grid and its L1 strength grid; the pairs are candidates like the lrs above (a diverging pair is
  excluded), so the strength is selected with the lr and the epoch on validation.

The pieces live in small modules: batches and frozen-prefix caching in :mod:`realdata.feeding`,
metrics in :mod:`realdata.metrics`, source pretraining in :mod:`realdata.pretrain` (re-exported
here for existing imports).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from realdata.baselines import (
    DEFAULT_L1_STRENGTHS,
    GRADUAL,
    check_l1_strengths,
    gradual_every,
    gradual_frozen,
    l1_penalty,
)
from realdata.feeding import (
    Accelerations,
    NonFiniteLossError,
    _autocast,
    _cache_prefix,
    _flip,
    _forward,
    _Split,
    accelerations,
)
from realdata.metrics import MetricName, _predict, evaluate
from realdata.metrics import metric_value as _metric
from realdata.models.base import Backbone
from realdata.models.blocks import BlockMap, assign_parameters
from realdata.pretrain import Progress, pretrain
from realdata.surgery import (
    BnMode,
    configure_surgery,
    per_example_grads,
    resolve_tuned,
    rgn_multipliers,
    snr_freeze,
    snr_scores,
)
from realdata.tasks import Protocol

__all__ = [
    "Accelerations",
    "Best",
    "FinetuneConfig",
    "FinetuneResult",
    "GridRun",
    "LrTrace",
    "NonFiniteLossError",
    "Progress",
    "Target",
    "accelerations",
    "evaluate",
    "finetune",
    "finetune_many",
    "lr_loop",
    "pretrain",
    "row_best",
    "select_best",
]

Method = Literal["fixed", "rgn", "snr", "l1", "gradual-down", "gradual-up"]
# names other modules import from here (kept for them): _Split, _cache_prefix, _forward, _metric,
# _predict, _autocast, MetricName
_REEXPORTED = (_Split, _cache_prefix, _forward, _metric, _predict, _autocast, MetricName)


@dataclass(frozen=True)
class FinetuneConfig:
    """How to fine-tune (the protocol's knobs live in :class:`realdata.tasks.Protocol`).

    Attributes:
        tuned: block spec (see :func:`realdata.surgery.resolve_tuned`): ``"block1"``,
            ``"block1-block2"``, ``"all"``, ``"head"``, ``"none"``.
        method: ``"fixed"`` (plain surgery), ``"rgn"`` (Auto-RGN lr multipliers), ``"snr"``
            (Auto-SNR freezing), or a baseline of :mod:`realdata.baselines` (``"l1"``,
            ``"gradual-down"``, ``"gradual-up"``); these act on the tensors of ``tuned``.
        bn: ``"eval"`` or ``"train"`` (see :mod:`realdata.surgery`).
        cache: allow frozen-prefix caching.
        augment: random horizontal flips of training images (disables caching).
        auto_batches: training batches used for the RGN/SNR statistics at each epoch's start.
        snr_threshold: Auto-SNR freezes tensors whose min-max-normalized score is below this.
        l1_strengths: L1-regularize strengths, selected on validation with the lr (``l1`` only).
        gradual_every: gradual unfreezing interval in epochs (``None``: epochs // blocks).
        cache_limit_bytes: do not cache prefix outputs larger than this (all splits of one
            target together); the batched grid also stages targets' training splits on the
            device when they fit in this together.
        workers: DataLoader workers for datasets read from disk (0: in the main process).
        device: torch device for the model and batches (``"cpu"``, ``"cuda"``).
        bf16: allow bf16 autocast (used on CUDA devices that support bf16).
        channels_last: allow the channels_last memory format (used on CUDA).
        pin_memory: allow pinned host memory for batches copied to the device (used on CUDA).
        grid_batch: train the learning-rate grid as one batched model
            (:mod:`realdata.grid_batch`; method ``"fixed"`` only) instead of one lr at a time.
        grid_group: at most this many members (learning rates x targets) per batched group
            (0: the whole grid); groups are halved further when the device runs out of memory.
        grid_memory: bytes a batched group may use (0: on CUDA the device's free memory when
            the grid starts, on CPU no limit); the group size is capped at this divided by the
            estimated bytes of one member (:func:`realdata.grid_batch.member_bytes`).
    """

    tuned: str = "all"
    method: Method = "fixed"
    bn: BnMode = "eval"
    cache: bool = True
    augment: bool = False
    auto_batches: int = 2
    snr_threshold: float = 0.5
    l1_strengths: tuple[float, ...] = DEFAULT_L1_STRENGTHS
    gradual_every: int | None = None
    cache_limit_bytes: int = 2 * 2**30
    workers: int = 0
    device: str = "cpu"
    bf16: bool = True
    channels_last: bool = True
    pin_memory: bool = True
    grid_batch: bool = True
    grid_group: int = 0
    grid_memory: int = 0

    def __post_init__(self) -> None:
        if self.grid_memory < 0:
            raise ValueError(f"grid_memory must be >= 0 bytes (0: automatic); got "
                             f"{self.grid_memory}")
        if self.grid_group < 0:
            raise ValueError(f"grid_group must be >= 0 (0: whole grid); got {self.grid_group}")
        if self.workers < 0:
            raise ValueError(f"workers (DataLoader workers) must be >= 0; got {self.workers}")
        if self.method not in ("fixed", "rgn", "snr", "l1", *GRADUAL):
            raise ValueError(f"method must be fixed|rgn|snr|l1|gradual-down|gradual-up; got "
                             f"{self.method!r}")
        object.__setattr__(self, "l1_strengths", check_l1_strengths(self.l1_strengths))
        gradual_every(1, 1, self.gradual_every)  # validates
        if self.bn not in ("eval", "train"):
            raise ValueError(f"bn must be eval|train; got {self.bn!r}")
        if self.auto_batches < 1:
            raise ValueError(f"auto_batches must be >= 1; got {self.auto_batches}")
        if not 0.0 <= self.snr_threshold <= 1.0:
            raise ValueError(f"snr_threshold must be in [0, 1]; got {self.snr_threshold}")


@dataclass
class LrTrace:
    """Per-epoch history of one learning rate.

    ``val_metric[e]`` is the validation metric after epoch ``e + 1``; when the lr diverged,
    ``error`` says where and the lists stop at the last finished epoch. ``l1`` is the L1 strength
    of an ``l1`` run (one trace per ``(lr, strength)``); ``rgn_blocks`` holds, per epoch of an
    Auto-RGN run, the mean lr multiplier of each block's tensors.
    """

    lr: float
    train_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    error: str | None = None
    l1: float | None = None
    rgn_blocks: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Best:
    """The best candidate so far: validation metric, lr (``None``: untuned), epoch (0: untuned),
    L1 strength (``l1`` runs; else ``None``) and the snapshot of the state keys a run can change
    (``None``: the pretrained state)."""

    val: float = -math.inf
    lr: float | None = None
    epoch: int = 0
    state: dict[str, torch.Tensor] | None = None
    l1: float | None = None

    def offer(self, val: float, lr: float | None, epoch: int,
              snapshot: Callable[[], dict[str, torch.Tensor]] | None,
              l1: float | None = None) -> bool:
        """Take the candidate if strictly better (ties keep the earlier one); True if taken."""
        if not val > self.val:
            return False
        self.val, self.lr, self.epoch, self.l1 = val, lr, epoch, l1
        self.state = snapshot() if snapshot is not None else None
        return True

    @property
    def found(self) -> bool:
        return self.val > -math.inf


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune` (metrics are fractions in ``[0, 1]``).

    ``best_epoch`` is 1-based; 0 means the untuned network was selected (``tuned="none"``, or
    ``select_with_start``). ``epochs`` is the number of epochs each lr ran (the protocol's, more
    with ``min_steps``). ``status`` is ``"failed"`` when no candidate was left (every learning
    rate diverged); ``error`` then says why. ``start_*`` are the untuned network's metrics.
    ``best_l1`` is the selected L1 strength of an ``l1`` run (else ``None``). ``grid`` says how
    the lr grid was trained (``batched``, group sizes, fallbacks; see :class:`GridRun`).
    """

    status: Literal["ok", "failed"]
    tuned_blocks: tuple[str, ...]
    best_lr: float | None
    best_epoch: int
    val_metric: float
    test_metric: float
    test_accuracy: float
    traces: list[LrTrace]
    cached: bool
    n_trainable: int
    train_seconds: float
    error: str | None = None
    start_val_metric: float = math.nan
    start_test_metric: float = math.nan
    start_test_accuracy: float = math.nan
    epochs: int = 0
    lrs: tuple[float, ...] = ()
    best_l1: float | None = None
    grid: dict[str, object] = field(default_factory=dict)

    @property
    def lr_at_grid_edge(self) -> bool | None:
        """Whether the selected lr is the grid's largest or smallest (``None``: no lr selected).
        A one-point grid is all edge (``True``)."""
        if self.best_lr is None or not self.lrs:
            return None
        return self.best_lr in (max(self.lrs), min(self.lrs))

    @property
    def best_epoch_last(self) -> bool | None:
        """Whether the selected epoch is the last one run (``None``: no tuned epoch selected)."""
        if self.best_lr is None or self.best_epoch == 0:
            return None
        return self.best_epoch == self.epochs



def _changing_state_keys(model: nn.Module, trainable: Sequence[str]) -> list[str]:
    """State keys a training run can change: trainable params + buffers of BN in train mode."""
    keys = set(trainable)
    for mname, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            keys.update(f"{mname}.{b}" for b, _ in m.named_buffers())
    return [k for k in model.state_dict() if k in keys]



def _auto_statistics(
    model: nn.Module, cfg: FinetuneConfig, names: Sequence[str], params: dict[str, nn.Parameter],
    train: _Split, batches: Sequence[torch.Tensor], start: int,
) -> tuple[dict[str, float], set[str]]:
    """``(lr multipliers, frozen tensor names)`` for this epoch (Auto-RGN / Auto-SNR)."""
    use = list(batches[: cfg.auto_batches])
    if cfg.method == "rgn":
        for p in params.values():
            p.grad = None
        for x, y, _ in train.batches(use):
            F.cross_entropy(_forward(model, x, start), y).div(len(use)).backward()
        grads = {n: (params[n].grad if params[n].grad is not None
                     else torch.zeros_like(params[n])) for n in names}
        mult = rgn_multipliers(grads, {n: params[n] for n in names})
        for p in params.values():
            p.grad = None
        return mult, set()
    # Auto-SNR: per-example gradients need BN in eval mode (see surgery.per_example_grads).
    modes = {m: m.training for m in model.modules()}
    model.eval()
    kw = {"start": start} if start else {}
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    with torch.autocast(train.device.type, enabled=False):  # SNR statistics in full precision
        for x, y, _ in train.batches(use):
            for n, g in per_example_grads(model, names, x.float(), y, kw).items():
                chunks[n].append(g)
    for m, was in modes.items():
        m.train(was)
    scores = snr_scores({n: torch.cat(v) for n, v in chunks.items()})
    return dict.fromkeys(names, 1.0), snr_freeze(scores, cfg.snr_threshold)


class _Reporter:
    """Progress inside one run: a tqdm bar over (lr, epoch), or one stderr line per (lr, epoch)."""

    def __init__(self, mode: Progress, total: int, desc: str) -> None:
        self.mode = mode
        self.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr,
                        disable=mode != "bar")
        self.desc = desc

    def epoch(self, lr: float, epoch: int, epochs: int, loss: float, val: float) -> None:
        self.bar.update(1)
        if self.mode == "lines":
            print(f"{self.desc}: lr={lr:g} epoch {epoch}/{epochs} loss {loss:.4f} val {val:.4f}",
                  file=sys.stderr, flush=True)

    def skip(self, n: int) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _train_one_lr(
    model: nn.Module, block_map: BlockMap, tuned: Sequence[str], lr: float, cfg: FinetuneConfig,
    protocol: Protocol, train: _Split, val: _Split, start: int, seed: int, metric: MetricName,
    on_better: Callable[[float, float, int], None], *, epochs: int | None = None,
    on_epoch: Callable[[float, int, float, float], None] | None = None, l1: float | None = None,
) -> LrTrace:
    """Train one lr (with L1 strength ``l1`` for the ``l1`` baseline) for ``epochs`` (default
    ``protocol.epochs``) epochs; call ``on_better(val, lr, epoch)`` after every epoch (the caller
    keeps the best). A non-finite loss stops the lr: the returned trace has ``error`` set and the
    scores of the epochs finished before it."""
    epochs = protocol.epochs if epochs is None else epochs
    trace = LrTrace(lr=lr, l1=l1)
    names = configure_surgery(model, block_map, tuned, cfg.bn)
    params = dict(model.named_parameters())
    trainable = set(names)
    owned = {b: [n for n in ns if n in trainable]
             for b, ns in assign_parameters(model, block_map).items() if b in tuned}
    ref = {n: params[n].detach().clone() for n in names} if l1 is not None else {}
    every = gradual_every(epochs, len(tuned), cfg.gradual_every)
    opt = torch.optim.Adam([{"params": [params[n]], "name": n} for n in names], lr=lr,
                           weight_decay=protocol.weight_decay)
    gen = torch.Generator().manual_seed(seed)  # the same data order for every lr
    for epoch in range(1, epochs + 1):
        batches = list(torch.randperm(train.n, generator=gen).split(protocol.batch_size))
        if cfg.method in ("rgn", "snr"):
            mult, frozen = _auto_statistics(model, cfg, names, params, train, batches, start)
            for group in opt.param_groups:
                group["lr"] = lr * mult[group["name"]]
            for n in names:
                params[n].requires_grad_(n not in frozen)
            if cfg.method == "rgn":
                trace.rgn_blocks.append({b: sum(mult[n] for n in ns) / len(ns)
                                         for b, ns in owned.items() if ns})
        elif cfg.method in GRADUAL:
            frozen = gradual_frozen(cfg.method, tuned, owned, epoch, every)
            for n in names:
                params[n].requires_grad_(n not in frozen)
        total, count = 0.0, 0
        for i, (x, y, _) in enumerate(train.batches(batches)):
            if cfg.augment:
                x = _flip(x, gen)
            loss = F.cross_entropy(_forward(model, x, start), y)
            if l1 is not None:
                loss = loss + l1_penalty(params, ref, l1)
            if not torch.isfinite(loss):
                for n in names:
                    params[n].requires_grad_(True)
                trace.error = (f"non-finite loss ({float(loss.detach())}) at lr={lr:g}, epoch "
                               f"{epoch}, batch {i}")
                return trace
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        for n in names:
            params[n].requires_grad_(True)
        trace.train_loss.append(total / count)
        pred, y, g = _predict(model, val, start, protocol.eval_batch_size)
        trace.val_metric.append(_metric(pred, y, g, metric))
        on_better(trace.val_metric[-1], lr, epoch)
        if on_epoch is not None:
            on_epoch(lr, epoch, trace.train_loss[-1], trace.val_metric[-1])
    return trace


# ----------------------------------------------------------------------------- model selection


def row_best(scores: Sequence[float]) -> int | None:
    """1-based epoch of one lr's best validation score (the first maximum); ``None`` if empty."""
    if not scores:
        return None
    top = max(scores)
    return next(e for e, v in enumerate(scores, start=1) if v == top)


def select_best(traces: Sequence[LrTrace]) -> tuple[int, int] | None:
    """The best tuned candidate ``(index into traces, 1-based epoch)``, or ``None`` if none.

    Candidates are the (lr, epoch) scores of the traces that never diverged (a trace with
    ``error`` is excluded with every epoch it finished); the best validation score wins, ties go
    to the earlier trace of the grid, then the earlier epoch. The choice is always some trace's own
    :func:`row_best` epoch, so a trainer keeps one snapshot per lr, taken whenever ``row_best``
    moves to the newest epoch. Both the per-lr loop and the batched grid
    (:mod:`realdata.grid_batch`) are selected with this function (the untuned network, a candidate
    with ``select_with_start``, is compared in :func:`finetune`).
    """
    best: tuple[float, int, int] | None = None
    for i, t in enumerate(traces):
        e = row_best(t.val_metric) if t.error is None else None
        if e is not None and (best is None or t.val_metric[e - 1] > best[0]):
            best = (t.val_metric[e - 1], i, e)
    return None if best is None else (best[1], best[2])


@dataclass
class GridRun:
    """What training the lr grid gives :func:`finetune` (by the loop or the batched grid).

    Attributes:
        traces: one per lr (per ``(lr, L1 strength)`` of an ``l1`` run), in grid order.
        states: per trace, the changing state (tuned parameters, BN statistics of tuned BN layers
            in train mode) at its :func:`row_best` epoch; ``None`` if it scored no epoch.
        n_trainable: trainable parameters of one model.
        info: how the grid was trained (``batched``, group sizes, fallbacks), recorded in the run.
    """

    traces: list[LrTrace]
    states: list[dict[str, torch.Tensor] | None]
    n_trainable: int
    info: dict[str, object]


def lr_loop(
    model: nn.Module, block_map: BlockMap, tuned: Sequence[str], lrs: Sequence[float],
    splits: Sequence[_Split], protocol: Protocol, config: FinetuneConfig, start: int, seed: int,
    metric: MetricName, init_state: dict[str, torch.Tensor], *, epochs: int | None = None,
    reporter: _Reporter | None = None,
) -> GridRun:
    """The reference path: each lr (each ``(lr, strength)`` of an ``l1`` run) in turn from
    ``init_state`` for ``epochs`` (default ``protocol.epochs``); the model ends at ``init_state``."""
    epochs = protocol.epochs if epochs is None else epochs
    traces: list[LrTrace] = []
    states: list[dict[str, torch.Tensor] | None] = []
    n_trainable = 0
    strengths = config.l1_strengths if config.method == "l1" else (None,)
    for lr, strength in ((a, b) for a in lrs for b in strengths):
        model.load_state_dict(init_state)
        names = configure_surgery(model, block_map, tuned, config.bn)
        snap_keys = _changing_state_keys(model, names)
        n_trainable = sum(p.numel() for n, p in model.named_parameters() if n in set(names))
        local = Best()  # this run's first maximum: the row_best epoch's snapshot

        def snapshot(keys: list[str] = snap_keys) -> dict[str, torch.Tensor]:
            sd = model.state_dict()
            return {k: sd[k].detach().clone() for k in keys}

        def on_better(val: float, lr_: float, epoch: int, best_: Best = local) -> None:
            best_.offer(val, lr_, epoch, snapshot)

        def on_epoch(lr_: float, epoch: int, loss: float, val: float) -> None:
            if reporter is not None:
                reporter.epoch(lr_, epoch, epochs, loss, val)

        trace = _train_one_lr(model, block_map, tuned, lr, config, protocol, splits[0],
                              splits[1], start, seed, metric, on_better, epochs=epochs,
                              on_epoch=on_epoch, l1=strength)
        if trace.error is not None and reporter is not None:
            reporter.skip(epochs - len(trace.val_metric))
        traces.append(trace)
        states.append(local.state)
    model.load_state_dict(init_state)
    return GridRun(traces, states, n_trainable, {"batched": False})


def finetune(
    model: nn.Module,
    block_map: BlockMap,
    train: Dataset,
    val: Dataset,
    test: Dataset,
    *,
    protocol: Protocol,
    config: FinetuneConfig,
    seed: int,
    metric: MetricName = "accuracy",
    progress: Progress = "off",
    desc: str = "finetune",
) -> FinetuneResult:
    """Fine-tune ``model`` (in place; it ends at the selected snapshot) and evaluate.

    Args:
        model: pretrained network; a :class:`Backbone` enables prefix caching.
        block_map: ordered block map of ``model`` (its order is the stage order for backbones).
        train, val, test: target splits (items ``(image, label, group)``).
        protocol: epochs (``min_steps``), lr grid, weight decay, batch sizes, selection rule.
        config: tuned blocks, method, BN mode, caching.
        seed: data order (and flips); the same seed gives the same numbers.
        metric: ``"accuracy"`` or ``"worst_group"`` for model selection and the test report.
        progress: a bar over (lr, epoch), one line per (lr, epoch), or nothing.
        desc: label of the progress output.

    Returns:
        :class:`FinetuneResult`. Learning rates whose loss became non-finite are recorded in
        ``traces[i].error`` and excluded; if no candidate is left, ``status == "failed"``.

    Raises:
        ValueError: empty split, unknown block, bad block map.
    """
    ((res, state),) = _finetune_targets(model, block_map, [(train, val, test, seed)],
                                        protocol=protocol, config=config, metric=metric,
                                        progress=progress, desc=desc)
    if state is not None:
        model.load_state_dict(state, strict=False)
    return res


Target = tuple[Dataset, Dataset, Dataset, int]
"""One fine-tuning problem of :func:`finetune_many`: ``(train, val, test, seed)``."""


def finetune_many(
    model: nn.Module,
    block_map: BlockMap,
    targets: Sequence[Target],
    *,
    protocol: Protocol,
    config: FinetuneConfig,
    metric: MetricName = "accuracy",
    progress: Progress = "off",
    desc: str = "finetune",
) -> list[FinetuneResult]:
    """:func:`finetune` of the same pretrained ``model`` on several ``(train, val, test, seed)``
    targets (seeds of one target, or several targets sharing the source model).

    With ``config.grid_batch`` every (target, lr) pair is one member of the batched grid
    (:mod:`realdata.grid_batch`; each member with its own target's data and data order); without
    it, the targets run one after another with the per-lr loop. Each result equals
    :func:`finetune`'s on that target alone (tested), except ``train_seconds``: each target's
    share (wall time / targets) of the whole call. The model ends at its initial state.
    """
    out = _finetune_targets(model, block_map, targets, protocol=protocol, config=config,
                            metric=metric, progress=progress, desc=desc)
    return [res for res, _ in out]


def _finetune_targets(
    model: nn.Module, block_map: BlockMap, targets: Sequence[Target], *, protocol: Protocol,
    config: FinetuneConfig, metric: MetricName, progress: Progress, desc: str,
) -> list[tuple[FinetuneResult, dict[str, torch.Tensor] | None]]:
    """Splits built, model on its device, autocast set; then :func:`_finetune` (the model ends at
    its initial state)."""
    if not targets:
        raise ValueError("finetune_many needs at least one (train, val, test, seed) target")
    blocks = tuple(block_map)
    tuned = resolve_tuned(config.tuned, blocks)
    accel = accelerations(config)
    split_sets = [[_Split(d, n, config.workers, config.device, accel)
                   for d, n in ((tr, "train"), (va, "val"), (te, "test"))]
                  for tr, va, te, _ in targets]
    model.to(config.device)
    if accel.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    epochs = [protocol.epochs_for(s[0].n) if tuned else 0 for s in split_sets]
    runs = len(protocol.lrs) * (len(config.l1_strengths) if config.method == "l1" else 1)
    reporter = _Reporter(progress, runs * sum(epochs) if tuned else 0, desc)
    try:
        with _autocast(config.device, accel.bf16):
            return _finetune(model, block_map, blocks, tuned, split_sets,
                             [t[3] for t in targets], protocol, config, metric, epochs, reporter)
    finally:
        reporter.close()


def _evaluate_split(model: nn.Module, split: _Split, start: int, bs: int, metric: MetricName
                    ) -> tuple[float, float]:
    pred, y, g = _predict(model, split, start, bs)
    return _metric(pred, y, g, metric), _metric(pred, y, g, "accuracy")


def _cache_all(split_sets: Sequence[Sequence[_Split]], model: nn.Module, start: int, bs: int,
               limit: int) -> bool:
    """Cache the prefix of every target's splits (``limit`` per target, as for a single run);
    if one target's outputs do not fit, no target stays cached."""
    for i, splits in enumerate(split_sets):
        if not _cache_prefix(splits, model, start, bs, limit):
            for s in (s for done in split_sets[:i] for s in done):
                s.feats = s.labels = s.groups = None
            return False
    return True


def _finetune(
    model: nn.Module, block_map: BlockMap, blocks: tuple[str, ...], tuned: tuple[str, ...],
    split_sets: Sequence[Sequence[_Split]], seeds: Sequence[int], protocol: Protocol,
    config: FinetuneConfig, metric: MetricName, epochs: Sequence[int], reporter: _Reporter,
) -> list[tuple[FinetuneResult, dict[str, torch.Tensor] | None]]:
    """Per target: the result and the selected snapshot (``None``: the initial state); the model
    ends at its initial state."""
    init_state = copy.deepcopy(model.state_dict())
    t0 = time.perf_counter()
    bs = protocol.eval_batch_size

    start = 0
    if tuned and isinstance(model, Backbone) and [s for s, _ in model.stages()] == list(blocks):
        start = blocks.index(tuned[0])
    cached = False
    if start > 0 and config.cache and not config.augment:
        model.eval()
        cached = _cache_all(split_sets, model, start, bs, config.cache_limit_bytes)
    if not cached:
        start = 0

    # the untuned network (always measured; a candidate with --select-with-start or tuned=none)
    configure_surgery(model, block_map, (), config.bn)
    starts = []
    for splits in split_sets:
        start_val, _ = _evaluate_split(model, splits[1], start, bs, metric)
        start_test, start_acc = _evaluate_split(model, splits[2], start, bs, metric)
        starts.append({"start_val_metric": start_val, "start_test_metric": start_test,
                       "start_test_accuracy": start_acc})
    if not tuned:
        return [(FinetuneResult("ok", (), None, 0, st["start_val_metric"],
                                st["start_test_metric"], st["start_test_accuracy"], [], cached,
                                0, time.perf_counter() - t0, **st, epochs=0, lrs=protocol.lrs),
                 None) for st in starts]

    if config.grid_batch:
        from realdata.grid_batch import train_grids
        runs = train_grids(model, block_map, tuned, protocol.lrs, split_sets, protocol, config,
                           start, seeds, metric, init_state, epochs=epochs, reporter=reporter)
    else:
        runs = [lr_loop(model, block_map, tuned, protocol.lrs, splits, protocol, config, start,
                        seed, metric, init_state, epochs=e, reporter=reporter)
                for splits, seed, e in zip(split_sets, seeds, epochs)]
    out = []
    for run, splits, st, e in zip(runs, split_sets, starts, epochs):
        out.append(_conclude(model, run, splits, st, (block_map, tuned, start, cached, e),
                             protocol, config, metric, init_state,
                             lambda: (time.perf_counter() - t0) / len(split_sets)))
    model.load_state_dict(init_state)
    return out


def _conclude(
    model: nn.Module, run: GridRun, splits: Sequence[_Split], starts: dict[str, float],
    how: tuple[BlockMap, tuple[str, ...], int, bool, int], protocol: Protocol,
    config: FinetuneConfig, metric: MetricName, init_state: dict[str, torch.Tensor],
    seconds: Callable[[], float],
) -> tuple[FinetuneResult, dict[str, torch.Tensor] | None]:
    """Selection and the test metric of one target's trained grid (model left at the snapshot).

    ``how`` is ``(block map, tuned blocks, start stage, cached, epochs)``; ``seconds()`` the
    target's share of the wall time."""
    block_map, tuned, start, cached, epochs = how
    traces, n_trainable = run.traces, run.n_trainable
    best = Best()
    if protocol.select_with_start:
        best.offer(starts["start_val_metric"], None, 0, None)
    chosen = select_best(traces)
    if chosen is not None:
        i, e = chosen
        best.offer(traces[i].val_metric[e - 1], traces[i].lr, e,
                   lambda s=run.states[i]: s, traces[i].l1)  # type: ignore[misc]
    model.load_state_dict(init_state)
    configure_surgery(model, block_map, tuned, config.bn)
    model.eval()
    common = {"traces": traces, "cached": cached, "n_trainable": n_trainable, **starts,
              "epochs": epochs, "lrs": protocol.lrs, "grid": run.info}
    if not best.found:
        errors = "; ".join(t.error or "" for t in traces)
        return FinetuneResult("failed", tuned, None, 0, math.nan, math.nan, math.nan,
                              train_seconds=seconds(),
                              error=f"every learning rate diverged: {errors}", **common), None
    if best.state is None:  # the untuned network won
        return FinetuneResult("ok", tuned, None, 0, best.val, starts["start_test_metric"],
                              starts["start_test_accuracy"],
                              train_seconds=seconds(), **common), None
    model.load_state_dict(best.state, strict=False)
    test_metric, test_acc = _evaluate_split(model, splits[2], start, protocol.eval_batch_size,
                                            metric)
    return FinetuneResult("ok", tuned, best.lr, best.epoch, best.val, test_metric, test_acc,
                          train_seconds=seconds(), best_l1=best.l1, **common), best.state

