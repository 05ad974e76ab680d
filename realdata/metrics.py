"""Metrics of a fine-tuning run: accuracy or worst-group accuracy of a model's predictions.

``accuracy`` is the fraction of correct predictions; ``worst_group`` the minimum accuracy over the
groups present (every example needs a group). Both are fractions in ``[0, 1]``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from realdata.feeding import _forward, _Split

__all__ = ["MetricName", "evaluate", "metric_value"]

MetricName = Literal["accuracy", "worst_group"]


def metric_value(pred: torch.Tensor, y: torch.Tensor, g: torch.Tensor, metric: MetricName
                 ) -> float:
    """``metric`` of predictions ``pred`` against labels ``y`` and groups ``g`` (all ``(n,)``
    integer tensors): ``accuracy`` or ``worst_group`` (a fraction in ``[0, 1]``).

    Raises:
        ValueError: an unknown metric, or ``worst_group`` with an example without group (-1).
    """
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
    return metric_value(pred, y, g, metric), metric_value(pred, y, g, "accuracy")


