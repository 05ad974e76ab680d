"""Device-independent accounting of the training memory of the per-lr loop and the batched grid.

For one training step (forward + backward of the loss, as each path runs it) two byte counts,
deterministic on any device:

* ``saved``: the bytes of the tensors autograd saves for the backward pass, counted with
  :func:`torch.autograd.graph.saved_tensors_hooks`, each storage once (by its data pointer,
  ``untyped_storage().nbytes()``), except the storages of parameters and buffers (the model's,
  and the batched path's stacked copies), which each path holds for the whole run (copies a
  step makes of them, such as autocast's casts, count).
* ``peak``: the peak over the step of the bytes of storages created during it and still alive
  (a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every op's outputs; a storage
  counts from its first output until the last tensor on it is freed). Tensors alive before the
  step (parameters, inputs, Adam state) are not counted; kernels' scratch space (cuDNN
  workspaces) and allocator rounding are not visible here.

:func:`grid_step_memory` compares one step of the loop (one member) with one step of the
batched grid of ``K`` members, both from the same model and batch, on the paths the runs use
(:func:`realdata.feeding._forward` for the loop; :func:`realdata.grid_batch.member_losses` under
:class:`realdata.member_layout.MemberOps` for the batched grid). The batched path keeps its
promise when ``batched <= K * loop`` for both counts.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from realdata.feeding import _forward
from realdata.models.blocks import BlockMap
from realdata.surgery import configure_surgery

__all__ = ["grid_step_memory", "peak_live_bytes", "saved_bytes"]


def saved_bytes(step: Callable[[], Any], state: Sequence[torch.Tensor] = ()) -> int:
    """Bytes of the storages autograd saves for backward while ``step()`` runs (each once),
    except the storages of ``state`` (parameters and buffers, held for the whole run)."""
    seen: dict[int, int] = {}
    held = {t.untyped_storage().data_ptr() for t in state}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in held:
            seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


class _LiveStorages(TorchDispatchMode):
    """Bytes of the storages first produced under this mode and still referenced by a tensor;
    ``peak`` is their maximum over the mode's lifetime."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage pointer -> [bytes, tensors alive]
        self.now = self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in tree_leaves((args, kwargs))
                  if isinstance(a, torch.Tensor) and a.device.type != "meta"}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            s = t.untyped_storage()
            ptr = s.data_ptr()
            if ptr == 0:
                continue
            entry = self.live.get(ptr)
            if entry is None and ptr in inputs:  # a view of (or in place on) an older tensor
                continue
            if entry is None:
                entry = self.live[ptr] = [s.nbytes(), 0]
                self.now += s.nbytes()
                self.peak = max(self.peak, self.now)
            entry[1] += 1
            weakref.finalize(t, self._release, ptr)
        return out


def peak_live_bytes(step: Callable[[], Any]) -> int:
    """Peak bytes of storages created by ``step()`` and alive at once (see the module
    docstring)."""
    mode = _LiveStorages()
    with mode:
        step()
    return mode.peak


def grid_step_memory(model: nn.Module, block_map: BlockMap, tuned: Sequence[str], bn: str,
                     x: torch.Tensor, y: torch.Tensor, members: int, shared: bool = True,
                     bf16: bool = False) -> dict[str, Any]:
    """Saved and peak-live bytes of one training step: the loop (one member) vs the batched
    grid of ``members`` members (parameters stacked from the model's state), on ``x``'s device.

    The forward starts at the first tuned block of a :class:`~realdata.models.base.Backbone`
    (the frozen stages before it run once, without gradients, as with the prefix cache or the
    batched grid's shared prefix); each step's input batch is copied inside it and held through
    the step, as the runs hold it, so that both counts include it. ``shared``: every member
    trains on ``x (B, ...)``, ``y (B,)`` (one target); else each member on its own copy of the
    batch, laid out as the batched grid feeds several targets (``(B, K, ...)``). ``bf16``: both
    steps under bf16 autocast (as the runs on a GPU). On CUDA also ``*_cuda_peak_bytes``:
    ``torch.cuda.max_memory_allocated`` during the step above the memory allocated before it
    (cuDNN workspaces and allocator rounding included).

    Returns:
        ``{"members", "loop_saved_bytes", "batched_saved_bytes", "saved_ratio",
        "loop_peak_bytes", "batched_peak_bytes", "peak_ratio", ...}``; each ratio is
        ``batched / (members * loop)`` (``<= 1``: the batched step needs no more than the
        loop's step times the members).
    """
    from realdata.grid_batch import _member_ops, _prefix_stop, member_losses, stacked_state

    device = x.device
    names = configure_surgery(model, block_map, tuned, bn)  # type: ignore[arg-type]
    stop = _prefix_stop(model, block_map, tuned, 0)
    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.no_grad(), cast:
        h = model(x, start=0, stop=stop) if stop else x
    modes = {m: m.training for m in model.modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())
    wanted = [params[n] for n in names]

    def loop() -> None:
        xl = h.clone()  # the input batch, held through the step (as the runs hold it)
        with cast:
            loss = F.cross_entropy(_forward(model, xl, stop), y)
        torch.autograd.grad(loss, wanted)

    kw = {"start": stop} if stop else {}
    flat, bufs, fixed = stacked_state(model, names, members)
    bufs = {**fixed, **bufs}
    losses_of = member_losses(model, kw, shared)
    yb = y if shared else y.expand(members, -1).contiguous()

    def batched() -> None:
        xb = h.clone() if shared else h.unsqueeze(1).expand(h.shape[0], members,
                                                             *h.shape[1:]).contiguous()
        with cast, _member_ops(device):
            losses = losses_of(flat.tensors(), bufs, xb, yb)
        torch.autograd.grad(losses.sum(), [flat.data])

    held = [*model.parameters(), *model.buffers(), flat.data, *bufs.values()]
    out: dict[str, Any] = {"members": members, "bf16": bf16}
    keys = ["saved", "peak", "cuda_peak"] if device.type == "cuda" else ["saved", "peak"]
    for key, step in (("loop", loop), ("batched", batched)):
        out[f"{key}_saved_bytes"] = saved_bytes(step, held)
        out[f"{key}_peak_bytes"] = peak_live_bytes(step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step()
            torch.cuda.synchronize(device)
            out[f"{key}_cuda_peak_bytes"] = torch.cuda.max_memory_allocated(device) - before
    model.load_state_dict(state)  # running statistics the steps updated
    for m, was in modes.items():
        m.train(was)
    for key in keys:
        out[f"{key}_ratio"] = out[f"batched_{key}_bytes"] / (members * out[f"loop_{key}_bytes"])
    return out
