"""A user's task defined outside the package (the README's "Your own dataset" example).

Run it with::

    python -m realdata.benchmark --task-module tests.realdata.plugins.digits --task toydigits \
        --checkpoint toy.pt --executor processes --out results/toy
"""

from __future__ import annotations

import torch

from realdata.data.base import LoadRequest, TargetSplits, TensorImages
from realdata.tasks import Protocol, TaskSpec, register_task


def _images(n: int, seed: int) -> TensorImages:
    """``n`` 16x16 images in 4 classes: the class is which quadrant is bright (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = 0.2 * torch.rand(n, 3, 16, 16, generator=g)
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, :, 8 * r:8 * r + 8, 8 * col:8 * col + 8] += 0.6
    return TensorImages(x.clamp(0, 1), y)


def load_toydigits(request: LoadRequest) -> TargetSplits:
    """The reader: a pure function of the request (no training, no registry, no files)."""
    return TargetSplits(
        train=_images(request.train_n, 1000 + request.seed),
        val=_images(4 * request.val_per_class, 2000 + request.seed),
        test=_images(4 * (request.test_per_class or 5), 3000 + request.seed),
        num_classes=4, info={"source": "generated"})


register_task(TaskSpec(
    name="toydigits", shift_level="feature", backbone="resnet26", num_classes=4,
    load=load_toydigits, backbone_kwargs={"depth": 8}, needs_data=False, source_flips=False,
    protocol=Protocol(epochs=2, lrs=(1e-1, 1e-2, 1e-3), train_n=16, batch_size=8,
                      val_per_class=2, test_per_class=2, image_size=16),
    description="toy quadrant images (a user's task)"))
