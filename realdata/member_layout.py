"""Convolution, batch norm and average pooling of the batched lr grid without activation copies.

Under :func:`torch.func.vmap` the members of a batched group (``K`` of them) are an extra axis of
every activation. The built-in batching rules move that axis where each op wants it: a
convolution with stacked weights puts it next to the channels (``(B, K*C, H, W)``, a grouped
convolution), a convolution with a frozen (unstacked) weight and average pooling put it in front
of the examples (``(K*B, C, H, W)``), and batch norm with stacked weights normalizes without the
affine step and multiplies by the weight afterwards. Each move of the member axis across the
example axis is a copy, and autograd saves the copy (the convolution or pooling saves its input)
while the per-lr loop saves the very tensor the preceding ReLU already saved; the separate
affine step saves the normalized activation, which the loop's fused batch norm does not. One
training step of block 1 or ``all`` of a ResNet-26 thus saved 1.6x the loop's bytes times ``K``.

:class:`MemberOps` (a :class:`~torch.overrides.TorchFunctionMode` active around the ``vmap``
call) replaces those ops by rules that keep every activation laid out as ``(B, K, C, H, W)``
(member axis physically after the examples):

* convolution with stacked weights: the grouped convolution of the built-in rule, on the
  ``(B, K*C, H, W)`` view;
* convolution with a frozen weight, average pooling: one call on the ``(B*K, C, H, W)`` view
  (or ``(K*B, ...)`` when the member axis is physically in front), output ``(B, K, ...)``;
* batch norm: one fused ``batch_norm`` on the ``(B, K*C, H, W)`` view with the ``K`` members'
  weights, biases and running statistics flattened to ``K*C`` channels (the loop's kernel per
  member; running statistics update in place in the stacked buffers); a frozen batch norm
  (eval mode, nothing stacked) on the ``(B*K, C, H, W)`` view; one shared input normalized
  once, each member's affine step broadcast over it;
* concatenation: along the same axes with the member axis after the examples;
* mean cross-entropy against class labels: one call over all members' examples (the built-in
  rule saves extra index and mask tensors per member).

With autocast on, the mode also applies autocast's casts by hand (``vmap``'s rules run before
autocast and would leave everything in fp32): convolutions and ``linear`` in the autocast dtype,
``cross_entropy`` in fp32; batch norm gets the low-precision input with fp32 parameters, as in
eager autocast (the kernel computes in fp32 and returns the input's dtype). With the built-in
rules (``layout=False``) batch norm runs on the input upcast to fp32, its output cast back
(``vmap``'s rule would otherwise multiply a low-precision activation by fp32 weights), which
saves an fp32 copy of every normalized activation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["MemberOps"]


def _front(t: torch.Tensor | None, dim: int | None, k: int) -> torch.Tensor | None:
    """``t`` with the member axis in front, ``(K, *shape)`` (unstacked tensors expanded)."""
    if t is None:
        return None
    if dim is None:
        return t.unsqueeze(0).expand(k, *t.shape)
    return t.movedim(dim, 0)


def _merge(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, bool]:
    """Merge the member axis ``dim`` of ``x`` with its first (example) axis into one batch axis,
    in the order that is a view when the tensor is dense: ``(B*K, ...)`` when the member axis
    is physically after the examples, else ``(K*B, ...)``. Returns ``(merged, members_first)``.
    """
    xb = x.movedim(dim, 1)  # (B, K, ...)
    if xb.stride(0) >= xb.stride(1):
        return xb.flatten(0, 1), False
    return xb.transpose(0, 1).flatten(0, 1), True


def _split(out: torch.Tensor, k: int, members_first: bool) -> tuple[torch.Tensor, int]:
    """Undo :func:`_merge` on an op's output: ``(tensor, member dim)``."""
    if members_first:
        return out.unflatten(0, (k, -1)), 0
    return out.unflatten(0, (-1, k)), 1


def _channels(x: torch.Tensor, dim: int | None, k: int) -> torch.Tensor:
    """``x`` as ``(B, K*C, ...)`` (a view when the member axis is physically after the examples;
    an unstacked input is repeated per member)."""
    xb = x.unsqueeze(1).expand(x.shape[0], k, *x.shape[1:]) if dim is None else x.movedim(dim, 1)
    return xb.flatten(1, 2)


class _Recompute(torch.autograd.Function):
    """Base of the ops below: outside ``vmap`` (no input stacked at this level) the plain op,
    differentiated by recomputing it; under ``vmap`` each subclass's ``vmap`` rule."""

    @staticmethod
    def op(*args: Any) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def forward(cls, *args: Any) -> torch.Tensor:  # type: ignore[override]
        return cls.op(*args)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.tensors = [i for i, a in enumerate(inputs) if isinstance(a, torch.Tensor)]
        ctx.save_for_backward(*[inputs[i] for i in ctx.tensors])
        ctx.args = [None if isinstance(a, torch.Tensor) else a for a in inputs]

    @classmethod
    def backward(cls, ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        args = list(ctx.args)
        saved = [t.detach().requires_grad_(t.requires_grad) for t in ctx.saved_tensors]
        for i, t in zip(ctx.tensors, saved):
            args[i] = t
        wants = [t for t in saved if t.requires_grad]
        with torch.enable_grad():
            grads = iter(torch.autograd.grad(cls.op(*args), wants, grad, allow_unused=True))
        out: list[torch.Tensor | None] = [None] * len(args)
        for i, t in zip(ctx.tensors, saved):
            out[i] = next(grads) if t.requires_grad else None
        return tuple(out)


class _Conv2d(_Recompute):
    op = staticmethod(F.conv2d)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], x: torch.Tensor, w: torch.Tensor,
             b: torch.Tensor | None, stride: Any, padding: Any, dilation: Any, groups: int
             ) -> tuple[torch.Tensor, int]:
        k = info.batch_size
        xd, wd, bd = in_dims[:3]
        if wd is None and bd is None:  # frozen weights: the members ride in the batch axis
            merged, first = _merge(x, xd)  # type: ignore[arg-type]
            return _split(F.conv2d(merged, w, b, stride, padding, dilation, groups), k, first)
        wk = _front(w, wd, k).flatten(0, 1)  # type: ignore[union-attr]
        bk = _front(b, bd, k)
        bk = None if bk is None else bk.flatten()
        if xd is None and groups == 1:  # one input for all members: K*O output channels
            out = F.conv2d(x, wk, bk, stride, padding, dilation, 1)
        else:
            out = F.conv2d(_channels(x, xd, k), wk, bk, stride, padding, dilation, groups * k)
        return out.unflatten(1, (k, -1)), 1


class _AvgPool2d(_Recompute):
    op = staticmethod(F.avg_pool2d)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], x: torch.Tensor, *rest: Any
             ) -> tuple[torch.Tensor, int]:
        merged, first = _merge(x, in_dims[0])  # type: ignore[arg-type]
        return _split(F.avg_pool2d(merged, *rest), info.batch_size, first)


class _BatchNorm(_Recompute):
    op = staticmethod(F.batch_norm)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], x: torch.Tensor,
             mean: torch.Tensor | None, var: torch.Tensor | None, w: torch.Tensor | None,
             b: torch.Tensor | None, training: bool, momentum: float, eps: float
             ) -> tuple[torch.Tensor, int]:
        k = info.batch_size
        xd, md, vd, wd, bd = in_dims[:5]
        if training and mean is not None and (md is None or vd is None):
            raise ValueError("batch norm in train mode needs per-member running statistics")
        if not training and md is None and vd is None and wd is None and bd is None:
            # frozen batch norm (eval mode, nothing stacked): the members ride in the batch axis
            merged, first = _merge(x, xd)  # type: ignore[arg-type]
            return _split(F.batch_norm(merged, mean, var, w, b, False, momentum, eps), k, first)
        stats = [_front(t, d, k) for t, d in ((mean, md), (var, vd))]
        affine = [_front(t, d, k) for t, d in ((w, wd), (b, bd))]
        if xd is None:  # one input for all members: normalize once, broadcast the affine step
            return _shared_batch_norm(x, stats, affine, training, momentum, eps), 1
        flat = [None if t is None else t.reshape(-1) for t in stats]
        out = F.batch_norm(_channels(x, xd, k), flat[0], flat[1],
                           *[None if t is None else t.flatten() for t in affine],
                           training, momentum, eps)
        if training:  # write the updated statistics back where reshape had to copy
            for src, dst in zip(flat, stats):
                if src is not None and dst is not None and src.data_ptr() != dst.data_ptr():
                    dst.copy_(src.view(dst.shape))
        return out.unflatten(1, (k, -1)), 1


def _shared_batch_norm(x: torch.Tensor, stats: list[torch.Tensor | None],
                       affine: list[torch.Tensor | None], training: bool, momentum: float,
                       eps: float) -> torch.Tensor:
    """Batch norm of one input ``x (B, C, ...)`` for ``K`` members' statistics and affine
    parameters (each ``(K, C)`` or ``None``), as ``(B, K, C, ...)`` without copying ``x``
    ``K`` times: in eval mode ``x * alpha + beta`` with the fused kernel's
    ``alpha = weight / sqrt(var + eps)``, ``beta = bias - mean * alpha``; in train mode the
    batch statistics (the same for every member) normalize ``x`` once, each member's running
    statistics move towards them as in ``batch_norm`` (unbiased variance)."""
    c = x.shape[1]
    k = next(t.shape[0] for t in (*stats, *affine) if t is not None)
    shape = (1, k, c, *[1] * (x.dim() - 2))  # (1, K, C, 1, 1) against x (B, 1, C, H, W)
    w, b = affine
    mean, var = stats
    if not training:
        assert mean is not None and var is not None
        invstd = torch.sqrt(var + eps).reciprocal()
        alpha = invstd if w is None else invstd * w
        beta = -mean * alpha if b is None else b - mean * alpha
        return torch.addcmul(beta.reshape(shape), x.unsqueeze(1),
                             alpha.reshape(shape)).to(x.dtype)
    out = F.batch_norm(x, None, None, None, None, True, momentum, eps).unsqueeze(1)
    if mean is not None and var is not None:
        with torch.no_grad():
            v, m = torch.var_mean(x, dim=[d for d in range(x.dim()) if d != 1])
            n = x.numel() // c
            mean.mul_(1 - momentum).add_(m, alpha=momentum)
            var.mul_(1 - momentum).add_(v * (n / (n - 1)), alpha=momentum)
    if w is not None:
        out = out * w.reshape(shape)
    if b is not None:
        out = out + b.reshape(shape)
    return out.to(x.dtype)


class _Cat(_Recompute):
    @staticmethod
    def op(dim: int, *tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], dim: int, *tensors: torch.Tensor
             ) -> tuple[torch.Tensor, int]:
        k = info.batch_size
        laid = [t.unsqueeze(1).expand(t.shape[0], k, *t.shape[1:]) if d is None
                else t.movedim(d, 1) for t, d in zip(tensors, in_dims[1:])]
        return torch.cat(laid, dim + 1 if dim > 0 else dim), 1


class _CrossEntropy(_Recompute):
    """Mean cross-entropy of ``(B, classes)`` logits against ``(B,)`` class labels (every label
    a class index: the mean is over all ``B`` examples, so the ignored index -100, which the
    package's data never holds, would count in the denominator)."""

    op = staticmethod(F.cross_entropy)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], logits: torch.Tensor,
             target: torch.Tensor) -> tuple[torch.Tensor, int]:
        k = info.batch_size
        ld, td = in_dims
        lk = logits.unsqueeze(0).expand(k, *logits.shape) if ld is None else logits.movedim(ld, 0)
        tk = target.unsqueeze(0).expand(k, *target.shape) if td is None else target.movedim(td, 0)
        merged, first = _merge(lk, 0)  # (K, B, classes) -> (N, classes), a view when dense
        labels = (tk if first else tk.transpose(0, 1)).reshape(-1)
        losses, _ = _split(F.cross_entropy(merged, labels, reduction="none"), k, first)
        return losses.mean(1 if first else 0), 0


_LOW = (F.conv1d, F.conv2d, F.conv3d, F.linear)


class MemberOps(TorchFunctionMode):
    """Enter around a ``vmap`` over members: convolutions, batch norm, average pooling and
    concatenation keep the member axis physically after the examples (no activation copies;
    see the module docstring); with ``dtype`` (autocast's low-precision dtype, ``None`` when
    autocast is off) autocast's casts are applied by hand. ``layout=False`` leaves every op to
    ``vmap``'s built-in rules (only the casts; for measuring what the layout saves)."""

    def __init__(self, dtype: torch.dtype | None = None, layout: bool = True) -> None:
        super().__init__()
        self.dtype, self.layout = dtype, layout

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        kwargs = kwargs or {}
        if self.dtype is not None:
            if func in _LOW:
                args = tuple(a.to(self.dtype) if isinstance(a, torch.Tensor)
                             and a.is_floating_point() else a for a in args)
            elif func is F.cross_entropy:
                args = (args[0].float(), *args[1:])
            elif (func is F.batch_norm and args[0].dtype != torch.float32
                  and not self.layout):  # vmap's rule multiplies by the weight separately
                return func(args[0].float(), *args[1:], **kwargs).to(args[0].dtype)
        if not self.layout:
            return func(*args, **kwargs)
        if func is F.conv2d:
            return _Conv2d.apply(*_bind(_CONV, args, kwargs))
        if func is F.batch_norm:
            return _BatchNorm.apply(*_bind(_BN, args, kwargs))
        if func is F.avg_pool2d:
            return _AvgPool2d.apply(*_bind(_POOL, args, kwargs))
        if (func is F.cross_entropy and len(args) == 2 and args[1].dtype == torch.long
                and all(kwargs.get(n, d) == d for n, d in _CE_DEFAULTS.items())):
            return _CrossEntropy.apply(*args)
        if func is torch.cat and not kwargs.get("out"):
            tensors, dim = _bind((("tensors", None), ("dim", 0)), args, kwargs)
            if tensors and all(t.dim() > 0 for t in tensors):
                return _Cat.apply(dim, *tensors)
        return func(*args, **kwargs)


#: Keyword arguments of ``cross_entropy`` under which :class:`_CrossEntropy` applies.
_CE_DEFAULTS = {"weight": None, "size_average": None, "ignore_index": -100, "reduce": None,
                "reduction": "mean", "label_smoothing": 0.0}

#: Parameters (name, default) of the intercepted functions, in order.
_CONV = (("input", None), ("weight", None), ("bias", None), ("stride", 1), ("padding", 0),
         ("dilation", 1), ("groups", 1))
_BN = (("input", None), ("running_mean", None), ("running_var", None), ("weight", None),
       ("bias", None), ("training", False), ("momentum", 0.1), ("eps", 1e-5))
_POOL = (("input", None), ("kernel_size", None), ("stride", None), ("padding", 0),
         ("ceil_mode", False), ("count_include_pad", True), ("divisor_override", None))


def _bind(names: tuple[tuple[str, Any], ...], args: tuple[Any, ...], kwargs: dict[str, Any]
          ) -> list[Any]:
    """Positional arguments of a call, in ``names`` order, defaults filled in."""
    out = list(args) + [kwargs.get(n, d) for n, d in names[len(args):]]
    extra = set(kwargs) - {n for n, _ in names}
    if extra:
        raise TypeError(f"unexpected arguments {sorted(extra)}")
    return out
