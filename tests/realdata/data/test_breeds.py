"""BREEDS parser: toy hierarchy (hand-derived expectations) and the real files (published splits)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realdata.data.base import DatasetLayoutError, LoadRequest
from realdata.data.breeds import (
    BREEDS_DATASETS,
    breeds_split,
    load_breeds,
    load_hierarchy,
    make_breeds,
)
from tests.realdata.data.fixtures import make_imagenet_folders, toy_breeds_info

# The published hierarchy files, shipped as test data (provenance and license: tests/data/breeds/README.md).
REAL_INFO = Path(__file__).resolve().parents[2] / "data" / "breeds"


@pytest.fixture
def toy(tmp_path):
    return load_hierarchy(toy_breeds_info(tmp_path / "info"))


def _w(i: int) -> str:
    return f"n0{i:07d}"


def test_toy_levels_are_longest_paths_and_graph_is_pruned(toy):
    assert toy.levels["n00001740"] == 0
    # n30000003 is reachable at depth 2 (shortcut) and 4 (chain): the level is the longest
    assert toy.levels["n30000003"] == 4
    assert toy.levels["n10000001"] == 5 and toy.levels["n20000001"] == 4
    assert "n99999999" not in toy.levels and "n99999999" not in toy.children
    assert toy.leaves_reachable("n10000002") == frozenset(_w(i) for i in range(5, 11))
    assert toy.leaves_reachable(_w(1)) == frozenset({_w(1)})


def test_toy_living17_rand_split_matches_hand_derivation(toy):
    cfg = BREEDS_DATASETS["living17"]
    s = breeds_split(toy, cfg.level, cfg.n_subclasses, ancestor=cfg.ancestor, name="living17")
    # n10000003 has 3 < 4 leaves: dropped; labels = sorted superclass order
    assert s.superclasses == ("n10000001", "n10000002")
    rng = np.random.RandomState(2)
    pool1 = [_w(i) for i in range(1, 5)]  # the 4 leaves of n10000001 (no single-child chain)
    # n10000002 has two children sharing leaf 7: the sorted pool lists it twice
    pool2 = sorted([_w(5), _w(6), _w(7), _w(7), _w(8), _w(9), _w(10)])
    want = []
    for pool in (pool1, pool2):
        pick = [pool[i] for i in rng.choice(len(pool), 4, replace=False)]
        want.append((tuple(pick[:2]), tuple(pick[2:])))
    assert s.source_wnids == tuple(w[0] for w in want)
    assert s.target_wnids == tuple(w[1] for w in want)
    # the duplicate matters: a de-duplicated pool would give another draw
    rng = np.random.RandomState(2)
    rng.choice(4, 4, replace=False)
    dedup = sorted(set(pool2))
    alt = [dedup[i] for i in rng.choice(len(dedup), 4, replace=False)]
    assert (tuple(alt[:2]), tuple(alt[2:])) != (s.source_wnids[1], s.target_wnids[1])
    # class indices follow dataset_class_info.json (index = position of the sorted wnid)
    assert s.source[0] == tuple(int(w[1:]) - 1 for w in s.source_wnids[0])


def test_toy_entity30_walks_single_child_chains(toy):
    cfg = BREEDS_DATASETS["entity30"]
    s = breeds_split(toy, cfg.level, cfg.n_subclasses, ancestor=cfg.ancestor)
    assert s.superclasses == ("n20000001", "n20000002", "n30000003")
    for src, tgt in zip(s.source_wnids, s.target_wnids):
        assert len(src) == len(tgt) == 4 and not set(src) & set(tgt)
    # n20000002 -> n40000010 -> n40000011 (two children): its 8 leaves are all drawn
    assert set(s.source_wnids[1]) | set(s.target_wnids[1]) == {_w(i) for i in range(23, 31)}


def test_split_is_deterministic_and_validated(toy):
    a = breeds_split(toy, 5, 4, ancestor="n00004258")
    assert a == breeds_split(toy, 5, 4, ancestor="n00004258")
    with pytest.raises(ValueError, match="even"):
        breeds_split(toy, 5, 3)
    with pytest.raises(ValueError, match="rand"):
        breeds_split(toy, 5, 4, split="good")
    with pytest.raises(ValueError, match="ancestor"):
        breeds_split(toy, 5, 4, ancestor="n12345678")
    with pytest.raises(ValueError, match="no superclass"):
        breeds_split(toy, 5, 40)


def test_missing_or_bad_hierarchy_files(tmp_path):
    info = toy_breeds_info(tmp_path / "info")
    (info / "node_names.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"node_names\.txt") as e:
        load_hierarchy(info)
    assert "class_hierarchy.txt" in str(e.value)  # the layout is printed
    info2 = toy_breeds_info(tmp_path / "info2")
    (info2 / "class_hierarchy.txt").write_text("n00001740\n")
    with pytest.raises(ValueError, match="parent child"):
        load_hierarchy(info2)
    info3 = toy_breeds_info(tmp_path / "info3")
    with open(info3 / "class_hierarchy.txt", "a") as f:
        f.write("n30000003 n00004258\n")  # a cycle
    with pytest.raises(ValueError, match="cycle"):
        load_hierarchy(info3)


# ----------------------------------------------------------------- the real BREEDS files

# The published Living-17 "rand" split (BREEDS-Benchmarks notebook, make_living17(split="rand")):
# superclass name, source ImageNet indices, target ImageNet indices.
LIVING17 = [
    ("salamander", (27, 29), (26, 28)), ("turtle", (37, 34), (33, 35)),
    ("lizard", (41, 44), (47, 38)), ("snake, serpent, ophidian", (60, 57), (65, 61)),
    ("spider", (76, 72), (74, 77)), ("grouse", (81, 83), (82, 80)),
    ("parrot", (88, 90), (87, 89)), ("crab", (118, 120), (119, 121)),
    ("dog, domestic dog, Canis familiaris", (163, 154), (257, 157)),
    ("wolf", (272, 271), (270, 269)), ("fox", (280, 279), (277, 278)),
    ("domestic cat, house cat, Felis domesticus, Felis catus", (282, 285), (283, 284)),
    ("bear", (297, 295), (296, 294)), ("beetle", (305, 306), (302, 303)),
    ("butterfly", (325, 321), (324, 322)), ("ape", (368, 365), (366, 367)),
    ("monkey", (377, 380), (381, 379)),
]  # fmt: skip

# Entity-30 superclasses as listed in the BREEDS paper (first name of each node).
ENTITY30 = [
    "serpentes", "passerine", "saurian", "arachnid", "aquatic bird", "crustacean", "carnivore",
    "insect", "ungulate", "primate", "bony fish", "barrier", "building", "electronic equipment",
    "footwear", "garment", "headdress", "home appliance", "kitchen utensil",
    "measuring instrument", "motor vehicle", "musical instrument", "neckwear",
    "sports equipment", "tableware", "tool", "vessel", "dish", "vegetable", "fruit",
]  # fmt: skip


def test_real_hierarchy_levels_match_published_counts():
    # node counts per level printed by the BREEDS-Benchmarks notebook
    h = load_hierarchy(REAL_INFO)
    counts = Counter(h.levels.values())
    assert [counts[i] for i in range(9)] == [1, 2, 10, 29, 128, 466, 591, 98, 3]
    assert len(h.leaves) == 1000


def test_real_living17_reproduces_published_split_exactly():
    s = make_breeds("living17", REAL_INFO)
    assert s.num_classes == 17
    assert list(zip(s.superclass_names, s.source, s.target)) == LIVING17


def test_real_entity30_superclasses_and_sizes():
    s = make_breeds("entity30", REAL_INFO)
    assert s.num_classes == 30
    assert [n.split(",")[0] for n in s.superclass_names] == ENTITY30
    assert all(len(a) == len(b) == 4 for a, b in zip(s.source, s.target))
    flat = [c for grp in s.source + s.target for c in grp]
    assert len(set(flat)) == len(flat) == 240  # disjoint subpopulations


def test_load_breeds_reads_target_subpopulations(tmp_path):
    info = toy_breeds_info(tmp_path / "info")
    split = breeds_split(load_hierarchy(info), 5, 4, ancestor="n00004258")
    wnids = sorted({w for grp in split.source_wnids + split.target_wnids for w in grp})
    root = make_imagenet_folders(tmp_path / "imagenet", wnids, train_per_class=6, val_per_class=3)
    req = LoadRequest(data_root=root, train_n=4, val_per_class=3, test_per_class=None,
                      image_size=32, seed=1, extra={"breeds_info": info})  # fmt: skip
    ts = load_breeds(req, "living17")
    assert ts.num_classes == 2 and len(ts.train) == 4 and len(ts.val) == 6
    assert len(ts.test) == 2 * 2 * 3  # 2 superclasses x 2 target subclasses x 3 val images
    img, label, group = ts.train[0]
    assert img.shape == (3, 32, 32) and 0 <= float(img.min()) and float(img.max()) <= 1
    assert label in (0, 1) and group == -1
    target = {w for grp in split.target_wnids for w in grp}
    for ds in (ts.train, ts.val, ts.test):
        assert all(Path(p).parent.name in target for p in ds.paths)
    # same request -> same split; another seed -> another split
    assert load_breeds(req, "living17").train.paths == ts.train.paths
    other = LoadRequest(**{**req.__dict__, "seed": 2})
    assert load_breeds(other, "living17").train.paths != ts.train.paths


def test_load_breeds_wrong_root_prints_layout(tmp_path):
    info = toy_breeds_info(tmp_path / "info")
    req = LoadRequest(data_root=tmp_path / "nope", extra={"breeds_info": info})
    with pytest.raises(ValueError, match="train/") as e:
        load_breeds(req, "living17")
    assert "dataset_class_info.json" in str(e.value) and "val/<wnid>" in str(e.value)
    (tmp_path / "im" / "train").mkdir(parents=True)
    (tmp_path / "im" / "val").mkdir()
    with pytest.raises(ValueError, match="breeds-info"):
        load_breeds(LoadRequest(data_root=tmp_path / "im"), "living17")
    with pytest.raises(ValueError, match="ImageNet class folder"):
        load_breeds(LoadRequest(data_root=tmp_path / "im", extra={"breeds_info": info}),
                    "living17")  # fmt: skip


# ------------------------------------------------------------- property test: random DAGs


def _all_path_lengths(children, root, node):
    """Lengths of every root->node path (brute force; small graphs only)."""
    out = []

    def walk(n, d):
        if n == node:
            out.append(d)
        for c in children.get(n, ()):
            walk(c, d + 1)

    walk(root, 0)
    return out


@settings(max_examples=40, deadline=None)
@given(
    parents=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.booleans()),
                     min_size=6, max_size=28),
    level=st.integers(1, 3),
    n_sub=st.sampled_from([2, 4]),
)  # fmt: skip
def test_property_random_dags(tmp_path_factory, parents, level, n_sub):
    # node i+1 gets a parent in [0, i] (and maybe a second one): a DAG rooted at node 0
    names = ["n00001740"] + [f"n5{i:07d}" for i in range(1, len(parents) + 1)]
    edges = set()
    for i, (a, b, two) in enumerate(parents, start=1):
        edges.add((names[a % i], names[i]))
        if two:
            edges.add((names[b % i], names[i]))
    has_kids = {p for p, _ in edges}
    leaves = sorted(n for n in names[1:] if n not in has_kids)
    info = tmp_path_factory.mktemp("dag")
    (info / "dataset_class_info.json").write_text(json.dumps([[i, w, w] for i, w in enumerate(leaves)]))
    (info / "class_hierarchy.txt").write_text("".join(f"{p} {c}\n" for p, c in sorted(edges)))
    (info / "node_names.txt").write_text("".join(f"{w}\t{w}\n" for w in sorted(has_kids)))
    h = load_hierarchy(info)
    kids = {p: [c for q, c in edges if q == p] for p in has_kids}
    for node, lv in h.levels.items():
        assert lv == max(_all_path_lengths(kids, "n00001740", node))
    try:
        s = breeds_split(h, level, n_sub)
    except ValueError as exc:  # no qualifying superclass, or a pooled duplicate drawn twice
        assert "no superclass" in str(exc) or "twice" in str(exc)
        return
    assert list(s.superclasses) == sorted(s.superclasses)
    for sc, src, tgt in zip(s.superclasses, s.source_wnids, s.target_wnids):
        assert h.levels[sc] == level and len(h.leaves_reachable(sc)) >= n_sub
        assert len(src) == len(tgt) == n_sub // 2 and not set(src) & set(tgt)
        assert set(src) | set(tgt) <= h.leaves_reachable(sc)
