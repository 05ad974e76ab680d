"""The dataset interface: per-class splits, TensorImages, TargetSplits/LoadRequest validation."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from realdata.data.base import (
    DatasetLayoutError,
    LabeledImages,
    LoadRequest,
    TargetSplits,
    TensorImages,
    missing_layout_error,
    per_class_split,
)


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(2, 6),
    extra=st.integers(0, 5),
    tr=st.integers(0, 4),
    va=st.integers(0, 3),
    te=st.one_of(st.none(), st.integers(1, 3)),
    seed=st.integers(0, 2**31 - 1),
)
def test_per_class_split_counts_disjoint_deterministic(k, extra, tr, va, te, seed):
    n_per = tr + va + (te or 1) + extra
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(k), n_per))
    s = per_class_split(labels, train_per_class=tr, val_per_class=va, test_per_class=te, seed=seed)
    for part, want in ((s.train, tr), (s.val, va)):
        assert np.bincount(labels[part], minlength=k).tolist() == [want] * k
    test_counts = np.bincount(labels[s.test], minlength=k)
    assert test_counts.tolist() == [te if te is not None else n_per - tr - va] * k
    allidx = np.concatenate([s.train, s.val, s.test])
    assert len(np.unique(allidx)) == len(allidx)
    s2 = per_class_split(labels, train_per_class=tr, val_per_class=va, test_per_class=te, seed=seed)
    assert all(np.array_equal(a, b) for a, b in zip((s.train, s.val, s.test),
                                                   (s2.train, s2.val, s2.test)))


def test_per_class_split_seed_changes_split():
    labels = np.repeat(np.arange(3), 50)
    a = per_class_split(labels, train_per_class=5, val_per_class=5, test_per_class=5, seed=0)
    b = per_class_split(labels, train_per_class=5, val_per_class=5, test_per_class=5, seed=1)
    assert not np.array_equal(a.train, b.train)


def test_per_class_split_too_few_raises():
    labels = np.repeat(np.arange(2), 5)
    with pytest.raises(ValueError, match="class 0 has 5 examples"):
        per_class_split(labels, train_per_class=4, val_per_class=1, test_per_class=1, seed=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\)"):
        per_class_split(labels, train_per_class=1, val_per_class=1, test_per_class=1, seed=0,
                        num_classes=1)


def test_tensor_images_protocol_and_uint8():
    imgs = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    ds = TensorImages(imgs, [0, 1, 0, 1])
    assert isinstance(ds, LabeledImages)
    x, y, g = ds[1]
    assert x.dtype == torch.float32 and x.shape == (3, 8, 8)
    assert torch.equal(x, imgs[1].float() / 255)
    assert (y, g) == (1, -1)
    sub = ds.subset([3])
    assert len(sub) == 1 and sub[0][1] == 1
    with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\)"):
        TensorImages(torch.zeros(4, 8, 8), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="labels must have shape"):
        TensorImages(torch.zeros(4, 3, 8, 8), [0, 1])


def test_target_splits_rejects_empty_split():
    ok = TensorImages(torch.zeros(2, 3, 8, 8), [0, 1])
    empty = TensorImages(torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.long))
    TargetSplits(ok, ok, ok, num_classes=2)
    with pytest.raises(ValueError, match="the val split is empty"):
        TargetSplits(ok, empty, ok, num_classes=2)


def test_load_request_validation_and_layout_error():
    with pytest.raises(ValueError, match=r"severity must be in 1\.\.5"):
        LoadRequest(Path("."), severity=6)
    err = missing_layout_error("CIFAR-10-C folder not found", "/x", "CIFAR-10-C/\n  labels.npy")
    assert isinstance(err, DatasetLayoutError) and isinstance(err, ValueError)
    assert "expected layout" in str(err) and "labels.npy" in str(err)
