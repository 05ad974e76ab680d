"""Which block a shift moves: normalised activation distances per block, independent of fine-tuning.

For a source model, the output ``h_b(x)`` of each block ``b`` (the stage outputs of a
:class:`realdata.models.base.Backbone`, flattened) is compared between source and target images in
two ways:

* **paired** (targets that change the pixels of source images, and the label-only ``output``
  target): the same underlying images, clean ``x`` and shifted ``x'``::

      P_b = mean over x of || h_b(x') - h_b(x) || / || h_b(x) ||

  the relative movement of each image's representation. ``output`` changes labels only, so its
  shifted images *are* the clean ones and ``P_b = 0`` exactly.
* **distribution** (every target, the only one for ``feature``, whose images are new draws):
  with ``mu_b`` the mean block output over a set,

      D_b = || mu_b(target) - mu_b(source) || / sqrt( mean over source x of || h_b(x) - mu_b(source) ||^2 )

  the shift of the mean activation in units of the source's spread (a linear-kernel MMD, scaled
  per block so blocks of different widths compare). Two independent source draws give the
  sampling floor ``D_b(source, source')``.

:func:`level_verdicts` states, per target, whether the diagnostic shows the level the target
claims: ``input`` holds when block 1's paired movement exceeds every other block's, per image,
by more than the paired criterion (:func:`sims.infra.stats.beyond`: t over the images; ``fails``
when another block's exceeds block 1's so, ``inconclusive`` otherwise); ``output`` holds when no
block moves (every ``P_b`` at most :data:`ZERO_TOL`); ``feature`` is described (the block with the
largest ``D_b`` above the floor), not judged, because the paper locates it in middle blocks
without a rule this measure could check.

``python -m realdata.experiments.levels --out DIR [--checkpoint PATH] [--variants ...|all]``
writes ``DIR/levels.json`` and ``DIR/levels.md`` for the built-in synthetic task (without
``--checkpoint`` the task's cached source model in ``DIR/checkpoints``, pretrained there once);
``python -m paper_figures realdata --results DIR --figure levels`` draws them.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from realdata.models.base import Backbone

__all__ = ["ZERO_TOL", "activation_distance", "block_means", "first_block_contrasts",
           "level_markdown", "level_table", "level_verdicts", "main", "paired_distance",
           "paired_movements", "synthetic_level_table"]

#: ``P_b`` at or below this counts as "no movement" (float32 round-off of identical inputs is 0).
ZERO_TOL = 1e-6


def _stage_outputs(model: Backbone, x: torch.Tensor) -> list[torch.Tensor]:
    """Flattened float64 output ``(B, D_b)`` of every stage for a batch ``x``."""
    out, h = [], x
    for i in range(len(model.stages())):
        h = model(h, start=i, stop=i + 1)
        out.append(h.reshape(h.shape[0], -1).double())
    return out


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
        for i, f in enumerate(_stage_outputs(model, x)):
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


@torch.no_grad()
def paired_movements(model: Backbone, clean: torch.Tensor, shifted: torch.Tensor,
                     batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Per block, each image's relative movement ``||h_b(x') - h_b(x)|| / ||h_b(x)||``: ``(N,)``
    float64 (0 where ``h_b(x) = 0``).

    Args:
        model: a backbone (put in eval mode).
        clean, shifted: ``(N, 3, H, W)`` images, row ``i`` of both the same underlying image.

    Raises:
        ValueError: the two sets differ in shape or are empty.
    """
    if clean.shape != shifted.shape or clean.shape[0] == 0:
        raise ValueError(f"paired sets need the same non-empty shape; got {tuple(clean.shape)} "
                         f"and {tuple(shifted.shape)}")
    model.eval()
    names = [n for n, _ in model.stages()]
    parts: list[list[torch.Tensor]] = [[] for _ in names]
    for x, xs in zip(clean.split(batch_size), shifted.split(batch_size)):
        for i, (a, b) in enumerate(zip(_stage_outputs(model, x), _stage_outputs(model, xs))):
            ref = a.norm(dim=1)
            parts[i].append(torch.where(ref > 0, (b - a).norm(dim=1) / ref.clamp_min(1e-300),
                                        torch.zeros_like(ref)))
    return {name: torch.cat(parts[i]) for i, name in enumerate(names)}


def paired_distance(model: Backbone, clean: torch.Tensor, shifted: torch.Tensor,
                    batch_size: int = 256) -> dict[str, float]:
    """``P_b`` of every block: the mean over images of :func:`paired_movements`."""
    return {b: float(v.mean()) for b, v in
            paired_movements(model, clean, shifted, batch_size).items()}


def first_block_contrasts(movements: Mapping[str, torch.Tensor]) -> dict[str, list[float]]:
    """Per later block ``b``: ``[mean, se, n]`` over images of the first block's movement minus
    ``b``'s (:func:`realdata.summary.paired_diff`, paired by image: the same image through both
    blocks)."""
    from realdata.summary import paired_diff

    blocks = list(movements)
    first = dict(enumerate(movements[blocks[0]].tolist()))
    return {b: list(paired_diff(first, dict(enumerate(movements[b].tolist()))))
            for b in blocks[1:]}


def level_table(model: Backbone, source: torch.Tensor, source2: torch.Tensor,
                targets: Mapping[str, torch.Tensor],
                paired: Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """``{"floor": D(source, source2), "targets": {name: D(source, target)},
    "paired": {name: P(source, paired[name])}, "paired_contrasts": {name:
    first_block_contrasts(...)}}`` (``paired`` images row-aligned with ``source``)."""
    moves = {k: paired_movements(model, source, v) for k, v in (paired or {}).items()}
    return {"floor": activation_distance(model, source, source2),
            "targets": {k: activation_distance(model, source, v) for k, v in targets.items()},
            "paired": {k: {b: float(x.mean()) for b, x in m.items()} for k, m in moves.items()},
            "paired_contrasts": {k: first_block_contrasts(m) for k, m in moves.items()}}


def level_verdicts(table: Mapping[str, Any], levels: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per target: ``level``, ``most_moved`` and ``verdict`` (``holds``/``fails``/``described``)
    with a one-line ``reason`` (rules in the module doc).

    Args:
        table: a :func:`level_table` result.
        levels: target name -> its claimed level (``input``/``feature``/``output``).
    """
    floor = table["floor"]
    out = {}
    for name in {**table["targets"], **table.get("paired", {})}:
        level = levels.get(name, "?")
        p = table.get("paired", {}).get(name)
        d = table["targets"].get(name)
        if p:
            blocks = list(p)
            top = max(blocks, key=lambda b: (p[b], -blocks.index(b)))
            moved = f"paired {', '.join(f'{b} {p[b]:.3f}' for b in blocks)}"
        else:
            blocks = list(d)
            top = max(blocks, key=lambda b: (d[b] - floor[b], -blocks.index(b)))
            moved = f"distribution above floor {', '.join(f'{b} {d[b] - floor[b]:+.3f}' for b in blocks)}"
        if level == "output":
            if p is None:
                verdict, reason = "not judged", "no paired images"
            else:
                worst = max(p.values())
                verdict = "holds" if worst <= ZERO_TOL else "fails"
                top = "none" if worst <= ZERO_TOL else top
                reason = f"largest paired movement {worst:.2e} (no movement: <= {ZERO_TOL:g})"
        elif level == "input" and p:
            verdict, reason = _input_verdict(table.get("paired_contrasts", {}).get(name),
                                             blocks[0])
            reason += f"; {top} moves most on average ({moved})"
        else:
            verdict, reason = "described", f"{top} moves most ({moved})"
        out[name] = {"level": level, "most_moved": top, "verdict": verdict, "reason": reason}
    return out


def _input_verdict(contrasts: Mapping[str, Sequence[float]] | None, first: str
                   ) -> tuple[str, str]:
    """:func:`realdata.summary.verdict_of` on the first block's stored contrasts (the t criterion
    over the images): ``holds`` when its per-image movement exceeds every later block's, ``fails``
    when some block's exceeds it, else ``inconclusive``; ``not judged`` without per-image
    contrasts (a table of an older version)."""
    from realdata.summary import verdict_of
    from sims.infra.stats import criterion, threshold

    if not contrasts:
        return "not judged", "no per-image contrasts stored (rerun the levels diagnostic)"
    comps = {b: {"diff": m, "se": se, "n": int(n), "threshold": threshold(int(n))}
             for b, (m, se, n) in contrasts.items()}
    verdict, reason = verdict_of(comps, first, f"{criterion()} over images")
    detail = ", ".join(f"{b} {m:+.3f} ± {se:.3f}" for b, (m, se, _) in contrasts.items())
    return verdict, f"{reason} ({first} minus {detail})"


def level_markdown(table: Mapping[str, Any], verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of :func:`level_table` with :func:`level_verdicts` (one row per target)."""
    blocks = list(table["floor"])
    names = list(table["targets"])
    lines = ["Paired movement P_b = mean ||h_b(x') - h_b(x)|| / ||h_b(x)|| (same images, shifted "
             "vs clean) and distribution shift D_b = ||mu_t - mu_s|| / source spread (floor: two "
             "source draws).", "",
             "| target | level | " + " | ".join(f"P {b}" for b in blocks) + " | "
             + " | ".join(f"D {b}" for b in blocks) + " | most moved | verdict |",
             "|---|---|" + "---|" * (2 * len(blocks) + 2),
             "| (source vs source: floor) | | " + " | ".join("" for _ in blocks) + " | "
             + " | ".join(f"{table['floor'][b]:.3f}" for b in blocks) + " | | |"]
    for name in names:
        p = table.get("paired", {}).get(name)
        d = table["targets"][name]
        v = verdicts.get(name, {})
        pc = [f"{p[b]:.3f}" if p else "" for b in blocks]
        lines.append(f"| {name} | {v.get('level', '')} | " + " | ".join(pc) + " | "
                     + " | ".join(f"{d[b]:.3f}" for b in blocks)
                     + f" | {v.get('most_moved', '')} | {v.get('verdict', '')} |")
    return "\n".join(lines) + "\n"


def synthetic_level_table(model: Backbone, variants: Sequence[str], *, per_class: int,
                          seed: int, severity: int = 5, image_size: int = 32) -> dict[str, Any]:
    """:func:`level_table` for variants of the built-in synthetic task.

    Source images: the task's source test split (``per_class`` per class, seed ``seed``); floor:
    another draw (seed ``seed + 1``). Distribution targets: each variant's own test split, as the
    benchmark draws it. Paired targets (pixel variants and ``output``): the source images through
    :func:`realdata.data.synthetic.shift_images` (unchanged for ``output``).
    """
    from realdata.data.base import LoadRequest
    from realdata.data.synthetic import NUM_CLASSES, PIXEL_VARIANTS, load_synthetic, shift_images

    def images(variant: str, s: int) -> torch.Tensor:
        sp = load_synthetic(LoadRequest(data_root=Path("."), variant=variant, seed=s,
                                        severity=severity, train_n=NUM_CLASSES, val_per_class=1,
                                        test_per_class=per_class, image_size=image_size))
        return sp.test.images  # type: ignore[attr-defined]

    src = images("source", seed)
    targets = {v: images(v, seed) for v in variants}
    paired = {v: shift_images(src, v, severity, seed) for v in variants
              if v in PIXEL_VARIANTS or v == "output"}
    return level_table(model, src, images("source", seed + 1), targets, paired)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI (see the module doc); exit 2 with a one-line reason on bad input."""
    p = argparse.ArgumentParser(prog="python -m realdata.experiments.levels",
                                description="Normalised activation movement per block between "
                                            "source and target images of the synthetic task.")
    p.add_argument("--task", default="synthetic", choices=("synthetic",),
                   help="task (the built-in synthetic task)")
    p.add_argument("--checkpoint", default=None,
                   help="source model state_dict (default: the task's cached source model in "
                        "OUT/checkpoints, pretrained there with --preset if missing)")
    p.add_argument("--preset", choices=("quick", "full"), default="quick",
                   help="source pretraining preset without --checkpoint (default quick)")
    p.add_argument("--out", required=True, help="output folder (levels.json, levels.md)")
    p.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                   help="targets (default: the --quick targets; 'all' for every target)")
    p.add_argument("--per-class", type=int, default=50, help="images per class in each set")
    p.add_argument("--severity", type=int, default=5, help="corruption severity (1..5)")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    a = p.parse_args(argv)
    try:
        from realdata.data.base import LoadRequest
        from realdata.data.synthetic import BACKBONE_KWARGS, LEVELS, NUM_CLASSES
        from realdata.models import build_backbone, load_checkpoint
        from realdata.tasks import get_task
        from sims.infra import write_json_atomic, write_text_atomic

        spec = get_task(a.task)
        if a.per_class < 2:
            raise ValueError(f"--per-class must be >= 2; got {a.per_class}")
        if not 1 <= a.severity <= 5:
            raise ValueError(f"--severity must be in 1..5; got {a.severity}")
        variants = (list(spec.variants) if a.variants == ["all"] else
                    list(a.variants or spec.preset(True)[1]))
        unknown = [v for v in variants if v not in spec.variants]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; known: all, "
                             f"{', '.join(spec.variants)}")
        out = Path(a.out)
        if a.checkpoint is None:
            from realdata.pretrain import prepare_synthetic_source

            ckpt = prepare_synthetic_source(
                LoadRequest(data_root=Path("."), extra={"preset": a.preset, "progress": "lines"}),
                out / "checkpoints")
        elif not Path(a.checkpoint).is_file():
            raise ValueError(f"checkpoint file not found: {a.checkpoint}")
        else:
            ckpt = Path(a.checkpoint)
        model = build_backbone("resnet26", NUM_CLASSES, **BACKBONE_KWARGS)  # type: ignore[arg-type]
        load_checkpoint(model, ckpt)
        table = synthetic_level_table(model, variants, per_class=a.per_class, seed=a.seed,
                                      severity=a.severity)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    verdicts = level_verdicts(table, LEVELS)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "levels.json", {
        "task": a.task, "checkpoint": str(ckpt), "per_class": a.per_class, "seed": a.seed,
        "severity": a.severity, "levels": {v: LEVELS[v] for v in variants}, **table,
        "verdicts": verdicts})
    md = level_markdown(table, verdicts)
    write_text_atomic(out / "levels.md", md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
