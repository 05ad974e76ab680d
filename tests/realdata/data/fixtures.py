"""Tiny datasets in exactly the published on-disk layouts, built under a temporary folder.

Images carry their class in their colour so that a model can learn something in a few steps.
"""

from __future__ import annotations

import csv
import itertools
import json
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from realdata.data.wilds import camelyon_patch_path
from tests.realdata.conftest import TINY


def class_images(labels: Sequence[int], size: int, seed: int, k: int = 10) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 images whose mean colour depends on the label."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    hue = np.stack([np.cos(2 * np.pi * labels / k), np.sin(2 * np.pi * labels / k),
                    np.cos(4 * np.pi * labels / k)], axis=1)  # fmt: skip
    base = 128 + 80 * hue[:, None, None, :]
    noise = rng.normal(0, 30, size=(len(labels), size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _save(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def make_cifar10(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/{data_batch_1..5,test_batch}`` (train batches: 2 per class)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [*((f"data_batch_{i}", 2) for i in range(1, 6)), ("test_batch", per_class)]:
        labels = np.repeat(np.arange(10), n)
        np.random.default_rng(seed).shuffle(labels)
        imgs = class_images(labels, 32, seed)
        data = imgs.transpose(0, 3, 1, 2).reshape(len(labels), 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels.tolist(), b"batch_label": name.encode()},
                        f)  # fmt: skip
    return root


def make_cifar10c(root: Path, corruptions: Sequence[str], per_class: int = 40, seed: int = 0) -> Path:
    """``root/CIFAR-10-C/<corruption>.npy`` (5 severities) and ``labels.npy``."""
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.repeat(np.arange(10), per_class)
    np.random.default_rng(seed).shuffle(labels)
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    for i, c in enumerate(corruptions):
        blocks = [class_images(labels, 32, seed + 10 * i + s) for s in range(5)]
        np.save(folder / f"{c}.npy", np.concatenate(blocks))
    return root


def make_imagenet_c(root: Path, corruptions: Sequence[str], severities: Sequence[int] = (5,),
                    wnids: Sequence[str] = ("n01440764", "n01443537", "n01484850"),
                    per_class: int = 8, size: int = 24) -> Path:  # fmt: skip
    """``root/ImageNet-C/<corruption>/<severity>/<wnid>/*.JPEG``."""
    for c in corruptions:
        for s in severities:
            for k, w in enumerate(wnids):
                imgs = class_images([k] * per_class, size, s, k=len(wnids))
                for j, im in enumerate(imgs):
                    _save(im, root / "ImageNet-C" / c / str(s) / w / f"ILSVRC2012_val_{k:04d}{j:04d}.JPEG")
    return root


def toy_breeds_info(folder: Path) -> Path:
    """A toy BREEDS hierarchy satisfying the Living-17 and Entity-30 definitions.

    Living-17 (level 5 under n00004258, >= 4 leaves): superclasses ``n10000001`` (4 leaves) and
    ``n10000002`` (6 leaves under two children that share one leaf, so the pool lists it twice);
    ``n10000003`` has 3 leaves and is dropped. A shortcut edge n00004258 -> n30000003 makes two
    paths of different lengths (the level is the longest). Entity-30 (level 4, >= 8 leaves):
    ``n20000001`` (9 leaves under 3 children), ``n20000002`` (8 leaves, reached through a
    single-child chain) and the living node ``n30000003`` (12 leaves).
    """
    edges: list[tuple[str, str]] = []
    leaves: list[str] = []

    def leaf() -> str:
        w = f"n0{len(leaves) + 1:07d}"
        leaves.append(w)
        return w

    chain = ["n00001740", "n00004258", "n30000001", "n30000002", "n30000003"]
    edges += [*itertools.pairwise(chain), ("n00004258", "n30000003")]
    edges.append((chain[-1], "n10000001"))
    edges += [("n10000001", leaf()) for _ in range(4)]
    edges += [(chain[-1], "n10000002"), ("n10000002", "n50000001"), ("n10000002", "n50000002")]
    edges += [("n50000001", leaf()) for _ in range(2)]
    shared = leaf()  # sorts third: the pool is [5, 6, 7, 7, 8, 9, 10]
    edges += [("n50000001", shared), ("n50000002", shared)]
    edges += [("n50000002", leaf()) for _ in range(3)]
    edges.append((chain[-1], "n10000003"))
    edges += [("n10000003", leaf()) for _ in range(3)]
    chain2 = ["n00001740", "n30000011", "n30000012", "n30000013"]
    edges += list(itertools.pairwise(chain2))
    edges += [(chain2[-1], "n20000001"), (chain2[-1], "n20000002")]
    for k in ("n40000001", "n40000002", "n40000003"):
        edges.append(("n20000001", k))
        edges += [(k, leaf()) for _ in range(3)]
    edges += [("n20000002", "n40000010"), ("n40000010", "n40000011")]
    edges += [("n40000011", k) for k in ("n40000012", "n40000013")]
    edges += [("n40000012", leaf()) for _ in range(4)] + [("n40000013", leaf()) for _ in range(4)]
    edges.append(("n00001740", "n99999999"))  # above no leaf: pruned
    folder.mkdir(parents=True, exist_ok=True)
    info = [[i, w, f"leaf {i}"] for i, w in enumerate(sorted(leaves))]
    (folder / "dataset_class_info.json").write_text(json.dumps(info))
    (folder / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in edges))
    inner = sorted({p for p, _ in edges} | {c for _, c in edges} - set(leaves))
    (folder / "node_names.txt").write_text("".join(f"{w}\tnode {w}\n" for w in inner))
    return folder


def make_imagenet_folders(root: Path, wnids: Sequence[str], train_per_class: int = 6,
                          val_per_class: int = 3, size: int = 40) -> Path:  # fmt: skip
    """``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG``."""
    for k, w in enumerate(wnids):
        for split, n in (("train", train_per_class), ("val", val_per_class)):
            for j, im in enumerate(class_images([k % 7] * n, size, k, k=7)):
                _save(im, root / split / w / f"{w}_{j}.JPEG")
    return root


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _grouped_images(per_group: Sequence[int], size: int):
    """Yield ``(index, split, y, attribute, image)``: ``per_group[s]`` images of each of the 4
    groups ``2*y + attribute`` in split ``s``."""
    i = 0
    for split, n in enumerate(per_group):
        for y in (0, 1):
            for a in (0, 1):
                for im in class_images([2 * y + a] * n, size, i, k=4):
                    i += 1
                    yield i, split, y, a, im


def make_waterbirds(root: Path, per_group: Sequence[int] = (8, 8, 8), size: int = 28) -> Path:
    """``root/waterbirds_v1.0/metadata.csv`` + images; ``per_group[s]`` images per group in
    split ``s`` (0 train, 1 val, 2 test)."""
    folder = root / "waterbirds_v1.0"
    rows = []
    for i, split, y, place, im in _grouped_images(per_group, size):
        name = f"{100 + y:03d}.Bird_{y}/Bird_{y}_{i:04d}.jpg"
        _save(im, folder / name)
        rows.append([i, name, y, split, place, f"place/{place}/{i}.jpg"])
    header = ["img_id", "img_filename", "y", "split", "place", "place_filename"]
    _write_csv(folder / "metadata.csv", header, rows)
    return root


def make_celeba(root: Path, per_group: Sequence[int] = (8, 8, 8), size: int = 36) -> Path:
    """``root/celebA_v1.0/{list_attr_celeba.csv, list_eval_partition.csv, img_align_celeba/}``."""
    folder = root / "celebA_v1.0"
    attrs, parts = [], []
    for i, split, y, male, im in _grouped_images(per_group, size):
        name = f"{i:06d}.jpg"
        _save(im, folder / "img_align_celeba" / name)
        attrs.append([name, -1, 2 * y - 1, 1, 2 * male - 1])
        parts.append([name, split])
    header = ["image_id", "5_o_Clock_Shadow", "Blond_Hair", "Young", "Male"]
    _write_csv(folder / "list_attr_celeba.csv", header, attrs)
    _write_csv(folder / "list_eval_partition.csv", ["image_id", "partition"], parts)
    return root


def make_camelyon17(root: Path, per_class: int = 16, size: int = 24) -> Path:
    """``root/camelyon17_v1.0/metadata.csv`` + ``patches/...png`` (centers 0 and 2)."""
    folder = root / "camelyon17_v1.0"
    rows = []
    i = 0
    for center, patient, node in ((0, 4, 4), (2, 51, 2)):
        for tumor in (0, 1):
            for im in class_images([tumor] * per_class, size, i, k=2):
                x, yy = 32 * i, 64 * i
                i += 1
                _save(im, camelyon_patch_path(folder, patient, node, x, yy))
                rows.append([i, patient, node, x, yy, tumor, 10 * patient + node, center,
                             0 if center == 0 else 1])  # fmt: skip
    _write_csv(folder / "metadata.csv", ["", "patient", "node", "x_coord", "y_coord", "tumor",
                                         "slide", "center", "split"], rows)  # fmt: skip
    return root


#: Country codes of the FMoW fixture: one per WILDS region, and one with no region ("Other").
FMOW_COUNTRIES = {"NGA": "Africa", "BRA": "Americas", "IND": "Asia", "FRA": "Europe",
                  "AUS": "Oceania"}


def make_fmow(root: Path, size: int = 16) -> Path:
    """``root/fmow_v1.1/{rgb_metadata.csv, country_code_mapping.csv, images/rgb_img_<i>.png}``.

    Per class (62): 3 OOD-val images (2014, split val), 2 OOD-test (2017; one stamped
    2015-12-31T23:30-05:00, i.e. 2016 in UTC), and distractors the reader must skip: a source
    training image (2010), an ID-val image (2012, split val), a sequestered one (2017, seq), an
    OOD-test image from a country with no region ("Other")."""
    from realdata.data.fmow import FMOW_CATEGORIES, fmow_image_path

    folder = root / "fmow_v1.1"
    codes = list(FMOW_COUNTRIES)
    rows: list[list[object]] = []
    kinds = (("val", "2014-06-01T10:00:00Z"), ("val", "2015-03-02T10:00:00Z"),
             ("val", "2013-01-01T00:00:01Z"), ("test", "2017-05-05T12:00:00Z"),
             ("test", "2015-12-31T23:30:00-05:00"), ("train", "2010-01-01T00:00:00Z"),
             ("val", "2012-12-31T23:00:00Z"), ("seq", "2017-01-01T00:00:00Z"),
             ("test", "2016-08-08T08:00:00Z"))
    for c, cat in enumerate(FMOW_CATEGORIES):
        imgs = class_images([c] * len(kinds), size, c, k=len(FMOW_CATEGORIES))
        for j, ((split, stamp), im) in enumerate(zip(kinds, imgs)):
            country = "ZZZ" if j == len(kinds) - 1 else codes[(c + j) % len(codes)]
            _save(im, fmow_image_path(folder, len(rows)))
            rows.append([split, f"{cat}_{c}_{j}.jpg", f"train/{cat}/{cat}_{c}/{cat}_{c}_{j}.jpg",
                         "", "EPSG:4326", cat, "True", size, size, country, 0, stamp,
                         "POINT (0 0)"])
    _write_csv(folder / "rgb_metadata.csv",
               ["split", "img_filename", "img_path", "spatial_reference", "epsg", "category",
                "visible", "img_width", "img_height", "country_code", "cloud_cover", "timestamp",
                "lat_lon"], rows)
    _write_csv(folder / "country_code_mapping.csv", ["name", "alpha-2", "alpha-3", "region"],
               [[f"country {a}", a[:2], a, r] for a, r in FMOW_COUNTRIES.items()])
    return root


#: Tiny backbone options per backbone name (the engine tests' tiny versions).
TINY_BACKBONE: dict[str, dict] = {name: kw for name, (kw, _side) in TINY.items()}

#: Per task: protocol knobs that fit the fixture (few images per class).
FIXTURE_PROTOCOL: dict[str, dict] = {
    "cifar10c": {"train_n": 20, "val_per_class": 2, "test_per_class": 3, "image_size": 32},
    "cifarflip": {"train_n": 20, "val_per_class": 2, "test_per_class": 3, "image_size": 32},
    "imagenetc": {"train_n": 6, "val_per_class": 2, "test_per_class": 2, "image_size": 32},
    "living17": {"train_n": 4, "val_per_class": 2, "test_per_class": 2, "image_size": 32},
    "entity30": {"train_n": 6, "val_per_class": 2, "test_per_class": 2, "image_size": 32},
    "waterbirds": {"train_n": 8, "val_per_class": 2, "test_per_class": 2, "image_size": 32},
    "celeba": {"train_n": 8, "val_per_class": 2, "test_per_class": 2, "image_size": 32},
    "camelyon17": {"train_n": 8, "val_per_class": 2, "test_per_class": 3, "image_size": 32},
    "fmow": {"train_n": 62, "val_per_class": 1, "test_per_class": 1, "image_size": 32},
}


def build_task_fixture(task: str, root: Path) -> dict:
    """Write the fixture of ``task`` under ``root``.

    Returns:
        ``{"data_root": Path, "variant": str | None, "extra": dict}`` (``extra`` holds
        ``breeds_info`` for the BREEDS tasks).
    """
    from realdata.data.breeds import breeds_split, load_hierarchy

    out: dict = {"data_root": root, "variant": None, "extra": {}}
    if task == "cifar10c":
        make_cifar10c(root, ["gaussian_noise"], per_class=8)
        out["variant"] = "gaussian_noise"
    elif task == "cifarflip":
        make_cifar10(root, per_class=8)
    elif task == "imagenetc":
        make_imagenet_c(root, ["gaussian_noise"], per_class=6)
        out["variant"] = "gaussian_noise"
    elif task in ("living17", "entity30"):
        info = toy_breeds_info(root / "breeds_info")
        hier = load_hierarchy(info)
        level, n = (5, 4) if task == "living17" else (4, 8)
        anc = "n00004258" if task == "living17" else None
        split = breeds_split(hier, level, n, ancestor=anc)
        wnids = sorted({w for grp in split.target_wnids for w in grp})
        make_imagenet_folders(root, wnids, train_per_class=3, val_per_class=2, size=36)
        out["extra"] = {"breeds_info": info}
    elif task == "waterbirds":
        make_waterbirds(root, per_group=(2, 5, 3))
    elif task == "celeba":
        make_celeba(root, per_group=(2, 5, 3))
    elif task == "camelyon17":
        make_camelyon17(root, per_class=10)
    elif task == "fmow":
        make_fmow(root)
    else:
        raise ValueError(f"no fixture for task {task!r}")
    return out
