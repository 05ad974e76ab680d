"""ImageNet-C reader: ``ImageNet-C/<corruption>/<severity>/<wnid>/*.JPEG``, decoded lazily.

Task ``imagenetc`` (input-level shift, ResNet-50): ImageNet -> ImageNet-C, one target per
corruption, severity 5; per class ``train_n/1000`` train, 10 val and 10 test images, seeded.
Labels are the positions of the wnid folders in sorted order, which for the full 1000 classes is
the standard ImageNet class index.
"""

from __future__ import annotations

from pathlib import Path

from realdata.data.base import LoadRequest, TargetSplits, missing_layout_error, per_class_split
from realdata.data.corruptions import require_corruption
from realdata.data.image_files import ImageFiles, ResizeCenterCrop, list_images
from realdata.data.layout import LAYOUTS, require_dir, require_nonempty_dir

__all__ = ["IMAGENETC_DIR", "load_imagenetc"]

IMAGENETC_DIR = "ImageNet-C"


def load_imagenetc(request: LoadRequest) -> TargetSplits:
    """ImageNet-C target splits for corruption ``request.variant`` at ``request.severity``."""
    layout = LAYOUTS["imagenetc"]
    name = require_corruption(request.variant, "imagenetc")
    root = require_dir(Path(request.data_root) / IMAGENETC_DIR, "ImageNet-C folder", layout)
    sev_dir = require_dir(root / name / str(request.severity),
                          f"ImageNet-C {name}/{request.severity} folder", layout)  # fmt: skip
    class_dirs = require_nonempty_dir(sev_dir, f"ImageNet-C {name}/{request.severity}", layout)
    paths: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        files = list_images(d)
        if not files:
            raise missing_layout_error("no images in ImageNet-C class folder", d, layout)
        paths += files
        labels += [label] * len(files)
    k = len(class_dirs)
    pool = ImageFiles(paths, labels, transform=ResizeCenterCrop(request.image_size, 1.0))
    sp = per_class_split(labels, train_per_class=request.train_n // k,
                         val_per_class=request.val_per_class,
                         test_per_class=request.test_per_class, seed=request.seed,
                         num_classes=k)  # fmt: skip
    info = {"source": "published ImageNet-C", "corruption": name, "severity": request.severity,
            "num_classes_found": k}  # fmt: skip
    return TargetSplits(pool.subset(sp.train), pool.subset(sp.val), pool.subset(sp.test),
                        num_classes=k, info=info)  # fmt: skip
