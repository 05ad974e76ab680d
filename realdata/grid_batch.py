"""The whole learning-rate grid of one tuned option, for one or several targets, trained as one
batched model.

Every lr of the protocol starts from the same pretrained weights and sees the same data order
(the order is drawn from the run's seed, not from the lr), so the grid can run as ``K`` members
of one model: each tuned tensor is stacked along a new leading axis (``(K, *shape)``), the frozen
tensors are shared, and :func:`torch.func.functional_call` under :func:`torch.func.vmap` runs every
member (the convolutions of stacked weights become grouped convolutions, the frozen layers one big
batch). Several targets that share the source model (the seeds of one target, or the corruptions
of CIFAR-10-C) add members: a member is a (target, lr) pair and is fed its own target's batch,
drawn from that target's seed (batches of equal shapes: targets with the same training-set size
and epochs train together). Frozen stages before the first tuned block run once per target and
batch for all of its members (or come from the prefix cache of :mod:`realdata.train`).

Each member follows the per-lr loop exactly: the same batches and flips, :class:`StackedAdam`
(``torch.optim.Adam``'s update with L2 weight decay, per member lr), BatchNorm of tuned blocks
in train mode with per-member running statistics, a member whose loss becomes non-finite stops
with the loop's error message, validation after every epoch, and a snapshot of each member at
its :func:`realdata.train.row_best` epoch. Selection happens in :func:`realdata.train.finetune`
with :func:`realdata.train.select_best`, the same function as for the loop. A training step does
not wait for the device (losses stay on it; a diverged member is masked out of the update and
dropped at the epoch's end; batches come from training splits staged on the device).

Memory: a group of ``k`` members needs about ``k`` times the loop's activations and tuned
state (the frozen tensors are not copied; :func:`member_bytes` estimates one member). Every
activation keeps the member axis physically after the examples and the ops that would move it
(convolution, batch norm, pooling, concatenation, the loss) follow
:class:`realdata.member_layout.MemberOps`, so one step saves no more for backward than ``k``
steps of the loop (:mod:`realdata.grid_memory` counts it). The group
size is the whole grid, capped by ``FinetuneConfig.grid_group`` and by
``FinetuneConfig.grid_memory`` (on CUDA by default the device's free memory) over
:func:`member_bytes`; when the device still runs out of memory, that group restarts with half
as many members. Group sizes, the estimate, the budget and fallbacks are recorded in
``GridRun.info`` (the run record's ``grid``). Auto-RGN and Auto-SNR (per-member lr multipliers
and freezing) and a grid of one member use the per-lr loop, also recorded.
"""

from __future__ import annotations

import contextlib
import gc
import math
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from realdata.member_layout import MemberOps
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

__all__ = ["StackedAdam", "is_out_of_memory", "member_bytes", "member_layout", "member_losses",
           "stacked_state", "train_grids", "unsupported_reason"]

Tensors = dict[str, torch.Tensor]


class StackedAdam:
    """``torch.optim.Adam`` (amsgrad off, L2 weight decay added to the gradient) on stacked
    tensors whose leading axis indexes members, member ``k`` with learning rate ``lrs[k]``; with
    ``flat``, on the one tensor ``flat.data`` laid out parameter by parameter (see
    :class:`_Flat`).

    The update per member is the one of ``torch.optim.Adam``'s single-tensor path, operation by
    operation; every member takes a step at every call (the step count is shared).
    """

    def __init__(self, params: Sequence[torch.Tensor], lrs: Sequence[float], weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 flat: _Flat | None = None) -> None:
        if flat is None and any(p.shape[0] != len(lrs) for p in params):
            raise ValueError(f"every stacked tensor needs a leading axis of {len(lrs)} members")
        self.flat = flat  # params laid out as flat.data (member of each element from it)
        self.lrs = list(lrs)
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps = 0
        self._lr_tensor: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
             mask: torch.Tensor | None = None) -> None:
        """Update ``params`` in place from ``grads`` (same shapes, ``(K, *shape)``); with
        ``mask`` (``(K,)`` bool, on the device) only the members where it is true change
        (parameters and moments; the others' gradients may be non-finite)."""
        self.steps += 1
        b1, b2 = self.betas
        bc1 = 1 - b1 ** self.steps
        bc2_sqrt = (1 - b2 ** self.steps) ** 0.5
        for p, g, m, v in zip(params, grads, self.exp_avg, self.exp_avg_sq):
            shape = (-1, *[1] * (p.dim() - 1))
            keep = None if mask is None else self._per_element(mask, shape)
            if keep is not None:
                g = torch.where(keep, g, 0.0)
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            if keep is None:
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
            else:
                m.copy_(torch.where(keep, m.lerp(g, 1 - b1), m))
                v.copy_(torch.where(keep, v.mul(b2).addcmul_(g, g, value=1 - b2), v))
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            # -lr / bc1 in float64 on the device, as Python computes it (no host copy per step)
            size = self._per_element((self._lrs(p.device).neg() / bc1).to(p.dtype), shape)
            step = (m / denom) * size
            p.add_(step if keep is None else torch.where(keep, step, 0.0))

    def _per_element(self, per_member: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """A ``(K,)`` vector broadcastable against a parameter."""
        return per_member.view(shape) if self.flat is None else self.flat.spread(per_member)

    def _lrs(self, device: torch.device) -> torch.Tensor:
        if self._lr_tensor is None or self._lr_tensor.device != device:
            self._lr_tensor = torch.tensor(self.lrs, dtype=torch.float64, device=device)
        return self._lr_tensor

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only the members ``idx`` (an index tensor into the leading axis)."""
        self.lrs = [self.lrs[i] for i in idx.tolist()]
        self._lr_tensor = None
        pick = ((lambda t: t[idx.to(t.device)]) if self.flat is None
                else (lambda t: self.flat.select(t, idx.to(t.device))))  # type: ignore[union-attr]
        self.exp_avg = [pick(m) for m in self.exp_avg]
        self.exp_avg_sq = [pick(v) for v in self.exp_avg_sq]


#: Whether the batched grid keeps the member axis after the examples
#: (:class:`realdata.member_layout.MemberOps`); ``False`` leaves the layout to ``vmap``'s
#: built-in rules, which copy activations (``python -m realdata.bench grid --builtin-layout``
#: measures the difference).
MEMBER_LAYOUT = True


@contextlib.contextmanager
def member_layout(enabled: bool) -> Iterator[None]:
    """Set :data:`MEMBER_LAYOUT` inside the block and restore it afterwards."""
    global MEMBER_LAYOUT
    saved, MEMBER_LAYOUT = MEMBER_LAYOUT, enabled
    try:
        yield
    finally:
        MEMBER_LAYOUT = saved


def _member_ops(device: torch.device) -> MemberOps:
    """:class:`realdata.member_layout.MemberOps` for a ``vmap`` over members, with autocast's
    casts while autocast is on for ``device``."""
    dtype = (torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type)
             else None)
    return MemberOps(dtype, layout=MEMBER_LAYOUT)


def unsupported_reason(config: FinetuneConfig, members: int) -> str | None:
    """Why this run uses the per-lr loop instead (``None``: the batched grid applies);
    ``members`` counts (target, lr) pairs."""
    if config.method != "fixed":
        return f"method {config.method} adapts each lr separately (per-lr loop)"
    if members < 2:
        return "a grid of one lr (per-lr loop)"
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the device (CUDA) or host allocator running out of memory."""
    if isinstance(exc, MemoryError | torch.cuda.OutOfMemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in msg
                                              or "can't allocate memory" in msg)


def member_bytes(model: nn.Module, block_map: BlockMap, tuned: Sequence[str], split: _Split,
                 start: int, batch_size: int, bn: str) -> int:
    """Estimated device bytes of one member of a batched group: the tensors one training step
    saves for its backward pass (one plain forward on ``batch_size`` training inputs, counted
    with :func:`torch.autograd.graph.saved_tensors_hooks`; parameters saved by frozen layers
    included) plus five copies of the tuned tensors (parameters, gradients, Adam's two moments,
    the best snapshot). The per-lr loop needs the same per lr, so a group of ``k`` members is
    estimated at ``k`` times the loop's training memory.
    """
    names = configure_surgery(model, block_map, tuned, bn)
    params = dict(model.named_parameters())
    stop = _prefix_stop(model, block_map, tuned, start)
    x, y, _ = next(split.batches([torch.arange(min(batch_size, split.n))]))
    scale = batch_size / len(y)
    with torch.no_grad():
        h = model(x, start=start, stop=stop) if stop > start else x
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            seen[(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())] = \
                t.untyped_storage().nbytes()
        return t

    modes = {m: m.training for m in model.modules()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(h, start=stop) if stop else model(h)
        F.cross_entropy(out.float(), y).backward()
    for m, was in modes.items():
        m.train(was)
    for p in params.values():
        p.grad = None
    state = sum(params[n].numel() * params[n].element_size() for n in names)
    return int(sum(seen.values()) * scale) + 5 * state


def _memory_budget(config: FinetuneConfig, device: torch.device) -> int | None:
    """Bytes a group may use (``None``: no limit)."""
    if config.grid_memory:
        return config.grid_memory
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.9 * free)
    return None


Members = list[tuple[int, int, float]]
"""Members of a batched group: ``(target index, lr index, lr)``."""


def train_grids(
    model: nn.Module, block_map: BlockMap, tuned: Sequence[str], lrs: Sequence[float],
    split_sets: Sequence[Sequence[_Split]], protocol: Protocol, config: FinetuneConfig,
    start: int, seeds: Sequence[int], metric: MetricName, init_state: Tensors, *,
    epochs: Sequence[int], reporter: _Reporter | None = None,
) -> list[GridRun]:
    """Train every (target, lr) pair from ``init_state`` as batched groups; per target the same
    contract as :func:`realdata.train.lr_loop` on its splits, seed and epochs (the model ends at
    ``init_state``). Targets train together when they have the same epochs and training-set
    size (their batches then have equal shapes); ``reporter`` reports every (lr, epoch).

    Args:
        split_sets: per target, its ``(train, val, test)`` splits.
        start: stage whose input the splits hold (``> 0`` when the prefix is cached).
        seeds: per target, the seed of its data order (and flips).
        epochs: per target, the epochs each lr runs.
    """
    t = len(split_sets)
    reason = unsupported_reason(config, t * len(lrs))
    if reason is not None:
        runs = [lr_loop(model, block_map, tuned, lrs, split_sets[i], protocol, config, start,
                        seeds[i], metric, init_state, epochs=epochs[i], reporter=reporter)
                for i in range(t)]
        for run in runs:
            run.info["reason"] = reason
        return runs
    # vmap cannot query channels_last strides inside batch norm ("NYI: querying is_contiguous
    # inside of vmap"), so the batched path runs in the default memory format.
    channels_last = any(p.dim() == 4 and not p.is_contiguous()
                        and p.is_contiguous(memory_format=torch.channels_last)
                        for p in model.parameters())
    if channels_last:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    device = split_sets[0][0].device
    model.load_state_dict(init_state)
    budget = _memory_budget(config, device)
    per_member = None if budget is None else member_bytes(
        model, block_map, tuned, split_sets[0][0], start, protocol.batch_size, config.bn)
    traces: list[list[LrTrace | None]] = [[None] * len(lrs) for _ in range(t)]
    states: list[list[Tensors | None]] = [[None] * len(lrs) for _ in range(t)]
    groups: list[int] = []
    fallbacks: list[dict[str, object]] = []
    n_trainable = 0
    # targets with equal shapes train together; members ordered target by target, lr by lr
    kinds: dict[tuple[int, int], list[int]] = {}
    for i, splits in enumerate(split_sets):
        kinds.setdefault((splits[0].n, epochs[i]), []).append(i)
    for (_, ep), which in kinds.items():
        members: Members = [(i, j, lr) for i in which for j, lr in enumerate(lrs)]
        size = min(config.grid_group or len(members), len(members))
        if budget is not None and per_member is not None:
            size = max(1, min(size, budget // max(per_member, 1)))
        done = 0
        while done < len(members):
            group = members[done:done + size]
            model.load_state_dict(init_state)
            try:
                g_traces, g_states, n_trainable = _train_group(
                    model, block_map, tuned, group, split_sets, seeds, protocol, config, start,
                    metric, ep, reporter)
            except (RuntimeError, MemoryError) as exc:
                if not is_out_of_memory(exc) or len(group) == 1:
                    raise
                fallbacks.append({"members": len(group),
                                  "error": str(exc).splitlines()[0][:200]})
                size = len(group) // 2
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            for (i, j, _), tr, st in zip(group, g_traces, g_states):
                traces[i][j], states[i][j] = tr, st
            groups.append(len(group))
            done += len(group)
            if reporter is not None:  # the epochs a diverged member did not run
                reporter.skip(sum(ep - len(tr.val_metric) for tr in g_traces))
    model.load_state_dict(init_state)
    info: dict[str, object] = {"batched": True, "groups": groups, "fallbacks": fallbacks,
                               "targets": t, "member_bytes": per_member, "memory_budget": budget}
    if channels_last:  # the model leaves in the memory format it came in
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        info["channels_last_dropped"] = True
    return [GridRun([tr for tr in traces[i] if tr is not None], states[i], n_trainable,
                    dict(info)) for i in range(t)]


def _prefix_stop(model: nn.Module, block_map: BlockMap, tuned: Sequence[str], start: int) -> int:
    """First stage that must run per member (the frozen stages before it run once per batch)."""
    blocks = list(block_map)
    if isinstance(model, Backbone) and [s for s, _ in model.stages()] == blocks:
        return max(start, blocks.index(tuned[0]))
    return start


class _Flat:
    """The tuned parameters of ``K`` members as one flat tensor (one optimizer update per step),
    parameter by parameter: each parameter's ``K`` copies are one contiguous ``(K, *shape)``
    block, so the stacked weight a grouped convolution needs, ``(K*O, C, kh, kw)``, is a view
    (a member-major ``(K, P)`` layout would copy every tuned weight once per step, and autograd
    would save the copy)."""

    def __init__(self, sd: Tensors, names: Sequence[str], k: int) -> None:
        self.names = list(names)
        self.shapes = [sd[n].shape for n in names]
        self.sizes = [sd[n].numel() for n in names]
        self.k = k
        self.data = torch.cat([sd[n].detach().reshape(1, -1).expand(k, -1).reshape(-1)
                               for n in names]).requires_grad_()

    def _blocks(self, flat: torch.Tensor, k: int) -> list[torch.Tensor]:
        return [b.view(k, -1) for b in flat.split([k * n for n in self.sizes])]

    def tensors(self, rows: torch.Tensor | None = None) -> Tensors:
        """Per parameter, the members' values ``(K, *shape)`` (views of :attr:`data`; with
        ``rows``, copies of those members)."""
        blocks = self._blocks(self.data, self.k)
        if rows is not None:
            blocks = [b[rows] for b in blocks]
        return {n: b.view(b.shape[0], *s) for n, b, s in zip(self.names, blocks, self.shapes)}

    def spread(self, per_member: torch.Tensor) -> torch.Tensor:
        """A ``(K,)`` vector as one value per element of :attr:`data`."""
        return torch.cat([per_member.view(-1, 1).expand(-1, n).reshape(-1)
                          for n in self.sizes])

    def select(self, t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The elements of the members ``rows`` of ``t`` (laid out as :attr:`data`)."""
        return torch.cat([b[rows].reshape(-1) for b in self._blocks(t, self.k)])

    def keep(self, rows: torch.Tensor) -> None:
        self.data = self.select(self.data.detach(), rows).requires_grad_()
        self.k = len(rows)


class _Feed:
    """Training batches of a group's targets: per step one batch of each target, stacked
    ``(targets, B, ...)``, in each target's own order (and flips) from its generator.

    When the targets' training splits fit in ``limit`` bytes together, they are staged on the
    device once and each epoch's orders and flips are drawn up front (the generator's draws in
    the loop's order: the permutation, then one flip draw per batch), so a step gathers its
    batch on the device without waiting for it; otherwise batches stream from the splits.
    """

    def __init__(self, splits: Sequence[_Split], gens: Sequence[torch.Generator],
                 batch_size: int, augment: bool, limit: int) -> None:
        self.splits, self.gens, self.bs, self.augment = list(splits), list(gens), batch_size, augment
        self.n = splits[0].n
        self.staged: tuple[torch.Tensor, torch.Tensor] | None = None
        x0, _, _ = next(splits[0].batches([torch.arange(1)]))
        if x0.numel() * x0.element_size() * self.n * len(splits) <= limit:
            xs, ys = [], []
            for sp in splits:
                parts = list(sp.in_order(batch_size))
                xs.append(torch.cat([x for x, _, _ in parts]))
                ys.append(torch.cat([y for _, y, _ in parts]))
            self.staged = torch.stack(xs), torch.stack(ys)

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of ``(x (targets, B, ...), y (targets, B))`` batches."""
        perms = [torch.randperm(self.n, generator=g) for g in self.gens]
        if self.staged is None:
            feeds = [sp.batches(list(p.split(self.bs))) for sp, p in zip(self.splits, perms)]
            for batch in zip(*feeds):
                xs = [_flip(x, g) if self.augment else x for (x, _, _), g in zip(batch, self.gens)]
                yield torch.stack(xs), torch.stack([y for _, y, _ in batch])
            return
        x_all, y_all = self.staged
        flips = None
        if self.augment:
            flips = torch.stack([torch.cat([torch.rand(len(b), generator=g) < 0.5
                                            for b in p.split(self.bs)])
                                 for p, g in zip(perms, self.gens)]).to(x_all.device)
        order = torch.stack(perms).to(x_all.device)
        which = torch.arange(len(perms), device=x_all.device)[:, None]
        for j in range(0, self.n, self.bs):
            cols = order[:, j:j + self.bs]
            x = x_all[which, cols]
            if flips is not None:
                mask = flips[:, j:j + self.bs].view(*cols.shape, *[1] * (x.dim() - 2))
                x = torch.where(mask, x.flip(-1), x)
            yield x, y_all[which, cols]


def stacked_state(model: nn.Module, names: Sequence[str], k: int
                  ) -> tuple[_Flat, Tensors, Tensors]:
    """The state ``K = k`` members train from the model's current state: the tuned parameters
    ``names`` as one :class:`_Flat`; the buffers a training step changes (running statistics
    of batch norm in train mode), each stacked ``(K, *shape)``; and the other floating-point
    buffers of the modules that own tuned parameters (running statistics of tuned batch norm
    in eval mode), stacked once here so that no step copies them per member."""
    sd = model.state_dict()
    flat = _Flat(sd, names, k)
    changing = [b for b in _changing_state_keys(model, names) if b not in names]
    owners = {n.rpartition(".")[0] for n in names}
    fixed = [b for b, v in model.named_buffers() if b.rpartition(".")[0] in owners
             and v.is_floating_point() and b not in changing]

    def stack(b: str) -> torch.Tensor:
        return sd[b].detach().unsqueeze(0).expand(k, *sd[b].shape).clone()

    return flat, {b: stack(b) for b in changing}, {b: stack(b) for b in fixed}


def member_losses(model: nn.Module, kw: dict[str, int], shared: bool
                  ) -> Callable[[Tensors, Tensors, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Training losses of all members, ``(K,)``, from ``(params, buffers, x, y)`` (stacked along
    a leading member axis, as :func:`stacked_state` makes them). ``shared``: every member sees
    the same batch ``x (B, ...)``, ``y (B,)``; else ``x`` is ``(B, K, ...)`` (the member axis
    after the examples, the layout :class:`MemberOps` keeps; call under it) and ``y (K, B)``.
    """
    def loss_one(p: Tensors, b: Tensors, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, b), (x,), kw), y)

    return vmap(loss_one, in_dims=(0, 0, None, None) if shared else (0, 0, 1, 0))


def _train_group(
    model: nn.Module, block_map: BlockMap, tuned: Sequence[str], members: Members,
    split_sets: Sequence[Sequence[_Split]], seeds: Sequence[int], protocol: Protocol,
    config: FinetuneConfig, start: int, metric: MetricName, epochs: int,
    reporter: _Reporter | None = None,
) -> tuple[list[LrTrace], list[Tensors | None], int]:
    """One batched group of ``(target, lr)`` members, from the model's current (initial) state.

    Each step draws one batch per target present (from the target's own generator, as the loop
    does per lr), runs the frozen prefix once per target, and feeds every member its target's
    batch (one batch for all members when the group holds one target). The step itself does not
    synchronize with the device: a member whose loss becomes non-finite is masked out of the
    update on the device and dropped at the epoch's end, with the loop's error message.
    """
    targets = sorted({i for i, _, _ in members})
    lrs = [lr for _, _, lr in members]
    device = split_sets[targets[0]][0].device
    names = configure_surgery(model, block_map, tuned, config.bn)
    k = len(members)
    flat, bufs, fixed = stacked_state(model, names, k)
    n_trainable = sum(flat.sizes)
    stop = _prefix_stop(model, block_map, tuned, start)
    kw = {"start": stop} if stop else {}
    shared = len(targets) == 1
    losses_of = member_losses(model, kw, shared)

    def logits_one(p: Tensors, b: Tensors, x: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (p, b), (x,), kw)

    logits_of = vmap(logits_one, in_dims=(0, 0, None))

    def prefix(x: torch.Tensor) -> torch.Tensor:
        if stop == start:
            return x
        with torch.no_grad():
            return model(x, start=start, stop=stop)

    opt = StackedAdam([flat.data], lrs, protocol.weight_decay, flat=flat)
    traces = [LrTrace(lr=lr) for lr in lrs]
    states: list[Tensors | None] = [None] * k
    alive = list(range(k))  # group member of each row of the stacked tensors
    row_target = torch.tensor([targets.index(i) for i, _, _ in members], device=device)
    gens = [torch.Generator().manual_seed(seeds[i]) for i in targets]  # each target's order
    feed = _Feed([split_sets[i][0] for i in targets], gens, protocol.batch_size, config.augment,
                 config.cache_limit_bytes)
    for epoch in range(1, epochs + 1):
        history: list[torch.Tensor] = []  # per batch: (members alive,) losses
        sizes: list[int] = []
        ok = torch.ones(len(alive), dtype=torch.bool, device=device)
        rows = row_target[torch.tensor(alive, device=device)]
        for xs, y in feed.epoch():
            if stop > start:
                xs = torch.stack([prefix(x) for x in xs.unbind(0)])
            # per-member batches laid out (B, K, ...): the member axis after the examples
            x, y = (xs[0], y[0]) if shared else (xs[rows].transpose(0, 1), y[rows])
            with _member_ops(device):
                losses = losses_of(flat.tensors(), {**fixed, **bufs}, x.contiguous(), y)
            ok = ok & torch.isfinite(losses.detach())
            grads = torch.autograd.grad(torch.where(ok, losses, 0.0).sum(), [flat.data])
            opt.step([flat.data], grads, mask=ok)
            history.append(losses.detach().float())
            sizes.append(y.shape[-1])
        if not alive:
            break
        table = torch.stack(history).cpu().tolist()  # (batches, members alive)
        keep = []
        for r, m in enumerate(alive):
            column = [row[r] for row in table]
            bad = next((i for i, v in enumerate(column) if not math.isfinite(v)), None)
            if bad is not None:
                traces[m].error = (f"non-finite loss ({column[bad]}) at lr={lrs[m]:g}, "
                                   f"epoch {epoch}, batch {bad}")
                continue
            total = 0.0
            for v, b in zip(column, sizes):
                total += v * b
            traces[m].train_loss.append(total / sum(sizes))
            keep.append(r)
        if len(keep) < len(alive):
            idx = torch.tensor(keep, dtype=torch.long)
            alive = [alive[r] for r in keep]
            if not alive:
                break
            opt.keep(idx)  # before flat.keep: it reads the flat layout of the old members
            flat.keep(idx.to(device))
            bufs = {b: v[idx.to(device)] for b, v in bufs.items()}
            fixed = {b: v[idx.to(device)] for b, v in fixed.items()}
        _evaluate_members(model, logits_of, flat, {**fixed, **bufs},
                          [members[m][0] for m in alive],
                          split_sets, prefix, protocol.eval_batch_size, metric,
                          [traces[m] for m in alive])
        current = flat.tensors()
        for r, m in enumerate(alive):
            if row_best(traces[m].val_metric) == epoch:
                states[m] = {n: t[r].detach().clone() for n, t in (*current.items(),
                                                                    *bufs.items())}
            if reporter is not None:
                reporter.epoch(lrs[m], epoch, epochs, traces[m].train_loss[-1],
                               traces[m].val_metric[-1])
    return traces, states, n_trainable


@torch.no_grad()
def _evaluate_members(
    model: nn.Module, logits_of: Callable[..., torch.Tensor], flat: _Flat, bufs: Tensors,
    row_targets: Sequence[int], split_sets: Sequence[Sequence[_Split]],
    prefix: Callable[[torch.Tensor], torch.Tensor], bs: int, metric: MetricName,
    traces: Sequence[LrTrace],
) -> None:
    """Append each member's validation metric (eval mode; modes restored): the members of one
    target together, on that target's validation split."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    device = flat.data.device
    for i in sorted(set(row_targets)):
        rows = [r for r, t in enumerate(row_targets) if t == i]
        idx = None if len(rows) == len(row_targets) else torch.tensor(rows, device=device)
        params = flat.tensors(idx)
        b = bufs if idx is None else {n: v[idx] for n, v in bufs.items()}
        preds, ys, gs = [], [], []
        for x, y, g in split_sets[i][1].in_order(bs):
            with _member_ops(device):
                preds.append(logits_of(params, b, prefix(x.contiguous())).argmax(-1))
            ys.append(y)
            gs.append(g)
        pred, y, g = torch.cat(preds, 1), torch.cat(ys), torch.cat(gs)
        for j, r in enumerate(rows):
            traces[r].val_metric.append(metric_value(pred[j], y, g, metric))
    for m, was in modes.items():
        m.train(was)
