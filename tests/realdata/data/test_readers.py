"""CIFAR-10 / CIFAR-10-C / CIFAR-Flip / ImageNet-C / WILDS readers on tiny published-layout fixtures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from realdata.data import cifar, imagenet_c, wilds
from realdata.data.base import DatasetLayoutError, LoadRequest, TargetSplits
from realdata.data.layout import LAYOUTS, layout_for
from realdata.tasks import get_task
from tests.realdata.data.fixtures import (
    make_camelyon17,
    make_celeba,
    make_cifar10,
    make_cifar10c,
    make_imagenet_c,
    make_waterbirds,
)


def _check_items(ts: TargetSplits, size: int, k: int) -> None:
    for ds in (ts.train, ts.val, ts.test):
        img, label, group = ds[0]
        assert img.dtype == torch.float32 and img.shape == (3, size, size)
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
        assert 0 <= label < k and isinstance(group, int)


def _labels(ds) -> np.ndarray:
    return np.asarray([ds[i][1] for i in range(len(ds))])


# ------------------------------------------------------------------------------ CIFAR


def test_cifar10c_split_counts_severity_block_and_memmap(tmp_path):
    root = make_cifar10c(tmp_path, ["gaussian_noise", "fog"], per_class=20)
    req = LoadRequest(data_root=root, variant="fog", severity=3, train_n=50, val_per_class=4,
                      test_per_class=6, seed=0)  # fmt: skip
    ts = cifar.load_cifar10c(req)
    assert (len(ts.train), len(ts.val), len(ts.test)) == (50, 40, 60)
    assert ts.num_classes == 10 and ts.info["source"] == "published CIFAR-10-C"
    assert ts.info["corruption"] == "fog" and ts.info["severity"] == 3
    for ds, n in ((ts.train, 5), (ts.val, 4), (ts.test, 6)):
        assert np.bincount(_labels(ds), minlength=10).tolist() == [n] * 10
    _check_items(ts, 32, 10)
    # the images come from the severity-3 block of fog.npy, with matching labels
    arr = np.load(root / "CIFAR-10-C" / "fog.npy")
    lab = np.load(root / "CIFAR-10-C" / "labels.npy")
    block = arr[400:600]
    x = (ts.train.images[0].permute(1, 2, 0).numpy()).astype(np.uint8)
    rows = [i for i in range(200) if np.array_equal(block[i], x)]
    assert rows and lab[400 + rows[0]] == int(ts.train.labels[0])
    # disjoint splits, deterministic under the seed, different under another seed
    again = cifar.load_cifar10c(req)
    assert torch.equal(again.train.images, ts.train.images)
    other = cifar.load_cifar10c(dataclasses.replace(req, seed=1))
    assert not torch.equal(other.train.images, ts.train.images)


def test_cifar10c_resizes_and_validates(tmp_path):
    root = make_cifar10c(tmp_path, ["contrast"], per_class=20)
    req = LoadRequest(data_root=root, variant="contrast", train_n=20, val_per_class=2,
                      test_per_class=2, image_size=48)  # fmt: skip
    _check_items(cifar.load_cifar10c(req), 48, 10)
    with pytest.raises(ValueError, match="unknown corruption"):
        cifar.load_cifar10c(dataclasses.replace(req, variant="gaussian"))
    with pytest.raises(ValueError, match="needs a corruption"):
        cifar.load_cifar10c(dataclasses.replace(req, variant=None))
    with pytest.raises(DatasetLayoutError, match=r"fog\.npy") as e:
        cifar.load_cifar10c(dataclasses.replace(req, variant="fog"))
    assert "labels.npy" in str(e.value)
    np.save(root / "CIFAR-10-C" / "fog.npy", np.zeros((7, 32, 32, 3), np.uint8))
    with pytest.raises(DatasetLayoutError, match="shape"):
        cifar.load_cifar10c(dataclasses.replace(req, variant="fog"))


def test_cifarflip_labels_are_flipped(tmp_path):
    root = make_cifar10(tmp_path, per_class=12)
    req = LoadRequest(data_root=root, train_n=30, val_per_class=2, test_per_class=None, seed=3)
    ts = cifar.load_cifarflip(req)
    assert (len(ts.train), len(ts.val), len(ts.test)) == (30, 20, 70)
    images, labels = cifar.read_cifar10_test(root)
    # each returned image is a test image whose original label is 9 - the returned label
    for i in range(len(ts.train)):
        x = ts.train.images[i].permute(1, 2, 0).numpy()
        j = next(j for j in range(len(images)) if np.array_equal(images[j], x))
        assert int(ts.train.labels[i]) == 9 - labels[j]
    assert ts.info["label_map"] == "y' = 9 - y"


def test_cifar_pickle_errors(tmp_path):
    bad = tmp_path / "x"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a CIFAR-10 python pickle"):
        cifar.read_cifar_batch(bad)


@pytest.mark.parametrize("task", ["cifar10c", "cifarflip", "imagenetc", "living17", "entity30",
                                  "waterbirds", "celeba", "camelyon17", "fmow"])  # fmt: skip
def test_wrong_root_prints_layout(task, tmp_path):
    spec = get_task(task)
    assert spec.layout == layout_for(task)
    variant = spec.variants[0] if spec.variants else None
    with pytest.raises(ValueError) as e:
        spec.load(LoadRequest(data_root=tmp_path / "empty", variant=variant))
    msg = str(e.value)
    assert "expected layout under --data-root" in msg and LAYOUTS[task] in msg
    assert str(tmp_path / "empty") in msg


def test_registered_tasks():
    shifts = {"cifar10c": "input", "imagenetc": "input", "living17": "feature",
              "entity30": "feature", "cifarflip": "output", "waterbirds": "output",
              "celeba": "output", "camelyon17": "natural"}  # fmt: skip
    for name, shift in shifts.items():
        spec = get_task(name)
        assert spec.shift_level == shift
        assert spec.backbone == ("resnet26" if name.startswith("cifar") else "resnet50")
    assert get_task("waterbirds").metric == get_task("celeba").metric == "worst_group"
    assert len(get_task("cifar10c").variants) == 19
    assert get_task("cifar10c").protocol.epochs == 15 and get_task("living17").protocol.epochs == 10


# ------------------------------------------------------------------------- ImageNet-C


def test_imagenetc_reader(tmp_path):
    root = make_imagenet_c(tmp_path, ["snow"], severities=(5, 2), per_class=8)
    req = LoadRequest(data_root=root, variant="snow", severity=5, train_n=9, val_per_class=2,
                      test_per_class=3, image_size=24)  # fmt: skip
    ts = imagenet_c.load_imagenetc(req)
    assert ts.num_classes == 3 and (len(ts.train), len(ts.val), len(ts.test)) == (9, 6, 9)
    _check_items(ts, 24, 3)
    assert all("/snow/5/" in p for p in ts.train.paths)
    wnids = sorted({Path(p).parent.name for p in ts.test.paths})
    assert [Path(ts.test.paths[i]).parent.name for i in range(len(ts.test))] == [
        wnids[int(y)] for y in ts.test.labels
    ]
    s2 = imagenet_c.load_imagenetc(dataclasses.replace(req, severity=2))
    assert all("/snow/2/" in p for p in s2.train.paths)
    with pytest.raises(DatasetLayoutError, match="snow/4"):
        imagenet_c.load_imagenetc(dataclasses.replace(req, severity=4))
    with pytest.raises(DatasetLayoutError, match="fog/5"):
        imagenet_c.load_imagenetc(dataclasses.replace(req, variant="fog"))


# ------------------------------------------------------------------------------ WILDS


@pytest.mark.parametrize("maker,loader", [(make_waterbirds, wilds.load_waterbirds),
                                          (make_celeba, wilds.load_celeba)])  # fmt: skip
def test_group_balanced_readers(maker, loader, tmp_path):
    root = maker(tmp_path, per_group=(3, 8, 5))
    req = LoadRequest(data_root=root, train_n=12, val_per_class=2, test_per_class=None,
                      image_size=32, seed=0)  # fmt: skip
    ts = loader(req)
    assert ts.num_classes == 2 and ts.num_groups == 4
    assert (len(ts.train), len(ts.val), len(ts.test)) == (12, 8, 20)
    assert np.bincount(ts.train.groups, minlength=4).tolist() == [3, 3, 3, 3]
    assert np.bincount(ts.test.groups, minlength=4).tolist() == [5, 5, 5, 5]
    assert np.array_equal(ts.train.labels, ts.train.groups // 2)  # group = 2*y + attribute
    _check_items(ts, 32, 2)
    assert {ts.train[i][2] for i in range(len(ts.train))} == {0, 1, 2, 3}
    sub = loader(dataclasses.replace(req, test_per_class=2))
    assert np.bincount(sub.test.groups, minlength=4).tolist() == [2, 2, 2, 2]


def test_waterbirds_bad_metadata(tmp_path):
    root = make_waterbirds(tmp_path)
    meta = root / "waterbirds_v1.0" / "metadata.csv"
    meta.write_text("img_id,img_filename,y,split\n1,a.jpg,0,0\n")
    with pytest.raises(DatasetLayoutError, match="lacks columns") as e:
        wilds.load_waterbirds(LoadRequest(data_root=root))
    assert "place" in str(e.value) and "metadata.csv" in str(e.value)


def test_celeba_missing_images_folder(tmp_path):
    root = make_celeba(tmp_path)
    for p in (root / "celebA_v1.0" / "img_align_celeba").iterdir():
        p.unlink()
    (root / "celebA_v1.0" / "img_align_celeba").rmdir()
    with pytest.raises(DatasetLayoutError, match="img_align_celeba"):
        wilds.load_celeba(LoadRequest(data_root=root))


def test_camelyon17_reader(tmp_path):
    root = make_camelyon17(tmp_path, per_class=16)
    req = LoadRequest(data_root=root, train_n=8, val_per_class=3, test_per_class=5,
                      image_size=24)  # fmt: skip
    ts = wilds.load_camelyon17(req)
    assert (len(ts.train), len(ts.val), len(ts.test)) == (8, 6, 10)
    _check_items(ts, 24, 2)
    # only the target hospital's patches (patient 51 in the fixture), in the WILDS file names
    for p in ts.train.paths + ts.test.paths:
        assert "patches/patient_051_node_2/patch_patient_051_node_2_x_" in p
    meta = root / "camelyon17_v1.0" / "metadata.csv"
    meta.write_text(meta.read_text().replace(",2,1\n", ",0,1\n"))
    with pytest.raises(DatasetLayoutError, match="target hospital"):
        wilds.load_camelyon17(req)


def test_cifar10c_arrays_are_memory_mapped(tmp_path, monkeypatch):
    root = make_cifar10c(tmp_path, ["fog"], per_class=8)
    modes: dict[str, object] = {}
    real_load = np.load

    def spy(path, *args, **kwargs):
        modes[Path(path).name] = kwargs.get("mmap_mode")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(cifar.np, "load", spy)
    cifar.load_cifar10c(LoadRequest(data_root=root, variant="fog", train_n=10, val_per_class=1,
                                    test_per_class=1))  # fmt: skip
    assert modes["fog.npy"] == "r"
