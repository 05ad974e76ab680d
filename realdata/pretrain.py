"""Source pretraining: train a whole network on a source dataset (used for built-in source models).

:func:`pretrain` trains every parameter (BN in train mode; SGD with Nesterov momentum 0.9 and a
cosine lr schedule). Horizontal flips are an explicit option (``augment``): they are wrong for
digits, text, many medical images and any task whose labels depend on left/right, so a task
declares whether flips are allowed (:attr:`realdata.tasks.TaskSpec.source_flips`) and the choice is
recorded with the checkpoint.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from realdata.data.base import LoadRequest
from realdata.feeding import NonFiniteLossError, _flip, _Split
from sims.infra import stable_id, write_bytes_atomic, write_json_atomic

__all__ = ["SOURCE_PRESETS", "Progress", "prepare_synthetic_source", "pretrain"]

#: ``"bar"``: a tqdm bar on stderr; ``"lines"``: one line per epoch on stderr; ``"off"``: silent.
Progress = Literal["bar", "lines", "off"]


def pretrain(
    model: nn.Module, dataset: Dataset, *, epochs: int, lr: float, batch_size: int, seed: int,
    weight_decay: float = 5e-4, augment: bool = False, progress: Progress = "off",
) -> list[float]:
    """Train every parameter on the source (BN in train mode; SGD, momentum 0.9, cosine lr).

    Args:
        model: the network (trained in place; left in eval mode).
        dataset: source training split (items ``(image, label, group)``).
        epochs, lr, batch_size, weight_decay: the optimisation.
        seed: data order and flips.
        augment: random horizontal flips of every batch.
        progress: see :data:`Progress`.

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
    bar = tqdm(total=steps, desc="source pretraining", leave=False, file=sys.stderr,
               disable=progress != "bar")
    for epoch in range(epochs):
        total = 0.0
        for x, y, _ in split.batches(list(torch.randperm(split.n, generator=gen)
                                          .split(batch_size))):
            if augment:
                x = _flip(x, gen)
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite pretraining loss at epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
            bar.update(1)
        losses.append(total / split.n)
        if progress == "lines":
            print(f"source pretraining: epoch {epoch + 1}/{epochs} loss {losses[-1]:.4f}",
                  file=sys.stderr, flush=True)
    bar.close()
    model.eval()
    return losses


#: Synthetic source pretraining per preset: source training images, epochs, SGD lr, batch size.
#: With shape alone carrying the class (generator version 2), 3,000 images x 6 epochs at batch
#: 128 reached 0.19 source test accuracy; 6,000 x 10 at batch 32 reached 0.95.
SOURCE_PRESETS: dict[str, dict[str, float]] = {
    "quick": {"train_n": 6000, "epochs": 10, "lr": 0.05, "batch_size": 32},
    "full": {"train_n": 12000, "epochs": 15, "lr": 0.05, "batch_size": 32},
}
SOURCE_SEED = 0


def prepare_synthetic_source(request: LoadRequest, folder: Path, *, backbone: str = "resnet26",
                             backbone_kwargs: Mapping[str, Any] | None = None) -> Path:
    """Pretrain the synthetic task's source model once and cache it in ``folder``.

    ``request.extra``: ``preset`` picks :data:`SOURCE_PRESETS` (default ``"quick"``),
    ``source_flips`` (default ``False``) adds random horizontal flips, ``progress`` a
    :data:`Progress` mode. The file name carries a hash of everything that defines the model
    (preset, flips, backbone, image size, the generator's version), so a changed definition never
    reuses a stale file. Next to the ``.pt`` file a ``.json`` holds the settings, the source
    validation/test accuracy and the training losses. ``backbone``/``backbone_kwargs`` pick another
    source architecture (default: the task's small ResNet-26; ``synthetic-vit`` passes its tiny
    ViT).
    """
    from realdata.data.synthetic import (
        BACKBONE_KWARGS,
        GENERATOR_VERSION,
        NUM_CLASSES,
        load_synthetic,
    )
    from realdata.metrics import evaluate
    from realdata.models import build_backbone

    preset = str(request.extra.get("preset", "quick"))
    if preset not in SOURCE_PRESETS:
        raise ValueError(f"unknown source preset {preset!r}; known: {sorted(SOURCE_PRESETS)}")
    flips = bool(request.extra.get("source_flips", False))
    progress = request.extra.get("progress", "off")
    cfg = dict(SOURCE_PRESETS[preset])
    kwargs = dict(BACKBONE_KWARGS if backbone_kwargs is None else backbone_kwargs)
    settings: dict[str, Any] = {"task": "synthetic-source", "preset": preset, "source": cfg,
                                "flips": flips, "backbone": kwargs, "seed": SOURCE_SEED,
                                "image_size": request.image_size,
                                "generator_version": GENERATOR_VERSION}
    if backbone != "resnet26":
        settings["backbone_name"] = backbone
    folder = Path(folder)
    path = folder / f"synthetic-source-{stable_id(settings)}.pt"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    src = load_synthetic(LoadRequest(
        data_root=request.data_root, variant="source", seed=SOURCE_SEED,
        train_n=int(cfg["train_n"]), image_size=request.image_size, test_per_class=100))
    with torch.random.fork_rng():
        torch.manual_seed(SOURCE_SEED)
        model = build_backbone(backbone, NUM_CLASSES, **kwargs)
    t0 = time.perf_counter()
    losses = pretrain(model, src.train, epochs=int(cfg["epochs"]), lr=float(cfg["lr"]),
                      batch_size=int(cfg["batch_size"]), seed=SOURCE_SEED, augment=flips,
                      progress=progress)
    info = {**settings, "losses": losses, "seconds": time.perf_counter() - t0,
            "val_accuracy": evaluate(model, src.val)[1],
            "test_accuracy": evaluate(model, src.test)[1]}
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    write_json_atomic(path.with_suffix(".json"), info)
    write_bytes_atomic(path, buf.getvalue())
    return path
