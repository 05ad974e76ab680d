"""Noise in one block: perturb one block of a source model, then tune each option on source data.

The paper's controlled experiment. Start from a network trained on the source, add Gaussian noise
to the parameters of exactly one block (the *perturbed* block, the task's variant), fine-tune one
option (each single block, ``all``; ``none`` measures the damage) on a few labelled *source*
examples with the task's protocol, and evaluate on held-out source test images. The claim to test:
tuning the perturbed block beats tuning any other block and beats tuning everything.

Noise: every parameter tensor ``theta`` of the perturbed block (weights, biases and BatchNorm
affine parameters; BatchNorm running statistics are buffers and stay) becomes
``theta + level * ||theta|| / sqrt(numel) * eps`` with ``eps ~ N(0, I)``, so the noise has
expected squared norm ``level**2 * ||theta||**2``: :data:`NOISE_LEVEL` = 1 means noise as large as
the tensor itself. Tensors with zero norm stay unchanged. The draw is seeded by (run seed,
perturbed block), so seeds differ in the noise as well as in the data split and order.

Tasks (entries of :mod:`realdata.task_table`, built by :func:`noise_task`): ``noise-in-block`` on
the built-in synthetic source (its cached source model) and ``noise-in-block-cifar10`` on CIFAR-10
test images with their true labels (the source of ``cifar10c`` and ``cifarflip``; needs
``--checkpoint`` and ``--data-root``).
:func:`noise_task` builds the same experiment on any task's source model and source reader (for a
``--task-module`` plug-in).

Verdicts (:func:`noise_verdicts`): per perturbed block, the paired verdict of
:func:`realdata.summary.paired_verdict` with the perturbed block as the expected winner over every
other single block and ``all``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from realdata.data.base import LoadRequest, TargetSplits
from realdata.models.blocks import BlockMap
from realdata.summary import paired_verdict
from realdata.tasks import DEFAULT_LRS, Protocol, TaskSpec
from sims.infra.stats import CONFIDENCE

__all__ = ["NOISE_LEVEL", "NOISE_PROTOCOLS", "SEED_OFFSET", "load_cifar10_source", "load_synthetic_source",
           "noise_task", "noise_verdicts", "perturb_block"]

#: Noise norm relative to each tensor's norm (see the module doc).
NOISE_LEVEL = 1.0
#: Added to the run seed when generating synthetic source data (keeps the fine-tuning images apart
#: from the pretraining draw, which uses seed 0).
SEED_OFFSET = 1000

#: Presets ``(full, quick)`` of the two built-in tasks; CIFAR-10 follows the public replication
#: (3000 source images, Adam lr grid, 15 epochs).
NOISE_PROTOCOLS: dict[str, tuple[Protocol, Protocol]] = {
    "noise-in-block": (
        Protocol(epochs=15, lrs=DEFAULT_LRS, train_n=500, val_per_class=10, test_per_class=100),
        Protocol(epochs=5, lrs=DEFAULT_LRS, train_n=100, val_per_class=10, test_per_class=50)),
    "noise-in-block-cifar10": (
        Protocol(epochs=15, train_n=3000, val_per_class=100, test_per_class=500),
        Protocol(epochs=3, train_n=100, val_per_class=10, test_per_class=50)),
}


def _block_params(model: nn.Module, block_map: BlockMap, block: str) -> list[tuple[str, nn.Parameter]]:
    from realdata.surgery import resolve_tuned

    if block not in block_map:
        raise ValueError(f"unknown block {block!r} to perturb; blocks: {', '.join(block_map)}")
    resolve_tuned(block, tuple(block_map))
    prefixes = tuple(block_map[block])
    return [(n, p) for n, p in model.named_parameters()
            if any(n == q or n.startswith(q + ".") for q in prefixes)]


@torch.no_grad()
def perturb_block(model: nn.Module, block_map: BlockMap, block: str, level: float, seed: int
                  ) -> dict[str, float]:
    """Add Gaussian noise of relative size ``level`` to every parameter tensor of ``block``.

    Args:
        model: the network (changed in place).
        block_map: its ordered block map (name -> parameter-name prefixes).
        block: the block to perturb.
        level: noise norm relative to each tensor's norm (``>= 0``).
        seed: seeds the draw (together with the block's position).

    Returns:
        Parameter name -> realised ``||noise|| / ||theta||`` (0 for zero-norm tensors).

    Raises:
        ValueError: unknown block, negative level, or a block without parameters.
    """
    if not level >= 0:
        raise ValueError(f"noise level must be >= 0; got {level}")
    params = _block_params(model, block_map, block)
    if not params:
        raise ValueError(f"block {block!r} has no parameters to perturb")
    rng = np.random.default_rng([int(seed), 0x5EED, list(block_map).index(block)])
    ratios = {}
    for name, p in params:
        norm = float(p.detach().double().norm())
        if norm == 0.0:
            ratios[name] = 0.0
            continue
        eps = torch.from_numpy(rng.standard_normal(tuple(p.shape))).to(p.dtype).to(p.device)
        noise = eps * (level * norm / np.sqrt(p.numel()))
        p.add_(noise)
        ratios[name] = float(noise.double().norm()) / norm
    return ratios


def load_synthetic_source(request: LoadRequest) -> TargetSplits:
    """Synthetic *source* splits (the variant names the perturbed block, not the data); seeded by
    ``request.seed + SEED_OFFSET``."""
    from realdata.data.synthetic import load_synthetic

    req = LoadRequest(data_root=request.data_root, variant="source", severity=request.severity,
                      train_n=request.train_n, seed=request.seed + SEED_OFFSET,
                      image_size=request.image_size, val_per_class=request.val_per_class,
                      test_per_class=request.test_per_class, extra=request.extra)
    splits = load_synthetic(req)
    return TargetSplits(splits.train, splits.val, splits.test, splits.num_classes,
                        splits.num_groups, {**splits.info, "perturbed_block": request.variant})


def load_cifar10_source(request: LoadRequest) -> TargetSplits:
    """CIFAR-10 test images with their true labels (per-class seeded splits), the source
    distribution of the CIFAR tasks."""
    from realdata.data.cifar import NUM_CLASSES, _split_tensors, read_cifar10_test

    images, labels = read_cifar10_test(Path(request.data_root))
    train, val, test = _split_tensors(images, labels.astype(np.int64), request, None)
    return TargetSplits(train, val, test, num_classes=NUM_CLASSES,
                        info={"source": "CIFAR-10 test_batch", "labels": "true",
                              "perturbed_block": request.variant})


def _blocks_of(base: TaskSpec) -> tuple[str, ...]:
    from realdata.models import build_backbone

    model = build_backbone(base.backbone, base.num_classes, **dict(base.backbone_kwargs))
    return tuple(model.block_map())


def noise_task(name: str, base: TaskSpec, load_source: Callable[[LoadRequest], TargetSplits], *,
               level: float = NOISE_LEVEL, protocol: Protocol | None = None,
               quick_protocol: Protocol | None = None, description: str = "") -> TaskSpec:
    """The noise-in-one-block experiment on ``base``'s source model and ``load_source``'s data.

    Variants are ``base``'s blocks (the block perturbed); the model transform perturbs it with
    ``level`` (see :func:`perturb_block`); :func:`noise_verdicts` judges the records.
    """
    def transform(model: nn.Module, request: LoadRequest) -> dict[str, Any]:
        bm = model.block_map()  # type: ignore[operator]
        ratios = perturb_block(model, bm, str(request.variant), level, request.seed)
        return {"perturbed_block": request.variant, "noise_level": level,
                "noise_ratio_mean": float(np.mean(list(ratios.values())))}

    # part of every run's id: another level never resumes into these records
    transform.run_id = {"noise_level": level, "noise": "gaussian, per tensor, relative to its norm"}  # type: ignore[attr-defined]
    return TaskSpec(
        name=name, shift_level="natural", backbone=base.backbone, num_classes=base.num_classes,
        load=load_source, variants=_blocks_of(base),
        # a protocol given without a quick one serves --quick too (as TaskSpec's default)
        protocol=protocol or base.protocol,
        quick_protocol=quick_protocol or (None if protocol else base.quick_protocol),
        metric=base.metric, layout=base.layout, backbone_kwargs=base.backbone_kwargs,
        needs_data=base.needs_data,
        description=description or f"noise in one block of the {base.name} source model, "
                                   f"tuned on source data (level {level:g})",
        prepare_source=base.prepare_source, source_flips=base.source_flips,
        reader_version=base.reader_version, model_transform=transform,
        task_verdicts=noise_verdicts)


def _settings(rec: Mapping[str, Any]) -> str:
    return repr((rec.get("settings"), rec.get("protocol"), rec.get("bn"), rec.get("checkpoint")))


def _series(records: Iterable[Mapping[str, Any]]
            ) -> dict[tuple[str, str], tuple[list[str], dict[str, dict[int, float]]]]:
    """Per (task, perturbed block): (blocks, option -> seed -> test metric) for ``ok`` fixed runs
    of the latest settings."""
    records = [r for r in records if r.get("method", "fixed") == "fixed"]
    latest = {(r["task"], r["variant"]): _settings(r) for r in records}
    out: dict[tuple[str, str], tuple[list[str], dict[str, dict[int, float]]]] = {}
    for r in records:
        key = (r["task"], r["variant"])
        if _settings(r) != latest[key] or r["status"] != "ok":
            continue
        _, series = out.setdefault(key, (list(r["blocks"]), defaultdict(dict)))
        series[r["tuned"]][int(r["seed"])] = float(r["test_metric"])
    return out


def noise_verdicts(records: Iterable[Mapping[str, Any]], *, z: float | None = None,
                   confidence: float = CONFIDENCE) -> list[dict[str, Any]]:
    """Per perturbed block: does tuning it beat every other single block and ``all``?

    Each entry: ``task, perturbed, verdict, reason, criterion, comparisons`` (other -> paired
    ``diff, se, n, threshold`` of perturbed minus other; the criterion and ``z`` as in
    :func:`realdata.summary.paired_verdict`), ``missing``, ``accs`` (option -> mean test metric) and ``best``
    (the option with the highest mean: a description, not a claim; the claim is ``verdict``).
    """
    out = []
    for (task, perturbed), (blocks, series) in sorted(_series(records).items()):
        others = [b for b in blocks if b != perturbed] + ["all"]
        v = paired_verdict(series, perturbed, others, z=z, confidence=confidence)
        accs = {k: float(np.mean(list(s.values()))) for k, s in series.items() if s}
        best = max((k for k in accs if k != "none"), key=lambda k: accs[k], default=None)
        out.append({"task": task, "perturbed": perturbed, **v, "accs": accs, "best": best})
    return out
