"""Unsupervised online adaptation of the tuned blocks: MEMO and TENT over a target test stream.

The target's test examples arrive one batch at a time in a seeded random order (MEMO: one image
per batch; TENT: ``batch_size`` images). For each batch the tuned blocks take ``steps`` gradient
steps on an unsupervised loss, then the batch is predicted; parameters and optimizer state carry
forward to the next batch (the paper's online setting; ``episodic=True`` resets them after every
batch, MEMO's original episodic setting). Labels are only used to score the predictions.

* MEMO (Zhang, Levine, Finn 2021): the entropy of the marginal prediction
  ``p_bar = mean_b softmax(f(aug_b(x)))`` over ``n_augs`` AugMix views of the image
  (:mod:`realdata.augmix`); the image itself is predicted after the step.
* TENT (Wang et al. 2021): the mean over the batch of the prediction entropy.

Optimizer: SGD with momentum (MEMO's and TENT's CIFAR recipes differ: MEMO SGD lr 0.005, TENT
Adam 1e-3; one optimizer keeps the comparison across tuned options simple), no weight decay.
The learning rate is selected like the supervised protocol's: each lr of ``lrs`` adapts online over
the labelled validation stream from the source weights, the lr with the best validation metric is
then run over the test stream from the source weights again.

BatchNorm (recorded as ``bn``): ``"eval"`` keeps every BN layer on its running (source)
statistics; ``"batch"`` normalizes every BN layer of the model with the statistics of the current
forward batch (the running statistics stay unchanged): for TENT the stream batch, as in TENT; for
MEMO the batch ``[x, its views]``, and ``x``'s prediction is taken from a forward of that batch.
Models without BN (the ViT) are unaffected.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from realdata.augmix import memo_views
from realdata.metrics import metric_value
from realdata.models.blocks import BlockMap
from realdata.surgery import configure_surgery, resolve_tuned

__all__ = ["OBJECTIVES", "OnlineConfig", "OnlineResult", "adapt_online", "marginal_entropy",
           "mean_entropy", "run_stream"]

Objective = Literal["memo", "tent"]
OBJECTIVES = ("memo", "tent")


@dataclass(frozen=True)
class OnlineConfig:
    """Unsupervised online adaptation (see module docstring).

    Attributes:
        objective: ``"memo"`` or ``"tent"``.
        tuned: block spec adapted (see :func:`realdata.surgery.resolve_tuned`).
        lrs: SGD learning rates, one selected on the validation stream.
        momentum: SGD momentum.
        steps: gradient steps per batch.
        n_augs: MEMO's augmented views per image.
        batch_size: TENT's stream batch (MEMO always adapts on one image).
        bn: ``"eval"`` or ``"batch"``.
        episodic: reset the weights after every batch (default: carry forward, online).
    """

    objective: Objective = "memo"
    tuned: str = "all"
    lrs: tuple[float, ...] = (5e-3, 1e-3, 1e-4)
    momentum: float = 0.9
    steps: int = 1
    n_augs: int = 16
    batch_size: int = 64
    bn: Literal["eval", "batch"] = "eval"
    episodic: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be memo|tent; got {self.objective!r}")
        if not self.lrs or any(not (0 < lr < math.inf) for lr in self.lrs):
            raise ValueError(f"online lrs must be positive; got {list(self.lrs)}")
        if self.steps < 1 or self.n_augs < 1 or self.batch_size < 1:
            raise ValueError(f"steps, n_augs and batch_size must be >= 1; got {self.steps}, "
                             f"{self.n_augs}, {self.batch_size}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {self.momentum}")
        if self.bn not in ("eval", "batch"):
            raise ValueError(f"online bn must be eval|batch; got {self.bn!r}")
        object.__setattr__(self, "lrs", tuple(float(x) for x in self.lrs))


@dataclass
class OnlineResult:
    """Outcome of :func:`adapt_online` (metrics are fractions in ``[0, 1]``)."""

    status: Literal["ok", "failed"]
    tuned_blocks: tuple[str, ...]
    best_lr: float | None
    val_metric: float
    test_metric: float
    test_accuracy: float
    val_by_lr: dict[str, float] = field(default_factory=dict)
    n_trainable: int = 0
    seconds: float = 0.0
    error: str | None = None


def marginal_entropy(logits: torch.Tensor) -> torch.Tensor:
    """MEMO's loss: entropy of ``mean_b softmax(logits_b)``; ``logits (B, K)`` -> scalar."""
    logp = logits.log_softmax(1)
    avg = torch.logsumexp(logp, 0) - math.log(logits.shape[0])
    return -(avg.exp() * avg).sum()


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    """TENT's loss: mean over rows of the softmax entropy; ``logits (B, K)`` -> scalar."""
    logp = logits.log_softmax(1)
    return -(logp.exp() * logp).sum(1).mean()


def _rows(ds: Dataset, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if hasattr(ds, "batch"):
        return ds.batch(idx)  # type: ignore[attr-defined]
    items = [ds[int(i)] for i in idx]
    return (torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items]),
            torch.tensor([it[2] for it in items]))


def _batches(n: int, size: int, seed: int) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    yield from order.split(size)


def _bn_batch_stats(model: nn.Module) -> list[tuple[nn.Module, float | None, bool]]:
    """Put every BN layer on batch statistics without touching its running statistics."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum, m.training))
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
            m.train()
    return saved


def _metric(pred: torch.Tensor, y: torch.Tensor, g: torch.Tensor, metric: str) -> float:
    return metric_value(pred, y, g, metric)  # type: ignore[arg-type]


def run_stream(model: nn.Module, params: Sequence[nn.Parameter], stream: Dataset,
               config: OnlineConfig, lr: float, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Adapt-then-predict over ``stream`` (in place, on the model's device); returns
    ``(pred, y, group)`` (CPU tensors) in stream order.

    Raises:
        FloatingPointError: the loss became non-finite.
    """
    params = list(params)
    adapt = bool(params)  # tuned "none": predict only
    opt = torch.optim.SGD(params, lr=lr, momentum=config.momentum) if adapt else None
    start = copy.deepcopy(model.state_dict()) if config.episodic else None
    rng = np.random.default_rng(seed)
    size = 1 if config.objective == "memo" else config.batch_size
    preds, ys, gs = [], [], []
    device = next(model.parameters()).device
    for idx in _batches(len(stream), size, seed):  # type: ignore[arg-type]
        x, y, g = _rows(stream, idx)
        x = x.to(device)
        memo = config.objective == "memo" and (adapt or config.bn == "batch")
        views = memo_views(x[0].cpu(), config.n_augs, rng).to(device) if memo else None
        for _ in range(config.steps if opt is not None else 0):
            if views is not None:
                inp = torch.cat([x, views]) if config.bn == "batch" else views
                out = model(inp)
                loss = marginal_entropy(out[1:] if config.bn == "batch" else out)
            else:
                loss = mean_entropy(model(x)[: len(y)])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite {config.objective} loss at lr={lr:g}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            out = model(torch.cat([x, views]) if views is not None and config.bn == "batch"
                        else x)
        preds.append(out[: len(y)].argmax(1).cpu())
        ys.append(y)
        gs.append(g)
        if start is not None and adapt:
            model.load_state_dict(start)
            opt = torch.optim.SGD(params, lr=lr, momentum=config.momentum)
    return torch.cat(preds), torch.cat(ys), torch.cat(gs)


def adapt_online(model: nn.Module, block_map: BlockMap, val: Dataset, test: Dataset, *,
                 config: OnlineConfig, seed: int, metric: str = "accuracy") -> OnlineResult:
    """Select the lr on the validation stream, then adapt online over the test stream.

    ``model`` ends in its source state (every run starts from it). ``tuned="none"`` predicts the
    streams without adaptation (with ``bn="batch"``: BN statistics of each batch only).

    Raises:
        ValueError: an empty stream (the message names it), an unknown block.
    """
    for ds, name in ((val, "validation"), (test, "test")):
        if len(ds) == 0:  # type: ignore[arg-type]
            raise ValueError(f"unsupervised online adaptation needs a {name} stream, but the "
                             f"task's {name} split is empty")
    t0 = time.perf_counter()
    tuned = resolve_tuned(config.tuned, tuple(block_map))
    init = copy.deepcopy(model.state_dict())
    names = set(configure_surgery(model, block_map, tuned, "eval"))
    params = [p for n, p in model.named_parameters() if n in names]
    saved = _bn_batch_stats(model) if config.bn == "batch" else []
    lrs = config.lrs if tuned else (config.lrs[0],)
    val_by: dict[str, float] = {}
    errors = []
    try:
        for lr in lrs:
            model.load_state_dict(init)
            try:
                pred, y, g = run_stream(model, params, val, config, lr, seed)
                val_by[f"{lr:g}"] = _metric(pred, y, g, metric)
            except FloatingPointError as exc:
                errors.append(str(exc))
        if not val_by:
            return OnlineResult("failed", tuned, None, math.nan, math.nan, math.nan,
                                n_trainable=sum(p.numel() for p in params),
                                seconds=time.perf_counter() - t0, error="; ".join(errors))
        best = max(val_by, key=lambda k: (val_by[k], -lrs.index(float(k))))
        lr = next(x for x in lrs if f"{x:g}" == best)
        model.load_state_dict(init)
        pred, y, g = run_stream(model, params, test, config, lr, seed + 1)
    except FloatingPointError as exc:
        return OnlineResult("failed", tuned, None, math.nan, math.nan, math.nan, val_by,
                            sum(p.numel() for p in params), time.perf_counter() - t0, str(exc))
    finally:
        for m, mom, was in saved:
            m.momentum = mom
            m.train(was)
        model.load_state_dict(init)
    return OnlineResult("ok", tuned, lr if tuned else None, val_by[best], _metric(pred, y, g, metric),
                        _metric(pred, y, g, "accuracy"), val_by, sum(p.numel() for p in params),
                        time.perf_counter() - t0)
