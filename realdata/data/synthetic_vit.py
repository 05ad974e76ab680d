"""Task ``synthetic-vit``: the built-in synthetic benchmark with a tiny ViT (timm layout).

The same procedural source and target shifts as ``synthetic`` (:mod:`realdata.data.synthetic`);
the source model is a small ViT (:data:`TINY_VIT`: 32 px images in 4 px patches, width 48, 6
layers, 3 heads) pretrained on the synthetic source once and cached, like the ResNet one. Its tuned
options in the paper's terms: ``embed``, ``block0-block2`` (first 3 layers), ``block3-block5``
(last 3), ``head``, ``all`` (:data:`VIT_OPTIONS`). Offline and CPU-sized::

    python -m realdata.benchmark --task synthetic-vit --quick --methods \\
        --tuned none embed block0-block2 block3-block5 head all --out results/vit-quick
"""

from __future__ import annotations

import functools

from realdata.data.synthetic import LEVELS, NUM_CLASSES, VARIANTS, load_synthetic, prepare_source
from realdata.tasks import Protocol, TaskSpec, register_task

__all__ = ["TINY_VIT", "VIT_OPTIONS"]

TINY_VIT = {"image_size": 32, "patch_size": 4, "embed_dim": 48, "depth": 6, "heads": 3}
VIT_OPTIONS = ("none", "embed", "block0-block2", "block3-block5", "head", "all")

register_task(TaskSpec(
    name="synthetic-vit", shift_level="input", backbone="vit_b16", num_classes=NUM_CLASSES,
    load=load_synthetic, variants=VARIANTS,
    protocol=Protocol(epochs=15, lrs=(1e-2, 1e-3, 1e-4), train_n=500, val_per_class=10,
                      test_per_class=100),
    quick_protocol=Protocol(epochs=5, lrs=(1e-2, 1e-3, 1e-4), train_n=100, val_per_class=10,
                            test_per_class=50),
    quick_variants=("input-noise", "input-channels", "feature", "output"),
    layout="(none: images are generated; no --data-root needed)", backbone_kwargs=TINY_VIT,
    needs_data=False, variant_levels=LEVELS,  # type: ignore[arg-type]
    description="built-in procedural images with a tiny ViT source model, offline",
    prepare_source=functools.partial(prepare_source, backbone="vit_b16",
                                     backbone_kwargs=TINY_VIT),
))
