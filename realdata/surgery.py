"""What trains: block selection, freezing, BatchNorm mode, Auto-RGN and Auto-SNR.

* :func:`resolve_tuned` turns a user spec (``"block2"``, ``"block1-block3"``, ``"all"``, ``"head"``,
  ``"none"``) into the ordered tuple of tuned blocks.
* :func:`configure_surgery` sets ``requires_grad`` (tuned blocks only) and the BatchNorm mode.
  ``bn="eval"`` (default, the official code's choice): every BN layer uses and keeps its running
  statistics. ``bn="train"``: BN layers *inside the tuned blocks* normalize with batch statistics
  and update their running statistics; BN layers of frozen blocks stay in eval mode (a frozen block
  is frozen entirely), which also keeps the frozen prefix cacheable.
* Auto-RGN (:func:`rgn_multipliers`): per tensor the relative gradient norm ``||g|| / ||theta||``,
  divided by its maximum over tensors, multiplies that tensor's learning rate; recomputed each epoch.
* Auto-SNR (:func:`snr_scores`): per-example gradients via ``torch.func`` (:func:`per_example_grads`);
  per element ``mean_i g_i^2 / Var_i(g_i)`` over the examples ``i``, averaged over the tensor's
  elements, rescaled to [0, 1] over tensors (min-max); tensors whose score is below a threshold are
  frozen for the epoch. The official code instead takes the variance of a batch gradient along the
  tensor's first axis (a spread over output units, not over examples); we follow the definition
  (signal-to-noise over examples), so scores are not numerically comparable with that code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from realdata.models.blocks import BlockMap, assign_parameters, block_of

__all__ = [
    "BnMode",
    "configure_surgery",
    "per_example_grads",
    "resolve_tuned",
    "rgn_multipliers",
    "snr_freeze",
    "snr_scores",
]

BnMode = Literal["eval", "train"]
_EPS = 1e-12


def resolve_tuned(spec: str, blocks: Sequence[str]) -> tuple[str, ...]:
    """Blocks tuned by ``spec``, in depth order.

    Args:
        spec: a block name, a contiguous range ``"A-B"`` (or ``"A:B"``; inclusive, A before B),
            ``"all"``, ``"head"`` (the last block) or ``"none"`` (no tuning).
        blocks: the backbone's ordered block names.

    Raises:
        ValueError: unknown block or reversed range (the message lists the valid names).
    """
    blocks = tuple(blocks)
    valid = f"valid: {', '.join(blocks)}, all, head, none, or a range like {blocks[0]}-{blocks[-1]}"
    if spec == "none":
        return ()
    if spec == "all":
        return blocks
    if spec == "head":
        return (blocks[-1],)
    if spec in blocks:
        return (spec,)
    for sep in ("-", ":"):
        if sep in spec:
            a, _, b = spec.partition(sep)
            if a in blocks and b in blocks:
                i, j = blocks.index(a), blocks.index(b)
                if i > j:
                    raise ValueError(f"block range {spec!r} is reversed; {valid}")
                return blocks[i : j + 1]
    raise ValueError(f"unknown block {spec!r}; {valid}")


def configure_surgery(
    model: nn.Module, block_map: BlockMap, tuned: Sequence[str], bn: BnMode = "eval"
) -> list[str]:
    """Freeze everything outside ``tuned``; set BN modes (see module docstring).

    Returns:
        Names of the trainable parameters (``named_parameters`` order).

    Raises:
        ValueError: bad ``bn``, unknown tuned block, or a block map that misses parameters.
    """
    if bn not in ("eval", "train"):
        raise ValueError(f"bn must be 'eval' or 'train'; got {bn!r}")
    unknown = [b for b in tuned if b not in block_map]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown}; blocks: {list(block_map)}")
    owned = assign_parameters(model, block_map)
    trainable = {n for b in tuned for n in owned[b]}
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)
    model.eval()
    if bn == "train":
        tuned_map = {b: block_map[b] for b in tuned}
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and block_of(name, tuned_map):
                m.train()
    return [n for n, _ in model.named_parameters() if n in trainable]


def rgn_multipliers(
    grads: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """Auto-RGN learning-rate multipliers: ``rgn_t / max_s rgn_s`` with ``rgn = ||g|| / ||theta||``.

    Args:
        grads: tensor name -> gradient (any shape).
        params: tensor name -> current value (same keys and shapes).

    Returns:
        name -> multiplier in ``(0, 1]`` (the maximum is exactly 1). A tensor with zero gradient
        gets the smallest positive multiplier (``1e-12``) rather than 0, so no tensor is silently
        frozen by Auto-RGN.

    Raises:
        ValueError: empty input, mismatched keys, or non-finite gradients.
    """
    if not grads or set(grads) != set(params):
        raise ValueError("grads and params must be non-empty with the same tensor names")
    rgn = {}
    for k, g in grads.items():
        gn = float(g.detach().norm())
        if not torch.isfinite(torch.tensor(gn)):
            raise ValueError(f"non-finite gradient for {k!r} in Auto-RGN")
        rgn[k] = gn / max(float(params[k].detach().norm()), _EPS)
    top = max(rgn.values())
    if top <= 0:
        return dict.fromkeys(rgn, 1.0)
    return {k: min(1.0, max(v / top, _EPS)) for k, v in rgn.items()}


def per_example_grads(
    model: nn.Module,
    names: Sequence[str],
    x: torch.Tensor,
    y: torch.Tensor,
    forward_kwargs: Mapping[str, object] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-example gradients of the cross-entropy loss w.r.t. the tensors ``names``.

    Uses ``torch.func.vmap(grad(...))`` over single examples with all other parameters and buffers
    held fixed. BatchNorm must be in eval mode (per-example calls have no batch statistics); the
    caller switches it (Auto-SNR does).

    Args:
        model: the network; called as ``model(x[None], **forward_kwargs)``.
        names: parameter names to differentiate.
        x: ``(B, ...)`` inputs; y: ``(B,)`` integer labels.

    Returns:
        name -> ``(B, *param.shape)`` gradients.
    """
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()):
        raise ValueError("per-example gradients need BatchNorm in eval mode")
    kwargs = dict(forward_kwargs or {})
    all_params = dict(model.named_parameters())
    missing = [n for n in names if n not in all_params]
    if missing:
        raise ValueError(f"unknown parameter names {missing[:5]}")
    tuned = {n: all_params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in all_params.items() if n not in tuned}
    fixed.update({n: b for n, b in model.named_buffers()})

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, fixed), (xi.unsqueeze(0),), kwargs)
        return F.cross_entropy(out, yi.unsqueeze(0))

    return vmap(grad(loss_one), in_dims=(None, 0, 0))(tuned, x, y)


def snr_scores(per_example: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Auto-SNR score per tensor: mean over elements of ``mean_i g_i^2 / Var_i(g_i)``.

    Args:
        per_example: name -> ``(B, *shape)`` per-example gradients, ``B >= 2``.

    Returns:
        name -> score rescaled to ``[0, 1]`` over tensors, ``(s - min) / (max - min)`` (all 1 if
        every tensor has the same score). Per element ``E[g^2] / Var(g) = 1 + mean^2 / Var >= 1``,
        so raw scores crowd just above 1 and a fraction of the maximum would almost never freeze
        anything (measured: with ``s / max`` and threshold 0.5, Auto-SNR froze nothing and equalled
        ``all`` on 5 of 6 synthetic targets); the min-max range spreads them.
    """
    scores = {}
    for k, g in per_example.items():
        if g.shape[0] < 2:
            raise ValueError("Auto-SNR needs at least 2 examples")
        g = g.detach().double().flatten(1)
        ratio = g.pow(2).mean(0) / (g.var(0, unbiased=False) + _EPS)
        scores[k] = float(ratio.mean())
    lo, hi = min(scores.values()), max(scores.values())
    return {k: ((v - lo) / (hi - lo) if hi > lo else 1.0) for k, v in scores.items()}


def snr_freeze(scores: Mapping[str, float], threshold: float) -> set[str]:
    """Names of tensors frozen by Auto-SNR: normalized score ``< threshold``.

    The top tensor (score 1) is never frozen, so at least one tensor trains (for threshold < 1).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"snr threshold must be in [0, 1]; got {threshold}")
    return {k for k, v in scores.items() if v < threshold}

