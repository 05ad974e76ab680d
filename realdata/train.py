"""Fine-tuning with the official protocol, frozen-prefix caching, Auto-RGN/Auto-SNR; pretraining.

:func:`finetune` trains the tuned blocks of a pretrained model on a target's train split for every
learning rate of the protocol's grid (each lr starts again from the pretrained weights), selects the
(lr, epoch) with the best validation metric, and reports the test metric of that snapshot.

Frozen-prefix caching: when the first tuned block is block ``j >= 2`` of a :class:`Backbone`, the
stages before it are frozen and in eval mode (see :mod:`realdata.surgery`), and there is no
augmentation, their output is computed once per split and reused across epochs and learning rates.
The data order, optimizer and every number downstream are the same as without caching (tested);
the cache is skipped when it would exceed ``cache_limit_bytes``.

On a CUDA device, bf16 autocast (when ``torch.cuda.is_bf16_supported()``), channels_last memory
format and pinned host memory are used by default; :class:`FinetuneConfig` switches each off
(``bf16``, ``channels_last``, ``pin_memory``), and :func:`accelerations` says which are in effect.
On CPU none is used.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from realdata.baselines import (
    DEFAULT_L1_STRENGTHS,
    GRADUAL,
    check_l1_strengths,
    gradual_every,
    gradual_frozen,
    l1_penalty,
)
from realdata.data.base import check_split_nonempty
from realdata.models.base import Backbone
from realdata.models.blocks import BlockMap, assign_parameters
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
    "FinetuneConfig",
    "FinetuneResult",
    "GridRun",
    "LrTrace",
    "NonFiniteLossError",
    "accelerations",
    "evaluate",
    "finetune",
    "lr_loop",
    "pretrain",
    "row_best",
    "select_best",
]

Method = Literal["fixed", "rgn", "snr", "l1", "gradual-down", "gradual-up"]
MetricName = Literal["accuracy", "worst_group"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf (the message names the lr, epoch and batch)."""


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
        l1_strengths: L1-regularize strengths, selected on validation with the lr.
        gradual_every: gradual unfreezing interval in epochs (``None``: epochs // blocks).
        cache_limit_bytes: do not cache prefix outputs larger than this (all splits together).
        workers: DataLoader workers for datasets read from disk (0: in the main process).
        device: torch device for the model and batches (``"cpu"``, ``"cuda"``).
        bf16: allow bf16 autocast (used on CUDA devices that support bf16).
        channels_last: allow the channels_last memory format (used on CUDA).
        pin_memory: allow pinned host memory for batches copied to the device (used on CUDA).
        grid_batch: train the learning-rate grid as one batched model
            (:mod:`realdata.grid_batch`; method ``"fixed"`` only) instead of one lr at a time.
        grid_group: at most this many learning rates per batched group (0: the whole grid);
            groups are halved further when the device runs out of memory.
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

    def __post_init__(self) -> None:
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


@dataclass(frozen=True)
class Accelerations:
    """Which device accelerations a fine-tuning run uses (all ``False`` on CPU)."""

    bf16: bool = False
    channels_last: bool = False
    pin_memory: bool = False


def accelerations(config: FinetuneConfig) -> Accelerations:
    """The accelerations in effect for ``config``: each allowed by its flag and supported by the
    device (bf16 needs ``torch.cuda.is_bf16_supported()``; all three need a CUDA device)."""
    if torch.device(config.device).type != "cuda" or not torch.cuda.is_available():
        return Accelerations()
    return Accelerations(bf16=config.bf16 and torch.cuda.is_bf16_supported(),
                         channels_last=config.channels_last, pin_memory=config.pin_memory)


def _autocast(device: torch.device | str, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` (else a no-op context).

    The context spans a whole fine-tuning run, so autocast's cache of down-cast weights is off:
    with it, the optimizer's updates would never reach the cached bf16 copies.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False)


@dataclass
class LrTrace:
    """Per-epoch history of one learning rate (``error`` set if it diverged).

    ``l1`` is the L1 strength of an ``l1`` run; ``rgn_blocks`` holds, per epoch of an Auto-RGN
    run, the mean lr multiplier of each block's tensors."""

    lr: float
    train_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    error: str | None = None
    l1: float | None = None
    rgn_blocks: list[dict[str, float]] = field(default_factory=list)


@dataclass
class FinetuneResult:
    """Outcome of :func:`finetune` (metrics are fractions in ``[0, 1]``).

    ``best_epoch`` is 1-based (0 with ``tuned="none"``). ``status`` is ``"failed"`` when every
    learning rate diverged; ``error`` then says why.
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
    best_l1: float | None = None
    grid: dict[str, object] = field(default_factory=dict)


# ----------------------------------------------------------------------------- data access


class _Split:
    """A split as either cached prefix outputs or the dataset itself."""

    def __init__(self, dataset: Dataset, name: str, workers: int,
                 device: torch.device | str = "cpu",
                 accel: Accelerations | None = None) -> None:
        check_split_nonempty(dataset, name)
        self.dataset, self.name, self.workers = dataset, name, workers
        self.device = torch.device(device)
        self.accel = accel or Accelerations()
        self.n = len(dataset)  # type: ignore[arg-type]
        self.feats: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self.groups: torch.Tensor | None = None

    def batches(
        self, index_batches: Sequence[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        pin, fmt = self.accel.pin_memory, self.accel.channels_last
        for x, y, g in self._batches(index_batches):
            if pin and x.device.type == "cpu" and not x.is_pinned():
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=pin)
            if fmt and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device), g.to(self.device)

    def _batches(
        self, index_batches: Sequence[torch.Tensor]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.feats is not None:
            for idx in index_batches:
                yield self.feats[idx], self.labels[idx], self.groups[idx]  # type: ignore[index]
            return
        ds = self.dataset
        if hasattr(ds, "batch"):
            for idx in index_batches:
                yield ds.batch(idx)  # type: ignore[attr-defined]
            return
        loader = DataLoader(ds, batch_sampler=[b.tolist() for b in index_batches],
                            num_workers=self.workers, pin_memory=self.accel.pin_memory)
        for x, y, g in loader:
            yield x, y.long(), g.long()

    def in_order(self, bs: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self.batches(list(torch.arange(self.n).split(bs)))


def _forward(model: nn.Module, x: torch.Tensor, start: int) -> torch.Tensor:
    return model(x, start=start) if start else model(x)


@torch.no_grad()
def _cache_prefix(splits: Sequence[_Split], model: Backbone, start: int, bs: int,
                  limit: int) -> bool:
    """Replace each split's data by the output of stages ``< start``; False if over ``limit``."""
    out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    total = sum(s.n for s in splits)
    for s in splits:
        feats, ys, gs = [], [], []
        for x, y, g in s.in_order(bs):
            h = model(x, start=0, stop=start)
            if not feats and h[0].numel() * h.element_size() * total > limit:
                return False
            feats.append(h)
            ys.append(y)
            gs.append(g)
        out.append((torch.cat(feats), torch.cat(ys), torch.cat(gs)))
    for s, (h, y, g) in zip(splits, out):
        s.feats, s.labels, s.groups = h, y, g
    return True


# ----------------------------------------------------------------------------- metrics


def _metric(pred: torch.Tensor, y: torch.Tensor, g: torch.Tensor, metric: MetricName) -> float:
    correct = (pred == y).double()
    if metric == "accuracy":
        return float(correct.mean())
    if metric != "worst_group":
        raise ValueError(f"metric must be accuracy|worst_group; got {metric!r}")
    if bool((g < 0).any()):
        raise ValueError("worst_group metric needs a group for every example (got group -1)")
    return min(float(correct[g == k].mean()) for k in torch.unique(g))


@torch.no_grad()
def _predict(model: nn.Module, split: _Split, start: int, bs: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions in eval mode (BN layers tuned with ``--bn train`` included); modes restored."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    preds, ys, gs = [], [], []
    for x, y, g in split.in_order(bs):
        preds.append(_forward(model, x, start).argmax(1))
        ys.append(y)
        gs.append(g)
    for m, was in modes.items():
        m.train(was)
    return torch.cat(preds), torch.cat(ys), torch.cat(gs)


def evaluate(model: nn.Module, dataset: Dataset, *, metric: MetricName = "accuracy",
             batch_size: int = 256) -> tuple[float, float]:
    """``(metric, accuracy)`` of ``model`` (in its current mode) on ``dataset``."""
    was = model.training
    model.eval()
    pred, y, g = _predict(model, _Split(dataset, "eval", 0), 0, batch_size)
    model.train(was)
    return _metric(pred, y, g, metric), _metric(pred, y, g, "accuracy")


# ----------------------------------------------------------------------------- fine-tuning


def _changing_state_keys(model: nn.Module, trainable: Sequence[str]) -> list[str]:
    """State keys a training run can change: trainable params + buffers of BN in train mode."""
    keys = set(trainable)
    for mname, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            keys.update(f"{mname}.{b}" for b, _ in m.named_buffers())
    return [k for k in model.state_dict() if k in keys]


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(x.shape[0], generator=gen) < 0.5
    x = x.clone()
    x[mask] = x[mask].flip(-1)
    return x


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


def _train_one_lr(
    model: nn.Module, block_map: BlockMap, tuned: Sequence[str], trace: LrTrace,
    cfg: FinetuneConfig, protocol: Protocol, train: _Split, val: _Split, start: int, seed: int,
    metric: MetricName, on_epoch: Callable[[LrTrace], None],
) -> None:
    """Train ``trace.lr`` (L1 strength ``trace.l1``) from the model's current state, appending to
    ``trace`` each epoch and calling ``on_epoch(trace)`` after it (raises
    :class:`NonFiniteLossError` on divergence)."""
    lr, l1 = trace.lr, trace.l1
    names = configure_surgery(model, block_map, tuned, cfg.bn)
    params = dict(model.named_parameters())
    owned = {b: [n for n in ns if n in set(names)]
             for b, ns in assign_parameters(model, block_map).items() if b in tuned}
    ref = {n: params[n].detach().clone() for n in names} if cfg.method == "l1" else {}
    every = gradual_every(protocol.epochs, len(tuned), cfg.gradual_every)
    opt = torch.optim.Adam([{"params": [params[n]], "name": n} for n in names], lr=lr,
                           weight_decay=protocol.weight_decay)
    gen = torch.Generator().manual_seed(seed)  # the same data order for every lr
    for epoch in range(1, protocol.epochs + 1):
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
                raise NonFiniteLossError(
                    f"non-finite loss ({float(loss.detach())}) at lr={lr:g}, epoch {epoch}, batch {i}")
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
        on_epoch(trace)


# ----------------------------------------------------------------------------- model selection


def row_best(scores: Sequence[float]) -> int | None:
    """1-based epoch of one lr's best validation score (the first maximum); ``None`` if empty."""
    if not scores:
        return None
    top = max(scores)
    return next(e for e, v in enumerate(scores, start=1) if v == top)


def select_best(traces: Sequence[LrTrace]) -> tuple[int, int] | None:
    """The selected ``(index into traces, 1-based epoch)``, or ``None`` if no epoch was scored.

    The best validation score over every recorded (lr, epoch) (an lr that diverged keeps the
    epochs it finished); ties go to the earlier lr of the grid, then the earlier epoch. The choice
    is always some lr's own :func:`row_best` epoch, so a trainer keeps one snapshot per lr, taken
    whenever ``row_best`` moves to the newest epoch. Both the per-lr loop and the batched grid
    (:mod:`realdata.grid_batch`) select with this function.
    """
    best: tuple[float, int, int] | None = None
    for i, t in enumerate(traces):
        e = row_best(t.val_metric)
        if e is not None and (best is None or t.val_metric[e - 1] > best[0]):
            best = (t.val_metric[e - 1], i, e)
    return None if best is None else (best[1], best[2])


@dataclass
class GridRun:
    """What training the lr grid gives :func:`finetune` (by the loop or the batched grid).

    Attributes:
        traces: one per lr of the protocol, in grid order.
        states: per lr, the changing state (tuned parameters, BN statistics of tuned BN layers
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
    metric: MetricName, init_state: dict[str, torch.Tensor],
) -> GridRun:
    """The reference path: each lr in turn from ``init_state`` (the model ends there too)."""
    traces: list[LrTrace] = []
    states: list[dict[str, torch.Tensor] | None] = []
    n_trainable = 0
    strengths = config.l1_strengths if config.method == "l1" else (None,)
    for lr, strength in ((a, b) for a in lrs for b in strengths):
        model.load_state_dict(init_state)
        names = configure_surgery(model, block_map, tuned, config.bn)
        keys = _changing_state_keys(model, names)
        n_trainable = sum(p.numel() for n, p in model.named_parameters() if n in set(names))
        snap: dict[str, dict[str, torch.Tensor]] = {}

        def on_epoch(trace: LrTrace, keys: list[str] = keys,
                     snap: dict[str, dict[str, torch.Tensor]] = snap) -> None:
            if row_best(trace.val_metric) == len(trace.val_metric):
                sd = model.state_dict()
                snap["state"] = {k: sd[k].detach().clone() for k in keys}

        trace = LrTrace(lr=lr, l1=strength)
        try:
            _train_one_lr(model, block_map, tuned, trace, config, protocol, splits[0],
                          splits[1], start, seed, metric, on_epoch)
        except NonFiniteLossError as exc:
            trace.error = str(exc)
        traces.append(trace)
        states.append(snap.get("state"))
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
) -> FinetuneResult:
    """Fine-tune ``model`` (in place; it ends at the selected snapshot) and evaluate.

    Args:
        model: pretrained network; a :class:`Backbone` enables prefix caching.
        block_map: ordered block map of ``model`` (its order is the stage order for backbones).
        train, val, test: target splits (items ``(image, label, group)``).
        protocol: epochs, lr grid, weight decay, batch sizes.
        config: tuned blocks, method, BN mode, caching.
        seed: data order (and flips); the same seed gives the same numbers.
        metric: ``"accuracy"`` or ``"worst_group"`` for model selection and the test report.

    Returns:
        :class:`FinetuneResult`. Learning rates whose loss became non-finite are recorded in
        ``traces[i].error`` and skipped; if all diverge, ``status == "failed"``.

    Raises:
        ValueError: empty split, unknown block, bad block map.
    """
    blocks = tuple(block_map)
    tuned = resolve_tuned(config.tuned, blocks)
    accel = accelerations(config)
    splits = [_Split(d, n, config.workers, config.device, accel)
              for d, n in ((train, "train"), (val, "val"), (test, "test"))]
    model.to(config.device)
    if accel.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    with _autocast(config.device, accel.bf16):
        return _finetune(model, block_map, blocks, tuned, splits, protocol, config, seed, metric)


def _finetune(
    model: nn.Module, block_map: BlockMap, blocks: tuple[str, ...], tuned: tuple[str, ...],
    splits: Sequence[_Split], protocol: Protocol, config: FinetuneConfig, seed: int,
    metric: MetricName,
) -> FinetuneResult:
    """The body of :func:`finetune` (splits built, model on its device, autocast set)."""
    init_state = copy.deepcopy(model.state_dict())
    t0 = time.perf_counter()
    if not tuned:
        configure_surgery(model, block_map, (), config.bn)
        pv, tv, ta = (_metric(*_predict(model, s, 0, protocol.eval_batch_size), m)
                      for s, m in ((splits[1], metric), (splits[2], metric),
                                   (splits[2], "accuracy")))
        return FinetuneResult("ok", (), None, 0, pv, tv, ta, [], False, 0,
                              time.perf_counter() - t0)

    start = 0
    if isinstance(model, Backbone) and [s for s, _ in model.stages()] == list(blocks):
        start = blocks.index(tuned[0])
    cached = False
    if start > 0 and config.cache and not config.augment:
        model.eval()
        cached = _cache_prefix(splits, model, start, protocol.eval_batch_size,
                               config.cache_limit_bytes)
    if not cached:
        start = 0

    if config.grid_batch:
        from realdata.grid_batch import train_grid as run_grid
    else:
        run_grid = lr_loop
    run = run_grid(model, block_map, tuned, protocol.lrs, splits, protocol, config, start, seed,
                   metric, init_state)
    traces = run.traces
    configure_surgery(model, block_map, tuned, config.bn)
    model.eval()
    chosen = select_best(traces)
    if chosen is None:
        errors = "; ".join(t.error or "" for t in traces)
        return FinetuneResult("failed", tuned, None, 0, math.nan, math.nan, math.nan, traces,
                              cached, run.n_trainable, time.perf_counter() - t0,
                              error=f"every learning rate diverged: {errors}", grid=run.info)
    i, epoch = chosen
    model.load_state_dict(run.states[i], strict=False)  # type: ignore[arg-type]
    pred, y, g = _predict(model, splits[2], start, protocol.eval_batch_size)
    return FinetuneResult(
        "ok", tuned, traces[i].lr, epoch, traces[i].val_metric[epoch - 1],
        _metric(pred, y, g, metric), _metric(pred, y, g, "accuracy"), traces, cached,
        run.n_trainable, time.perf_counter() - t0, best_l1=traces[i].l1, grid=run.info,
    )


# ----------------------------------------------------------------------------- pretraining


def pretrain(
    model: nn.Module, dataset: Dataset, *, epochs: int, lr: float, batch_size: int, seed: int,
    weight_decay: float = 5e-4,
) -> list[float]:
    """Train every parameter on the source (BN in train mode; SGD, momentum 0.9, cosine lr).

    Returns:
        Mean training loss per epoch.
    """
    split = _Split(dataset, "source train", 0)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay,
                          nesterov=True)
    steps = epochs * math.ceil(split.n / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(epochs):
        total = 0.0
        for x, y, _ in split.batches(list(torch.randperm(split.n, generator=gen)
                                          .split(batch_size))):
            x = _flip(x, gen)
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite pretraining loss at epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
        losses.append(total / split.n)
    model.eval()
    return losses
