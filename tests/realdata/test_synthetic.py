"""The built-in synthetic task: determinism, shift definitions, exact C1/C3 analogues, recovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from realdata.data.base import LoadRequest
from realdata.data.synthetic import (
    BACKBONE_KWARGS,
    CHANNEL_PERMUTATION,
    NUM_CLASSES,
    SOURCE_SUBPOPS,
    VARIANTS,
    label_permutation,
    load_synthetic,
    undo_channel_permutation,
    undo_label_permutation,
)
from realdata.models import build_backbone
from realdata.tasks import Protocol, get_task
from realdata.train import FinetuneConfig, evaluate, finetune, pretrain

SIDE = 16


def _req(variant, seed=0, train_n=40, **kw):
    return LoadRequest(Path("."), variant=variant, seed=seed, train_n=train_n, image_size=SIDE,
                       val_per_class=2, test_per_class=3, **kw)


def _model(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build_backbone("resnet26", NUM_CLASSES, **BACKBONE_KWARGS)


def test_registered_and_deterministic():
    spec = get_task("synthetic")
    assert spec.variants == VARIANTS and not spec.needs_data
    assert {spec.level_of(v) for v in VARIANTS} == {"input", "feature", "output"}
    a, b = load_synthetic(_req("input-noise")), load_synthetic(_req("input-noise"))
    assert torch.equal(a.train.images, b.train.images)
    c = load_synthetic(_req("input-noise", seed=1))
    assert not torch.equal(a.train.images, c.train.images)
    x = a.train.images
    assert x.dtype == torch.float32 and x.shape == (40, 3, SIDE, SIDE)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert np.bincount(a.train.labels.numpy()).tolist() == [4] * NUM_CLASSES


def test_shift_definitions():
    src = load_synthetic(_req("source"))
    ch = load_synthetic(_req("input-channels"))
    out = load_synthetic(_req("output"))
    feat = load_synthetic(_req("feature"))
    # same seed/split code differ only through the variant; check each definition directly
    assert set(src.train.groups.tolist()) <= set(range(SOURCE_SUBPOPS))
    assert set(feat.train.groups.tolist()) <= set(range(SOURCE_SUBPOPS, 2 * SOURCE_SUBPOPS))
    perm = label_permutation()
    assert sorted(perm.tolist()) == list(range(NUM_CLASSES)) and not np.any(perm == np.arange(10))
    assert set(out.train.labels.tolist()) == set(range(NUM_CLASSES))
    assert ch.train.images.shape == src.train.images.shape
    with pytest.raises(ValueError, match="unknown synthetic variant 'rain'"):
        load_synthetic(_req("rain"))
    with pytest.raises(ValueError, match="train_n must be >= 10"):
        load_synthetic(_req("output", train_n=5))


def test_channel_permutation_undone_exactly_by_first_conv():
    model = _model().eval()
    x = load_synthetic(_req("source")).test.images
    ref = model(x)
    undo_channel_permutation(model)
    got = model(x[:, list(CHANNEL_PERMUTATION)])
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_label_permutation_undone_exactly_by_head():
    model = _model().eval()
    x = load_synthetic(_req("source")).test.images
    ref = model(x).argmax(1)
    undo_label_permutation(model)
    assert torch.equal(model(x).argmax(1), torch.as_tensor(label_permutation())[ref])


@pytest.fixture(scope="module")
def source_model():
    src = load_synthetic(LoadRequest(Path("."), variant="source", seed=0, train_n=1500,
                                     image_size=SIDE, val_per_class=5, test_per_class=30))
    model = _model()
    pretrain(model, src.train, epochs=5, lr=0.05, batch_size=64, seed=0)
    return model, evaluate(model, src.test)[1]


@pytest.mark.parametrize(("variant", "block", "gap"),
                         [("output", "head", 0.1), ("input-channels", "block1", 0.5)])
def test_tuning_the_known_block_recovers_source_accuracy(source_model, variant, block, gap):
    """CNN analogues of C1/C3: tuning the block that can undo the shift exactly.

    Measured: the head recovers the label permutation to within 0.1 of the source accuracy in 4
    epochs; block1 learns the channel permutation more slowly (0.53 after 4 epochs, 0.83 after
    10, vs 0.96 on the source: re-permuting the first filters is a large move for Adam), so here
    we only require a large gain over the untuned model; the README reports the gap.
    """
    model, src_acc = source_model
    assert src_acc > 0.5
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tgt = load_synthetic(LoadRequest(Path("."), variant=variant, seed=1, train_n=300,
                                     image_size=SIDE, val_per_class=5, test_per_class=30))
    untuned = evaluate(model, tgt.test)[1]
    res = finetune(model, model.block_map(), tgt.train, tgt.val, tgt.test,
                   protocol=Protocol(epochs=4, lrs=(1e-1, 1e-2), batch_size=64),
                   config=FinetuneConfig(tuned=block), seed=0)
    model.load_state_dict(state)
    assert untuned < src_acc - 0.3
    assert res.test_accuracy >= src_acc - gap, (res.test_accuracy, src_acc)
    assert res.test_accuracy >= untuned + 0.35
