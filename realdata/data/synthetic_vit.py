"""Task ``synthetic-vit``: the built-in synthetic benchmark with a tiny ViT (timm layout).

The same procedural source and target shifts as ``synthetic`` (:mod:`realdata.data.synthetic`; the
reader is :func:`realdata.data.synthetic.load_synthetic`); the source model is a small ViT
(:data:`TINY_VIT`: 32 px images in 4 px patches, width 48, 6 layers, 3 heads) pretrained on the
synthetic source once and cached, like the ResNet one
(:func:`realdata.pretrain.prepare_synthetic_source`). Its tuned options in the paper's terms:
``embed``, ``block0-block2`` (first 3 layers), ``block3-block5`` (last 3), ``head``, ``all``
(:data:`VIT_OPTIONS`). The task's entry is in :mod:`realdata.task_table`. Offline and
CPU-sized::

    python -m realdata.benchmark --task synthetic-vit --quick --methods \\
        --tuned none embed block0-block2 block3-block5 head all --out results/vit-quick
"""

from __future__ import annotations

__all__ = ["TINY_VIT", "VIT_LRS", "VIT_OPTIONS"]

TINY_VIT = {"image_size": 32, "patch_size": 4, "embed_dim": 48, "depth": 6, "heads": 3}
VIT_OPTIONS = ("none", "embed", "block0-block2", "block3-block5", "head", "all")
#: The tiny ViT's lr grid (Adam; the README's tiny-ViT table was measured with it).
VIT_LRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
