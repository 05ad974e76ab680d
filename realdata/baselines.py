"""The paper's single-run baselines: L1-regularize and gradual unfreezing (both directions).

All three tune every block (``tuned="all"``) with the task's protocol (Adam, lr grid, epochs) and
are selected on validation like the plain runs:

* ``l1`` (L1-regularize): the loss is ``CE + lam * sum_t ||theta_t - theta_t^0||_1`` over the
  tuned tensors (``theta^0``: the source weights), a sum over elements. ``lam`` is chosen with the
  lr on validation from :data:`DEFAULT_L1_STRENGTHS` (every ``(lr, lam)`` pair is trained; model
  selection is over ``(lr, lam, epoch)``).
* ``gradual-down`` (gradual unfreezing Last -> First): epochs ``1 .. k`` train the head only, the
  next ``k`` epochs also the block below it, and so on until every block trains.
* ``gradual-up`` (First -> Last): the same from the first block upwards.

The unfreezing interval ``k`` ("every few epochs") is ``max(1, epochs // n_blocks)`` unless given,
so every block trains for at least the last ``epochs - (n_blocks - 1) * k`` epochs. Frozen tensors
get no gradient, so Adam leaves them (and their weight decay) alone. With ``--bn train`` the BN
layers of blocks not yet unfrozen still use batch statistics (they belong to ``tuned="all"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["BASELINES", "DEFAULT_L1_STRENGTHS", "GRADUAL", "check_l1_strengths",
           "gradual_every", "gradual_frozen", "l1_penalty"]

#: Method names of the baselines (``--methods``).
BASELINES = ("l1", "gradual-down", "gradual-up")
GRADUAL = ("gradual-down", "gradual-up")
#: The L1 strength grid searched with the lr on validation.
DEFAULT_L1_STRENGTHS: tuple[float, ...] = (1e-4, 1e-3, 1e-2)


def check_l1_strengths(strengths: Sequence[float]) -> tuple[float, ...]:
    """The grid as floats; ``ValueError`` (one line) unless every strength is a finite ``> 0``."""
    out = tuple(float(s) for s in strengths)
    if not out or any(not (0.0 < s < float("inf")) for s in out):
        raise ValueError(f"L1 strengths must be positive finite numbers; got {list(strengths)} "
                         "(use --l1-strengths 1e-4 1e-3 ...)")
    return out


def l1_penalty(params: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor],
               strength: float) -> torch.Tensor:
    """``strength * sum_t ||params[t] - reference[t]||_1`` (a scalar with gradient)."""
    total = sum((params[n] - reference[n]).abs().sum() for n in reference)
    return strength * total  # type: ignore[return-value]


def gradual_every(epochs: int, n_blocks: int, every: int | None = None) -> int:
    """Unfreezing interval in epochs (``every`` if given, else ``max(1, epochs // n_blocks)``)."""
    if every is not None:
        if every < 1:
            raise ValueError(f"gradual unfreezing interval must be >= 1 epoch; got {every}")
        return every
    return max(1, epochs // max(1, n_blocks))


def gradual_frozen(method: str, blocks: Sequence[str], owned: Mapping[str, Sequence[str]],
                   epoch: int, every: int) -> set[str]:
    """Parameter names still frozen at 1-based ``epoch`` of ``method`` (see module docstring).

    Args:
        method: ``"gradual-down"`` (head first) or ``"gradual-up"`` (first block first).
        blocks: the tuned blocks in depth order.
        owned: block -> its parameter names.
        epoch: 1-based epoch.
        every: unfreezing interval in epochs.
    """
    if method not in GRADUAL:
        raise ValueError(f"method must be one of {GRADUAL}; got {method!r}")
    n_open = min(len(blocks), 1 + (epoch - 1) // every)
    order = list(blocks) if method == "gradual-up" else list(reversed(blocks))
    return {n for b in order[n_open:] for n in owned[b]}
