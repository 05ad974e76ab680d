"""The whole learning-rate grid of one (task, option) trained as one batched model.

Every lr of the protocol starts from the same pretrained weights and sees the same data order
(the order is drawn from the run's seed, not from the lr), so the grid can run as ``K`` members
of one model: each tuned tensor is stacked along a new leading axis (``(K, *shape)``), the frozen
tensors are shared, and :func:`torch.func.functional_call` under :func:`torch.func.vmap` runs every
member on the same batch (the convolutions of stacked weights become grouped convolutions, the
frozen layers one big batch). Frozen stages before the first tuned block run once per batch for
all members (or come from the prefix cache of :mod:`realdata.train`).

Each member follows the per-lr loop exactly: the same batches and flips, :class:`StackedAdam`
(``torch.optim.Adam``'s update with L2 weight decay, per member lr), BatchNorm of tuned blocks
in train mode with per-member running statistics, a member whose loss becomes non-finite stops
with the loop's error message, validation after every epoch, and a snapshot of each member at
its :func:`realdata.train.row_best` epoch. Selection happens in :func:`realdata.train.finetune`
with :func:`realdata.train.select_best`, the same function as for the loop.

Memory: a group of ``k`` members needs at most ``k`` times the loop's activations and tuned
state (the frozen tensors are not copied). :func:`train_grid` starts with the whole grid (or
``FinetuneConfig.grid_group`` members) and, when the device runs out of memory, restarts that
group with half as many members; group sizes and fallbacks are recorded in ``GridRun.info``.
Auto-RGN and Auto-SNR (per-member lr multipliers and freezing) and a grid of one lr use the
per-lr loop, also recorded.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.overrides import TorchFunctionMode

from realdata.metrics import metric_value
from realdata.models.base import Backbone
from realdata.models.blocks import BlockMap
from realdata.surgery import configure_surgery
from realdata.tasks import Protocol
from realdata.train import (
    FinetuneConfig,
    GridRun,
    LrTrace,
    MetricName,
    _changing_state_keys,
    _flip,
    _Reporter,
    _Split,
    lr_loop,
    row_best,
)

__all__ = ["StackedAdam", "is_out_of_memory", "train_grid", "unsupported_reason"]

Tensors = dict[str, torch.Tensor]


class StackedAdam:
    """``torch.optim.Adam`` (amsgrad off, L2 weight decay added to the gradient) on stacked
    tensors whose leading axis indexes members, member ``k`` with learning rate ``lrs[k]``.

    The update per member is the one of ``torch.optim.Adam``'s single-tensor path, operation by
    operation; every member takes a step at every call (the step count is shared).
    """

    def __init__(self, params: Sequence[torch.Tensor], lrs: Sequence[float], weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if any(p.shape[0] != len(lrs) for p in params):
            raise ValueError(f"every stacked tensor needs a leading axis of {len(lrs)} members")
        self.lrs = list(lrs)
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = 0

    @torch.no_grad()
    def step(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
        """Update ``params`` in place from ``grads`` (same shapes, ``(K, *shape)``)."""
        self.steps += 1
        b1, b2 = self.betas
        bc1 = 1 - b1 ** self.steps
        bc2_sqrt = (1 - b2 ** self.steps) ** 0.5
        for p, g, m, v in zip(params, grads, self.exp_avg, self.exp_avg_sq):
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            size = torch.tensor([-lr / bc1 for lr in self.lrs], dtype=p.dtype, device=p.device)
            p.add_((m / denom) * size.view(-1, *[1] * (p.dim() - 1)))

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only the members ``idx`` (an index tensor into the leading axis)."""
        self.lrs = [self.lrs[i] for i in idx.tolist()]
        self.exp_avg = [m[idx.to(m.device)] for m in self.exp_avg]
        self.exp_avg_sq = [v[idx.to(v.device)] for v in self.exp_avg_sq]


class _AutocastUnderVmap(TorchFunctionMode):
    """Autocast's casts for the ops of the built-in backbones, applied by hand under ``vmap``.

    ``vmap``'s batching rules run before autocast and call ops autocast does not list (a
    convolution of stacked weights becomes ``aten::convolution``), so inside the batched model
    nothing would be cast. This mode does what autocast does for the eager ops: convolutions and
    ``linear`` in the autocast dtype, ``cross_entropy`` in fp32, and ``batch_norm`` (which the
    eager kernels run on a low-precision input with fp32 parameters, computing in fp32) on the
    input upcast to fp32, its output cast back.
    """

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        kwargs = kwargs or {}
        if func in _LOW:
            args = tuple(a.to(self.dtype) if isinstance(a, torch.Tensor)
                         and a.is_floating_point() else a for a in args)
        elif func is F.cross_entropy:
            args = (args[0].float(), *args[1:])
        elif func is F.batch_norm and args[0].dtype != torch.float32:
            return func(args[0].float(), *args[1:], **kwargs).to(args[0].dtype)
        return func(*args, **kwargs)


_LOW = (F.conv1d, F.conv2d, F.conv3d, F.linear)


def _autocast_under_vmap(device: torch.device) -> contextlib.AbstractContextManager:
    """:class:`_AutocastUnderVmap` while autocast is on for ``device`` (else a no-op)."""
    if not torch.is_autocast_enabled(device.type):
        return contextlib.nullcontext()
    return _AutocastUnderVmap(torch.get_autocast_dtype(device.type))


def unsupported_reason(config: FinetuneConfig, lrs: Sequence[float]) -> str | None:
    """Why this run uses the per-lr loop instead (``None``: the batched grid applies)."""
    if config.method != "fixed":
        return f"method {config.method} adapts each lr separately (per-lr loop)"
    if len(lrs) < 2:
        return "a grid of one lr (per-lr loop)"
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the device (CUDA) or host allocator running out of memory."""
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in msg
                                              or "can't allocate memory" in msg)


def train_grid(
    model: nn.Module, block_map: BlockMap, tuned: Sequence[str], lrs: Sequence[float],
    splits: Sequence[_Split], protocol: Protocol, config: FinetuneConfig, start: int, seed: int,
    metric: MetricName, init_state: Tensors, *, epochs: int | None = None,
    reporter: _Reporter | None = None,
) -> GridRun:
    """Train every lr of ``lrs`` from ``init_state`` as batched groups for ``epochs`` (default
    ``protocol.epochs``); same contract as :func:`realdata.train.lr_loop` (the model ends at
    ``init_state``). ``reporter`` reports every (lr, epoch) as the loop does.

    Args:
        start: stage whose input the splits hold (``> 0`` when the prefix is cached).
    """
    epochs = protocol.epochs if epochs is None else epochs
    reason = unsupported_reason(config, lrs)
    if reason is not None:
        run = lr_loop(model, block_map, tuned, lrs, splits, protocol, config, start, seed,
                      metric, init_state, epochs=epochs, reporter=reporter)
        run.info["reason"] = reason
        return run
    # vmap cannot query channels_last strides inside batch norm ("NYI: querying is_contiguous
    # inside of vmap"), so the batched path runs in the default memory format.
    channels_last = any(p.dim() == 4 and not p.is_contiguous()
                        and p.is_contiguous(memory_format=torch.channels_last)
                        for p in model.parameters())
    if channels_last:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    traces: list[LrTrace | None] = [None] * len(lrs)
    states: list[Tensors | None] = [None] * len(lrs)
    size = min(config.grid_group or len(lrs), len(lrs))
    groups: list[int] = []
    fallbacks: list[dict[str, object]] = []
    n_trainable, done = 0, 0
    while done < len(lrs):
        idx = list(range(done, min(done + size, len(lrs))))
        model.load_state_dict(init_state)
        try:
            g_traces, g_states, n_trainable = _train_group(
                model, block_map, tuned, [lrs[i] for i in idx], splits, protocol, config,
                start, seed, metric, epochs, reporter)
        except (RuntimeError, MemoryError) as exc:
            if not is_out_of_memory(exc) or len(idx) == 1:
                raise
            fallbacks.append({"members": len(idx), "error": str(exc).splitlines()[0][:200]})
            size = len(idx) // 2
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        for j, i in enumerate(idx):
            traces[i], states[i] = g_traces[j], g_states[j]
        groups.append(len(idx))
        done += len(idx)
        if reporter is not None:  # the epochs a diverged member did not run
            reporter.skip(sum(epochs - len(t.val_metric) for t in g_traces))
    model.load_state_dict(init_state)
    info: dict[str, object] = {"batched": True, "groups": groups, "fallbacks": fallbacks}
    if channels_last:  # the model leaves in the memory format it came in
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        info["channels_last_dropped"] = True
    return GridRun([t for t in traces if t is not None], states, n_trainable, info)


def _prefix_stop(model: nn.Module, block_map: BlockMap, tuned: Sequence[str], start: int) -> int:
    """First stage that must run per member (the frozen stages before it run once per batch)."""
    blocks = list(block_map)
    if isinstance(model, Backbone) and [s for s, _ in model.stages()] == blocks:
        return max(start, blocks.index(tuned[0]))
    return start


def _stacked(t: torch.Tensor, k: int) -> torch.Tensor:
    return t.detach().unsqueeze(0).expand(k, *t.shape).clone()


def _train_group(
    model: nn.Module, block_map: BlockMap, tuned: Sequence[str], lrs: Sequence[float],
    splits: Sequence[_Split], protocol: Protocol, config: FinetuneConfig, start: int, seed: int,
    metric: MetricName, epochs: int, reporter: _Reporter | None = None,
) -> tuple[list[LrTrace], list[Tensors | None], int]:
    """One batched group, from the model's current (initial) state."""
    train, val = splits[0], splits[1]
    names = configure_surgery(model, block_map, tuned, config.bn)
    keys = _changing_state_keys(model, names)
    sd = model.state_dict()
    k = len(lrs)
    params = {n: _stacked(sd[n], k).requires_grad_() for n in names}
    bufs = {b: _stacked(sd[b], k) for b in keys if b not in params}
    n_trainable = sum(p[0].numel() for p in params.values())
    stop = _prefix_stop(model, block_map, tuned, start)
    kw = {"start": stop} if stop else {}

    def loss_one(p: Tensors, b: Tensors, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, b), (x,), kw), y)

    def logits_one(p: Tensors, b: Tensors, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (p, b), (x,), kw)

    losses_of = vmap(loss_one, in_dims=(0, 0, None, None))
    logits_of = vmap(logits_one, in_dims=(0, 0, None))

    def prefix(x: torch.Tensor) -> torch.Tensor:
        if stop == start:
            return x
        with torch.no_grad():
            return model(x, start=start, stop=stop)

    opt = StackedAdam(list(params.values()), lrs, protocol.weight_decay)
    traces = [LrTrace(lr=lr) for lr in lrs]
    states: list[Tensors | None] = [None] * k
    alive = list(range(k))  # group member of each row of the stacked tensors
    gen = torch.Generator().manual_seed(seed)  # the same data order as every lr of the loop
    for epoch in range(1, epochs + 1):
        batches = list(torch.randperm(train.n, generator=gen).split(protocol.batch_size))
        totals = [0.0] * k
        count = 0
        for i, (x, y, _) in enumerate(train.batches(batches)):
            if config.augment:
                x = _flip(x, gen)
            if not alive:
                continue  # keep drawing flips as the loop would; nothing left to train
            with _autocast_under_vmap(train.device):
                losses = losses_of(params, bufs, prefix(x.contiguous()), y)
            values = losses.detach().float().tolist()
            finite = [math.isfinite(v) for v in values]
            plist = list(params.values())
            total = losses.sum() if all(finite) else losses[
                torch.tensor(finite, device=losses.device)].sum()
            grads = torch.autograd.grad(total, plist)
            if not all(finite):
                for r, (ok, v) in enumerate(zip(finite, values)):
                    if not ok:
                        traces[alive[r]].error = (f"non-finite loss ({v}) at lr={lrs[alive[r]]:g}, "
                                                  f"epoch {epoch}, batch {i}")
                keep = torch.tensor([r for r, ok in enumerate(finite) if ok])
                alive = [alive[r] for r in keep.tolist()]
                if not alive:
                    continue
                params = {n: p.detach()[keep.to(p.device)].requires_grad_()
                          for n, p in params.items()}
                bufs = {n: b[keep.to(b.device)] for n, b in bufs.items()}
                grads = tuple(gr[keep.to(gr.device)] for gr in grads)
                values = [values[r] for r in keep.tolist()]
                opt.keep(keep)
                plist = list(params.values())
            opt.step(plist, grads)
            for r, v in enumerate(values):
                totals[alive[r]] += v * len(y)
            count += len(y)
        if not alive:
            break
        for m in alive:
            traces[m].train_loss.append(totals[m] / count)
        preds, y, g = _predict_members(model, logits_of, params, bufs, val, prefix,
                                       protocol.eval_batch_size)
        for r, m in enumerate(alive):
            traces[m].val_metric.append(metric_value(preds[r], y, g, metric))
            if row_best(traces[m].val_metric) == epoch:
                states[m] = {n: t[r].detach().clone() for n, t in (*params.items(),
                                                                    *bufs.items())}
            if reporter is not None:
                reporter.epoch(lrs[m], epoch, epochs, traces[m].train_loss[-1],
                               traces[m].val_metric[-1])
    return traces, states, n_trainable


@torch.no_grad()
def _predict_members(
    model: nn.Module, logits_of: Callable[..., torch.Tensor], params: Tensors, bufs: Tensors,
    split: _Split, prefix: Callable[[torch.Tensor], torch.Tensor], bs: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(preds (K, N), labels (N,), groups (N,))`` of every member in eval mode (modes restored)."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    preds, ys, gs = [], [], []
    for x, y, g in split.in_order(bs):
        with _autocast_under_vmap(split.device):
            preds.append(logits_of(params, bufs, prefix(x.contiguous())).argmax(-1))
        ys.append(y)
        gs.append(g)
    for m, was in modes.items():
        m.train(was)
    return torch.cat(preds, 1), torch.cat(ys), torch.cat(gs)
