"""Waterbirds, CelebA and Camelyon17 in the WILDS layouts (metadata CSV + images), lazily decoded.

Tasks registered here (ResNet-50):

* ``waterbirds`` (output-level / spurious): label ``y`` (waterbird), group ``2*y + place``. The
  source is the spuriously correlated training split; the target is group-balanced: train and
  val examples are drawn per group from the WILDS validation split (``split == 1``), and the test
  examples are the WILDS test split (``split == 2``). Metric: worst-group accuracy (groups kept).
* ``celeba`` (output-level / spurious): label Blond_Hair, group ``2*y + Male``, partitions from
  ``list_eval_partition.csv``; same group-balanced target construction as Waterbirds. Images are
  centre-cropped to 178 px and resized, as in the Group DRO code.
* ``camelyon17`` (natural shift): training hospitals -> the held-out hospital. Target examples are
  the patches of WILDS's test hospital (``center == 2``), split per class (tumor / normal).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from realdata.data.base import DatasetLayoutError, LoadRequest, TargetSplits, per_class_split
from realdata.data.image_files import ImageFiles, ResizeCenterCrop
from realdata.data.layout import LAYOUTS, require_columns, require_dir, require_file

__all__ = [
    "CAMELYON_DIR",
    "CAMELYON_TARGET_CENTER",
    "CELEBA_DIR",
    "WATERBIRDS_DIR",
    "camelyon_patch_path",
    "load_camelyon17",
    "load_celeba",
    "load_waterbirds",
    "read_csv_columns",
]

WATERBIRDS_DIR = "waterbirds_v1.0"
CELEBA_DIR = "celebA_v1.0"
CAMELYON_DIR = "camelyon17_v1.0"
CAMELYON_TARGET_CENTER = 2


def read_csv_columns(path: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    """The named columns of a CSV file with a header row, as lists of strings."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        out: dict[str, list[str]] = {c: [] for c in columns}
        for row in reader:
            for c in columns:
                out[c].append((row.get(c) or "").strip())
    return out


def _ints(values: Sequence[str], path: Path, column: str, layout: str) -> np.ndarray:
    try:
        return np.asarray([int(float(v)) for v in values], dtype=np.int64)
    except ValueError as exc:
        raise DatasetLayoutError(f"{path}: column {column!r} must hold integers ({exc})\n"
                                 f"expected layout under --data-root:\n{layout}") from exc  # fmt: skip


def _check_images_exist(paths: Sequence[Path], what: str, layout: str) -> None:
    """Fail fast (with the layout) if the first listed image is missing (cheap spot check)."""
    if paths and not Path(paths[0]).is_file():
        raise DatasetLayoutError(f"{what} image not found: {paths[0]}\n"
                                 f"expected layout under --data-root:\n{layout}")  # fmt: skip


def _group_balanced(
    request: LoadRequest,
    paths: list[Path],
    labels: np.ndarray,
    groups: np.ndarray,
    split: np.ndarray,
    *,
    num_groups: int,
    transform: ResizeCenterCrop,
    info: dict,
) -> TargetSplits:
    """Group-balanced target: train/val per group from ``split == 1``, test from ``split == 2``."""
    pool = ImageFiles(paths, labels, groups, transform=transform)
    val_rows = np.flatnonzero(split == 1)
    test_rows = np.flatnonzero(split == 2)
    sp = per_class_split(groups[val_rows], train_per_class=request.train_n // num_groups,
                         val_per_class=request.val_per_class, test_per_class=0,
                         seed=request.seed, num_classes=num_groups)  # fmt: skip
    if request.test_per_class is not None:
        te = per_class_split(groups[test_rows], train_per_class=0, val_per_class=0,
                             test_per_class=request.test_per_class, seed=request.seed,
                             num_classes=num_groups)  # fmt: skip
        test_rows = test_rows[te.test]
    return TargetSplits(pool.subset(val_rows[sp.train]), pool.subset(val_rows[sp.val]),
                        pool.subset(test_rows), num_classes=2, num_groups=num_groups,
                        info=info)  # fmt: skip


def load_waterbirds(request: LoadRequest) -> TargetSplits:
    """Waterbirds group-balanced target splits (groups ``2*y + place``)."""
    layout = LAYOUTS["waterbirds"]
    root = require_dir(Path(request.data_root) / WATERBIRDS_DIR, "Waterbirds folder", layout)
    meta = root / "metadata.csv"
    require_columns(meta, ("img_filename", "y", "place", "split"), "Waterbirds metadata", layout)
    cols = read_csv_columns(meta, ("img_filename", "y", "place", "split"))
    y = _ints(cols["y"], meta, "y", layout)
    place = _ints(cols["place"], meta, "place", layout)
    split = _ints(cols["split"], meta, "split", layout)
    paths = [root / f for f in cols["img_filename"]]
    _check_images_exist(paths, "Waterbirds", layout)
    info = {"source": "WILDS Waterbirds; target = group-balanced val (train/val), test split",
            "groups": "2*y + place"}  # fmt: skip
    return _group_balanced(request, paths, y, 2 * y + place, split, num_groups=4,
                           transform=ResizeCenterCrop(request.image_size), info=info)  # fmt: skip


def load_celeba(request: LoadRequest) -> TargetSplits:
    """CelebA group-balanced target splits (label Blond_Hair, groups ``2*y + Male``)."""
    layout = LAYOUTS["celeba"]
    root = require_dir(Path(request.data_root) / CELEBA_DIR, "CelebA folder", layout)
    attrs = root / "list_attr_celeba.csv"
    parts = root / "list_eval_partition.csv"
    require_columns(attrs, ("image_id", "Blond_Hair", "Male"), "CelebA attributes", layout)
    require_columns(parts, ("image_id", "partition"), "CelebA partition file", layout)
    img_dir = require_dir(root / "img_align_celeba", "CelebA img_align_celeba folder", layout)
    a = read_csv_columns(attrs, ("image_id", "Blond_Hair", "Male"))
    p = read_csv_columns(parts, ("image_id", "partition"))
    part = dict(zip(p["image_id"], p["partition"]))
    missing = [i for i in a["image_id"][:5] if i not in part]
    if missing:
        raise DatasetLayoutError(f"{parts} lacks image ids {missing} listed in {attrs}\n"
                                 f"expected layout under --data-root:\n{layout}")  # fmt: skip
    y = (_ints(a["Blond_Hair"], attrs, "Blond_Hair", layout) > 0).astype(np.int64)
    male = (_ints(a["Male"], attrs, "Male", layout) > 0).astype(np.int64)
    split = _ints([part.get(i, "-1") for i in a["image_id"]], parts, "partition", layout)
    paths = [img_dir / i for i in a["image_id"]]
    _check_images_exist(paths, "CelebA", layout)
    info = {"source": "WILDS CelebA; target = group-balanced val (train/val), test partition",
            "label": "Blond_Hair", "groups": "2*y + Male"}  # fmt: skip
    tfm = ResizeCenterCrop(request.image_size, 1.0, pre_crop=178)
    return _group_balanced(request, paths, y, 2 * y + male, split, num_groups=4,
                           transform=tfm, info=info)  # fmt: skip


def camelyon_patch_path(root: Path, patient: int, node: int, x: int, y: int) -> Path:
    """Path of one Camelyon17 patch in the WILDS layout."""
    folder = f"patient_{patient:03d}_node_{node}"
    return root / "patches" / folder / f"patch_{folder}_x_{x}_y_{y}.png"


def load_camelyon17(request: LoadRequest) -> TargetSplits:
    """Camelyon17 target splits: patches of the held-out hospital, per class (tumor)."""
    layout = LAYOUTS["camelyon17"]
    root = require_dir(Path(request.data_root) / CAMELYON_DIR, "Camelyon17 folder", layout)
    meta = require_file(root / "metadata.csv", "Camelyon17 metadata.csv", layout)
    header = require_columns(meta, ("patient", "node", "tumor", "center"), "Camelyon17 metadata",
                             layout)  # fmt: skip
    xc = "x_coord" if "x_coord" in header else "x"
    yc = "y_coord" if "y_coord" in header else "y"
    require_columns(meta, (xc, yc), "Camelyon17 metadata", layout)
    cols = read_csv_columns(meta, ("patient", "node", xc, yc, "tumor", "center"))
    ints = {c: _ints(v, meta, c, layout) for c, v in cols.items()}
    rows = np.flatnonzero(ints["center"] == CAMELYON_TARGET_CENTER)
    if rows.size == 0:
        raise DatasetLayoutError(f"{meta} has no patch from the target hospital (center "
                                 f"{CAMELYON_TARGET_CENTER})\nexpected layout under --data-root:\n"
                                 f"{layout}")  # fmt: skip
    paths = [camelyon_patch_path(root, ints["patient"][i], ints["node"][i], ints[xc][i],
                                 ints[yc][i]) for i in rows]  # fmt: skip
    _check_images_exist(paths, "Camelyon17", layout)
    labels = ints["tumor"][rows]
    pool = ImageFiles(paths, labels, transform=ResizeCenterCrop(request.image_size, 1.0))
    sp = per_class_split(labels, train_per_class=request.train_n // 2,
                         val_per_class=request.val_per_class,
                         test_per_class=request.test_per_class, seed=request.seed,
                         num_classes=2)  # fmt: skip
    info = {"source": f"WILDS Camelyon17; target = hospital {CAMELYON_TARGET_CENTER}"}
    return TargetSplits(pool.subset(sp.train), pool.subset(sp.val), pool.subset(sp.test),
                        num_classes=2, info=info)  # fmt: skip
