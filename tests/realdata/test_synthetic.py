"""The built-in synthetic task: determinism, shift definitions, shape-only labels, exact C1/C3
analogues, recovery, and a tiny end-to-end run over corruption targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

import realdata.data.synthetic as syn
from realdata.data.base import LoadRequest
from realdata.data.corruptions import CORRUPTIONS, corrupt_uint8
from realdata.data.synthetic import (
    BACKBONE_KWARGS,
    CHANNEL_PERMUTATION,
    FILL_STYLES,
    LEVELS,
    NUM_CLASSES,
    QUICK_CORRUPTIONS,
    SOURCE_SUBPOPS,
    VARIANTS,
    generate,
    label_permutation,
    load_synthetic,
    shift_images,
    style_table,
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
    assert set(CORRUPTIONS) <= set(VARIANTS) and len(VARIANTS) == 15 + 3
    assert {spec.level_of(v) for v in VARIANTS} == {"input", "feature", "output"}
    assert all(LEVELS[c] == "input" for c in CORRUPTIONS)
    quick = spec.preset(True)[1]
    assert set(QUICK_CORRUPTIONS) <= set(quick) and {"feature", "output"} <= set(quick)
    assert str(syn.GENERATOR_VERSION) in spec.reader_version
    a, b = load_synthetic(_req("gaussian_noise")), load_synthetic(_req("gaussian_noise"))
    assert torch.equal(a.train.images, b.train.images)
    c = load_synthetic(_req("gaussian_noise", seed=1))
    assert not torch.equal(a.train.images, c.train.images)
    x = a.train.images
    assert x.dtype == torch.float32 and x.shape == (40, 3, SIDE, SIDE)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert np.bincount(a.train.labels.numpy()).tolist() == [4] * NUM_CLASSES


def test_images_sit_on_the_uint8_grid_and_corruptions_are_the_packages():
    x = load_synthetic(_req("source")).test.images
    assert torch.equal(torch.round(x * 255) / 255, x)
    got = shift_images(x, "fog", 5, seed=3)
    want = corrupt_uint8(torch.round(x * 255).to(torch.uint8), "fog", 5, seed=3).float() / 255
    assert torch.equal(got, want)
    assert torch.equal(shift_images(x, "input-channels", 5, 0), x[:, list(CHANNEL_PERMUTATION)])
    for v in ("source", "feature", "output"):
        assert shift_images(x, v, 5, 0) is x
    with pytest.raises(ValueError, match="unknown synthetic variant 'rain'"):
        shift_images(x, "rain", 5, 0)


def test_shift_definitions():
    src = load_synthetic(_req("source"))
    out = load_synthetic(_req("output"))
    feat = load_synthetic(_req("feature"))
    assert set(src.train.groups.tolist()) <= set(range(SOURCE_SUBPOPS))
    assert set(feat.train.groups.tolist()) <= set(range(SOURCE_SUBPOPS, 2 * SOURCE_SUBPOPS))
    perm = label_permutation()
    assert sorted(perm.tolist()) == list(range(NUM_CLASSES)) and not np.any(perm == np.arange(10))
    assert set(out.train.labels.tolist()) == set(range(NUM_CLASSES))
    # every class's held-out subpopulations have fill styles that class never shows in the source
    table = style_table()
    for k in range(NUM_CLASSES):
        seen = set(table[k, :SOURCE_SUBPOPS, 0].astype(int))
        assert not seen & set(table[k, SOURCE_SUBPOPS:, 0].astype(int))
    # ... while every style occurs in the source (for some class)
    assert set(table[:, :SOURCE_SUBPOPS, 0].astype(int).ravel()) == set(range(len(FILL_STYLES)))
    with pytest.raises(ValueError, match="unknown synthetic variant 'rain'"):
        load_synthetic(_req("rain"))
    with pytest.raises(ValueError, match="train_n must be >= 10"):
        load_synthetic(_req("output", train_n=5))


def _dependence_pvalues(n: int = 3000, seed: int = 0) -> dict[str, float]:
    """Chi-square p-values of label x nuisance (binned), from the factors the generator used
    and from the pixels (hue angle of the image's mean colour)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, NUM_CLASSES, n)
    x, f = generate(y, rng.integers(0, SOURCE_SUBPOPS, n), rng, SIDE, return_factors=True)
    mean = x.mean(dim=(2, 3)).double().numpy()
    chroma = mean - mean.mean(1, keepdims=True)
    angle = np.arctan2(chroma[:, 1] - chroma[:, 2], 2 * chroma[:, 0] - chroma[:, 1] - chroma[:, 2])
    series = {"hue": f["hue"], "theta": f["theta"] / np.pi, "freq": f["freq"],
              "pixel_hue": (angle + np.pi) / (2 * np.pi)}
    out = {}
    for name, v in series.items():
        bins = np.minimum((np.argsort(np.argsort(v)) * 6) // n, 5)  # 6 equal-count bins
        table = np.zeros((NUM_CLASSES, 6))
        np.add.at(table, (y, bins), 1)
        out[name] = float(chi2_contingency(table)[1])
    return out


def test_label_is_independent_of_hue_and_texture_and_a_tied_hue_is_caught(monkeypatch):
    p = _dependence_pvalues()
    assert min(p.values()) > 1e-3, p
    real = syn._nuisance

    def tied(labels, rng):  # the fault: hue carries the class, as the old generator's did
        f = real(labels, rng)
        f["hue"] = (labels / NUM_CLASSES + rng.normal(0, 0.03, len(labels))) % 1.0
        f["sat"] = np.full(len(labels), 0.9)
        return f

    monkeypatch.setattr(syn, "_nuisance", tied)
    q = _dependence_pvalues()
    assert q["hue"] < 1e-9 and q["pixel_hue"] < 1e-9, q


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


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, NUM_CLASSES - 1), min_size=1, max_size=6),
       st.integers(0, 2**31 - 1), st.sampled_from((8, 12, 16)))
def test_generate_is_a_seeded_function_on_the_uint8_grid(labels, seed, size):
    y = np.array(labels)
    sub = np.arange(len(y)) % (2 * SOURCE_SUBPOPS)
    a = generate(y, sub, np.random.default_rng(seed), size)
    b = generate(y, sub, np.random.default_rng(seed), size)
    assert torch.equal(a, b) and a.shape == (len(y), 3, size, size)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(torch.round(a * 255) / 255, a)


@pytest.fixture(scope="module")
def source_model():
    """A source model at full size (32 px: at 16 px the shapes are too coarse to learn fast)."""
    src = load_synthetic(LoadRequest(Path("."), variant="source", seed=0, train_n=4000,
                                     val_per_class=5, test_per_class=30))
    model = _model()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy shared CPU: two threads per tiny op cost far more
    try:
        pretrain(model, src.train, epochs=8, lr=0.05, batch_size=32, seed=0)
    finally:
        torch.set_num_threads(threads)
    return model, evaluate(model, src.test)[1]


@pytest.mark.slow
def test_tuning_the_head_recovers_the_label_permutation(source_model, one_thread):
    """CNN analogue of C3: the head can undo the label permutation exactly; tuning it recovers
    most of the source accuracy."""
    model, src_acc = source_model
    assert src_acc > 0.5  # measured 0.62 (4,000 images x 8 epochs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tgt = load_synthetic(LoadRequest(Path("."), variant="output", seed=1, train_n=300,
                                     val_per_class=5, test_per_class=30))
    untuned = evaluate(model, tgt.test)[1]
    res = finetune(model, model.block_map(), tgt.train, tgt.val, tgt.test,
                   protocol=Protocol(epochs=4, lrs=(1e-1, 1e-2), batch_size=64),
                   config=FinetuneConfig(tuned="head"), seed=0)
    model.load_state_dict(state)
    assert untuned < src_acc - 0.2
    assert res.test_accuracy >= src_acc - 0.1, (res.test_accuracy, src_acc)


def test_tiny_end_to_end_over_corruption_targets(tmp_path, monkeypatch, one_thread):
    """``--task synthetic`` with corruption targets, tiny sizes: records for every target and
    option, levels recorded, verdicts written."""
    import realdata.benchmark as bench
    import realdata.pretrain as pre

    monkeypatch.setitem(pre.SOURCE_PRESETS, "quick",
                        {"train_n": 40, "epochs": 1, "lr": 0.05, "batch_size": 20})
    variants = ["gaussian_noise", "fog", "input-channels", "output"]
    assert bench.main(["--task", "synthetic", "--quick", "--variants", *variants, "--seeds", "0",
                       "--tuned", "block1", "head", "all", "--epochs", "1", "--lrs", "0.01",
                       "--train-n", "10", "--val-per-class", "1", "--test-per-class", "2",
                       "--image-size", "16", "--threads", "1", "--no-progress",
                       "--out", str(tmp_path)]) == 0
    recs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert {r["variant"] for r in recs} == set(variants)
    assert {r["level"] for r in recs} == {"input", "output"}
    assert {r["tuned"] for r in recs} >= {"block1", "head", "all"}
    assert all(r["status"] == "ok" for r in recs)
    assert json.loads(next((tmp_path / "checkpoints").glob("synthetic-source-*.json")).read_text())[
        "generator_version"] == syn.GENERATOR_VERSION
