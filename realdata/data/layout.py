"""Expected on-disk layouts of the published datasets, and checks that print them when wrong.

Every reader calls these checks before touching any data, so a wrong ``--data-root`` fails fast
with a :class:`~realdata.data.base.DatasetLayoutError` (a ``ValueError``) whose message shows the
expected tree under the given root. :data:`LAYOUTS` is also what the README documents.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path

from realdata.data.base import DatasetLayoutError, missing_layout_error

__all__ = [
    "LAYOUTS",
    "csv_header",
    "layout_for",
    "require_columns",
    "require_dir",
    "require_file",
    "require_nonempty_dir",
]

_CIFAR10 = """\
<data-root>/
  cifar-10-batches-py/                 (the python version of CIFAR-10)
    data_batch_1 ... data_batch_5      python pickles: b'data' uint8 (10000, 3072), b'labels'
    test_batch                         same format; the target images come from here"""

_CIFAR10C = """\
<data-root>/
  CIFAR-10-C/
    labels.npy                         (50000,) uint8: the test labels, once per severity
    <corruption>.npy                   (50000, 32, 32, 3) uint8; severity s = rows (s-1)*10000 ...
                                       s*10000 - 1; corruption in the 15 standard + 4 extra names
  (no published copy? generate one from cifar-10-batches-py/test_batch:
   python -m realdata.make_corrupted --data-root <data-root>)"""

_IMAGENETC = """\
<data-root>/
  ImageNet-C/
    <corruption>/                      gaussian_noise, shot_noise, ... (15 standard + 4 extra)
      <severity>/                      1 .. 5
        <wnid>/                        n01440764, ... (classes; labels = sorted wnid order)
          *.JPEG"""

_BREEDS = """\
<data-root>/                           ImageNet (ILSVRC-2012) in class folders
  train/<wnid>/*.JPEG                  target-subpopulation train + val examples come from here
  val/<wnid>/*.JPEG                    target-subpopulation test examples
--breeds-info DIR (default <data-root>/breeds_info/), from MadryLab/BREEDS-Benchmarks
  imagenet_class_hierarchy/modified/:
  DIR/dataset_class_info.json          [[class_index, wnid, name], ...] for the 1000 classes
  DIR/class_hierarchy.txt              'parent_wnid child_wnid' per line
  DIR/node_names.txt                   'wnid<TAB>name' per line"""

_WATERBIRDS = """\
<data-root>/
  waterbirds_v1.0/                     (WILDS layout)
    metadata.csv                       columns img_filename, y, place, split (0 train, 1 val, 2 test)
    <img_filename>                     e.g. 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"""

_CELEBA = """\
<data-root>/
  celebA_v1.0/                         (WILDS layout)
    list_attr_celeba.csv               image_id, 40 attributes in {-1, 1} (Blond_Hair, Male, ...)
    list_eval_partition.csv            image_id, partition (0 train, 1 val, 2 test)
    img_align_celeba/<image_id>        e.g. 000001.jpg"""

_CAMELYON17 = """\
<data-root>/
  camelyon17_v1.0/                     (WILDS layout)
    metadata.csv                       columns patient, node, x_coord (or x), y_coord (or y), tumor,
                                       center, split
    patches/patient_<PPP>_node_<N>/patch_patient_<PPP>_node_<N>_x_<X>_y_<Y>.png
                                       (PPP: patient zero-padded to 3 digits)"""

_FMOW = """\
<data-root>/
  fmow_v1.1/                           (WILDS layout)
    rgb_metadata.csv                   columns split (train|val|test|seq), category (62 names),
                                       country_code (alpha-3), timestamp (ISO 8601), ...
    country_code_mapping.csv           columns alpha-3, region (Africa|Americas|Asia|Europe|Oceania)
    images/rgb_img_<i>.png             i = 0-based row of rgb_metadata.csv (224x224 RGB)"""

#: Expected tree per task name (the ``--task`` values).
LAYOUTS: Mapping[str, str] = {
    "cifar10c": _CIFAR10C,
    "cifarflip": _CIFAR10,
    "imagenetc": _IMAGENETC,
    "living17": _BREEDS,
    "entity30": _BREEDS,
    "waterbirds": _WATERBIRDS,
    "celeba": _CELEBA,
    "camelyon17": _CAMELYON17,
    "fmow": _FMOW,
}


def layout_for(task: str) -> str:
    """The expected tree of ``task``; ``ValueError`` for an unknown task."""
    if task not in LAYOUTS:
        raise ValueError(f"no published layout for task {task!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[task]


def require_dir(path: Path, what: str, layout: str) -> Path:
    """Return ``path`` if it is a directory, else raise the layout error."""
    if not Path(path).is_dir():
        raise missing_layout_error(f"{what} not found (no such folder)", path, layout)
    return Path(path)


def require_file(path: Path, what: str, layout: str) -> Path:
    """Return ``path`` if it is a regular file, else raise the layout error."""
    if not Path(path).is_file():
        raise missing_layout_error(f"{what} not found (no such file)", path, layout)
    return Path(path)


def require_nonempty_dir(path: Path, what: str, layout: str) -> list[Path]:
    """The sorted sub-folders of ``path``; raise the layout error if there are none."""
    require_dir(path, what, layout)
    subdirs = sorted(p for p in Path(path).iterdir() if p.is_dir())
    if not subdirs:
        raise missing_layout_error(f"{what} has no sub-folders", path, layout)
    return subdirs


def csv_header(path: Path) -> list[str]:
    """The first row of a CSV file (column names, stripped)."""
    with open(path, newline="") as f:
        row = next(csv.reader(f), [])
    return [c.strip() for c in row]


def require_columns(path: Path, columns: Iterable[str], what: str, layout: str) -> list[str]:
    """Check that CSV ``path`` exists and has ``columns``; return its header."""
    require_file(path, what, layout)
    header = csv_header(path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetLayoutError(
            f"{what} {path} lacks columns {missing} (has {header})\n"
            f"expected layout under --data-root:\n{layout}"
        )
    return header
