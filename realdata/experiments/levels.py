"""Which block a shift moves: normalised activation distance per block, independent of fine-tuning.

For a source model and two image sets (source and target), the output of each block ``b`` (the
stage outputs of a :class:`realdata.models.base.Backbone`, flattened) is summarized by its mean
``mu_b`` over the set. The distance of block ``b`` is

    D_b = || mu_b(target) - mu_b(source) || / sqrt( mean over source x of || h_b(x) - mu_b(source) ||^2 )

the shift of the mean activation in units of the source's spread (a linear-kernel MMD, scaled
per block so blocks of different widths compare). Two independent source draws give the
sampling floor ``D_b(source, source')``; :func:`level_table` reports ``D_b`` and that floor.
An input shift should move block 1 most; an output shift (labels only) moves no activation
(``D_b`` at the floor).

``python -m realdata.experiments.levels --task synthetic --checkpoint PATH --out DIR`` writes
``DIR/levels.json`` and ``DIR/levels.md`` for every variant of the built-in synthetic task, and with
``--corruptions all`` for the 15 CIFAR-10-C corruptions (severity 5) applied to the source images.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from realdata.models.base import Backbone

__all__ = ["activation_distance", "block_means", "level_table", "main"]


@torch.no_grad()
def block_means(model: Backbone, images: torch.Tensor, batch_size: int = 256
                ) -> list[tuple[str, torch.Tensor, float]]:
    """Per block: ``(name, mean flattened output (D,), mean squared distance to that mean)``.

    Args:
        model: a backbone in eval mode (stage outputs via ``model(x, start, stop)``).
        images: ``(N, 3, H, W)`` float32 in ``[0, 1]``.
    """
    model.eval()
    names = [n for n, _ in model.stages()]
    sums: list[torch.Tensor | None] = [None] * len(names)
    sq = [0.0] * len(names)
    n = images.shape[0]
    for x in images.split(batch_size):
        h = x
        for i in range(len(names)):
            h = model(h, start=i, stop=i + 1)
            f = h.reshape(h.shape[0], -1).double()
            sums[i] = f.sum(0) if sums[i] is None else sums[i] + f.sum(0)  # type: ignore[operator]
            sq[i] += float((f * f).sum())
    out = []
    for i, name in enumerate(names):
        mu = sums[i] / n  # type: ignore[operator]
        var = sq[i] / n - float(mu @ mu)  # E||h||^2 - ||mu||^2
        out.append((name, mu, max(var, 0.0)))
    return out


def activation_distance(model: Backbone, source: torch.Tensor, target: torch.Tensor
                        ) -> dict[str, float]:
    """``D_b`` of every block between ``source`` and ``target`` images (see the module doc)."""
    s, t = block_means(model, source), block_means(model, target)
    return {name: float((mt - ms).norm()) / math.sqrt(var) if var > 0 else math.nan
            for (name, ms, var), (_, mt, _) in zip(s, t)}


def level_table(model: Backbone, source: torch.Tensor, source2: torch.Tensor,
                targets: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``{"floor": D(source, source2), "targets": {name: D(source, target)}}``."""
    return {"floor": activation_distance(model, source, source2),
            "targets": {k: activation_distance(model, source, v) for k, v in targets.items()}}


def _markdown(table: dict[str, Any]) -> str:
    blocks = list(table["floor"])
    lines = ["| target | " + " | ".join(blocks) + " | most moved |",
             "|---|" + "---|" * (len(blocks) + 1),
             "| (source vs source: floor) | " + " | ".join(
                 f"{table['floor'][b]:.3f}" for b in blocks) + " | |"]
    for name, d in table["targets"].items():
        top = max(blocks, key=lambda b: d[b] - table["floor"][b])
        lines.append(f"| {name} | " + " | ".join(f"{d[b]:.3f}" for b in blocks) + f" | {top} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI (see the module doc); exit 2 with a one-line reason on bad input."""
    p = argparse.ArgumentParser(prog="python -m realdata.experiments.levels",
                                description="Normalised activation distance per block between "
                                            "source and target images of the synthetic task.")
    p.add_argument("--task", default="synthetic", choices=("synthetic",),
                   help="task (the built-in synthetic task)")
    p.add_argument("--checkpoint", required=True, help="source model state_dict")
    p.add_argument("--out", required=True, help="output folder (levels.json, levels.md)")
    p.add_argument("--per-class", type=int, default=50, help="images per class in each set")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--corruptions", nargs="*", default=(), metavar="NAME",
                   help="also measure these CIFAR-10-C corruptions (realdata.data.corruptions, "
                        "severity 5) applied to the source images; 'all' for the 15")
    a = p.parse_args(argv)
    try:
        from realdata.data.base import LoadRequest
        from realdata.data.synthetic import BACKBONE_KWARGS, NUM_CLASSES, VARIANTS, load_synthetic
        from realdata.models import build_backbone, load_checkpoint
        from sims.infra import write_json_atomic, write_text_atomic

        if a.per_class < 2:
            raise ValueError(f"--per-class must be >= 2; got {a.per_class}")
        if not Path(a.checkpoint).is_file():
            raise ValueError(f"checkpoint file not found: {a.checkpoint}")
        model = build_backbone("resnet26", NUM_CLASSES, **BACKBONE_KWARGS)  # type: ignore[arg-type]
        load_checkpoint(model, a.checkpoint)

        def images(variant: str, seed: int) -> torch.Tensor:
            sp = load_synthetic(LoadRequest(data_root=Path("."), variant=variant, seed=seed,
                                            train_n=NUM_CLASSES, val_per_class=1,
                                            test_per_class=a.per_class))
            return sp.test.images  # type: ignore[attr-defined]

        from realdata.data.corruptions import CORRUPTIONS, corrupt, validate_corruption

        names = list(CORRUPTIONS) if list(a.corruptions) == ["all"] else [
            validate_corruption(c) for c in a.corruptions]
        src = images("source", a.seed)
        targets = {v: images(v, a.seed) for v in VARIANTS}
        targets.update({f"corrupt:{c}": corrupt(src, c, 5, seed=a.seed) for c in names})
        table = level_table(model, src, images("source", a.seed + 1), targets)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "levels.json", {"checkpoint": a.checkpoint, "per_class": a.per_class,
                                            "seed": a.seed, **table})
    md = _markdown(table)
    write_text_atomic(out / "levels.md", md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
