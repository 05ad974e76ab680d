"""BREEDS (Santurkar et al., 2020): our own parser of the three hierarchy files, the published
Living-17 / Entity-30 source/target subpopulation splits, and the ImageNet-folder reader.

The hierarchy files (``dataset_class_info.json``, ``class_hierarchy.txt``, ``node_names.txt``) are
the ones of the BREEDS-Benchmarks repository (``imagenet_class_hierarchy/modified/``). The
reference procedure that defines the datasets, reproduced here:

1. Keep only the part of the graph above the 1000 ImageNet leaves (every ancestor of a leaf and
   the edges towards leaves). A node's level is the LONGEST path from the root ``n00001740``.
2. Candidate superclasses: the nodes at the dataset's level (inside the subtree of its ancestor,
   if any), sorted by wnid, keeping those with at least ``N`` reachable leaves. The reachable
   leaves of a node are found by walking down and stopping at leaves. Label = position in that
   sorted list.
3. "rand" split, with ONE ``numpy.random.RandomState(2)`` shared across the superclasses in
   order: walk down from the superclass while the node has exactly one child; concatenate the
   sorted reachable leaves of each child of the node reached and sort the concatenation (a leaf
   under two children appears twice, as in the reference); draw ``N`` entries without replacement
   with ``rng.choice``; the first ``N/2`` are the source subpopulation, the rest the target.

Tasks registered here (feature-level shift, ResNet-50): ``living17`` and ``entity30``. Target
data: ImageNet ``train/<wnid>`` images of the target subclasses give the seeded per-class train and
val examples, ``val/<wnid>`` images of the target subclasses the test examples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from realdata.data.base import LoadRequest, TargetSplits, missing_layout_error, per_class_split
from realdata.data.image_files import ImageFiles, ResizeCenterCrop, list_images
from realdata.data.layout import LAYOUTS, require_dir, require_file

__all__ = [
    "BREEDS_DATASETS",
    "BREEDS_FILES",
    "ROOT_WNID",
    "BreedsConfig",
    "BreedsHierarchy",
    "BreedsSplit",
    "breeds_split",
    "load_breeds",
    "load_hierarchy",
    "make_breeds",
]

ROOT_WNID = "n00001740"
BREEDS_FILES: tuple[str, ...] = ("dataset_class_info.json", "class_hierarchy.txt", "node_names.txt")


@dataclass(frozen=True)
class BreedsConfig:
    """Definition of one BREEDS dataset: superclass level, optional ancestor, subclasses each."""

    level: int
    ancestor: str | None
    n_subclasses: int


BREEDS_DATASETS: Mapping[str, BreedsConfig] = {
    "living17": BreedsConfig(5, "n00004258", 4),
    "entity30": BreedsConfig(4, None, 8),
    "entity13": BreedsConfig(3, None, 20),
    "nonliving26": BreedsConfig(5, "n00021939", 4),
}


@dataclass(frozen=True)
class BreedsHierarchy:
    """The pruned class hierarchy.

    Attributes:
        leaves: wnids of the ImageNet classes, in ``dataset_class_info.json`` order.
        leaf_index: wnid -> ImageNet class index.
        leaf_names: wnid -> class name.
        node_names: wnid -> name of inner nodes.
        children: node -> sorted children, restricted to ancestors of leaves (and leaves).
        levels: node -> longest-path depth from the root (nodes reachable from the root only).
    """

    leaves: tuple[str, ...]
    leaf_index: Mapping[str, int]
    leaf_names: Mapping[str, str]
    node_names: Mapping[str, str]
    children: Mapping[str, tuple[str, ...]]
    levels: Mapping[str, int]

    def name(self, wnid: str) -> str:
        """Human-readable name of a node or leaf (the wnid itself if unnamed)."""
        return self.node_names.get(wnid) or self.leaf_names.get(wnid) or wnid

    def leaves_reachable(self, node: str) -> frozenset[str]:
        """ImageNet leaves below ``node`` (walking down and stopping at leaves; ``node`` itself
        if it is a leaf)."""
        found: set[str] = {node} if node in self.leaf_index else set()
        todo, seen = [node], {node}
        while todo:
            cur = todo.pop()
            for c in self.children.get(cur, ()):
                if c in self.leaf_index:
                    found.add(c)
                elif c not in seen:
                    seen.add(c)
                    todo.append(c)
        return frozenset(found)

    def descendants(self, node: str) -> frozenset[str]:
        """``node`` and every node below it."""
        out, todo = {node}, [node]
        while todo:
            for c in self.children.get(todo.pop(), ()):
                if c not in out:
                    out.add(c)
                    todo.append(c)
        return frozenset(out)


@dataclass(frozen=True)
class BreedsSplit:
    """A BREEDS dataset: superclasses and their source/target subclasses.

    Attributes:
        name: dataset name.
        superclasses: superclass wnids, sorted (label = position).
        superclass_names: their names.
        source: per superclass, the ImageNet class indices of the source subpopulation.
        target: per superclass, the ImageNet class indices of the target subpopulation.
        source_wnids, target_wnids: the same as wnids.
    """

    name: str
    superclasses: tuple[str, ...]
    superclass_names: tuple[str, ...]
    source: tuple[tuple[int, ...], ...]
    target: tuple[tuple[int, ...], ...]
    source_wnids: tuple[tuple[str, ...], ...]
    target_wnids: tuple[tuple[str, ...], ...]

    @property
    def num_classes(self) -> int:
        return len(self.superclasses)


def _read_lines(path: Path) -> list[str]:
    return [ln.rstrip("\n\r") for ln in path.read_text().splitlines() if ln.strip()]


def load_hierarchy(info_dir: Path | str, root: str = ROOT_WNID) -> BreedsHierarchy:
    """Parse the three BREEDS files in ``info_dir`` and prune the graph to the leaves' ancestors.

    Raises:
        ValueError: a missing file (the message prints the expected layout), a malformed line, a
            root that is not an ancestor of any leaf, or a cycle.
    """
    info = Path(info_dir)
    for f in BREEDS_FILES:
        if not (info / f).is_file():
            raise missing_layout_error(f"BREEDS hierarchy file {f} not found in --breeds-info",
                                       info / f, LAYOUTS["living17"])  # fmt: skip
    class_info = json.loads((info / "dataset_class_info.json").read_text())
    try:
        leaf_index = {str(w): int(i) for i, w, _ in class_info}
        leaf_names = {str(w): str(n) for _, w, n in class_info}
    except (TypeError, ValueError) as exc:
        raise ValueError("dataset_class_info.json must be a list of [index, wnid, name]") from exc
    leaves = tuple(sorted(leaf_index, key=leaf_index.__getitem__))
    parents: dict[str, set[str]] = {}
    for ln in _read_lines(info / "class_hierarchy.txt"):
        parts = ln.split()
        if len(parts) != 2:
            raise ValueError(f"class_hierarchy.txt: expected 'parent child', got {ln!r}")
        parents.setdefault(parts[1], set()).add(parts[0])
    node_names: dict[str, str] = {}
    for ln in _read_lines(info / "node_names.txt"):
        wnid, _, name = ln.partition("\t")
        node_names[wnid.strip()] = name.strip()
    # backward search from the leaves: keep ancestors and the edges on the way
    children: dict[str, set[str]] = {}
    todo = [w for w in leaves if w in parents]
    seen = set(todo)
    while todo:
        w = todo.pop()
        for p in parents.get(w, ()):
            children.setdefault(p, set()).add(w)
            if p not in seen:
                seen.add(p)
                todo.append(p)
    if root not in children:
        raise ValueError(f"root {root} is not an ancestor of any ImageNet class in {info}")
    kids = {k: tuple(sorted(v)) for k, v in children.items()}
    return BreedsHierarchy(leaves, leaf_index, leaf_names, node_names, kids,
                           _longest_levels(kids, root))  # fmt: skip


def _longest_levels(children: Mapping[str, tuple[str, ...]], root: str) -> dict[str, int]:
    """Longest-path depth from ``root`` of every node reachable from it (Kahn on the sub-DAG)."""
    reach, todo = {root}, [root]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in reach:
                reach.add(c)
                todo.append(c)
    indeg = dict.fromkeys(reach, 0)
    for n in reach:
        for c in children.get(n, ()):
            indeg[c] += 1
    level = dict.fromkeys(reach, 0)
    queue = [n for n in reach if indeg[n] == 0]
    done = 0
    while queue:
        n = queue.pop()
        done += 1
        for c in children.get(n, ()):
            level[c] = max(level[c], level[n] + 1)
            indeg[c] -= 1
            if indeg[c] == 0:
                queue.append(c)
    if done != len(reach):
        raise ValueError("class_hierarchy.txt contains a cycle below the root")
    return level


def breeds_split(
    hier: BreedsHierarchy,
    level: int,
    n_subclasses: int,
    *,
    ancestor: str | None = None,
    split: str = "rand",
    seed: int = 2,
    name: str = "breeds",
) -> BreedsSplit:
    """Superclasses at ``level`` and their source/target subclasses (see the module docstring).

    Raises:
        ValueError: odd ``n_subclasses``, an unknown ancestor, no superclass qualifies, or a split
            other than ``"rand"`` (the deterministic "good"/"bad" groupings are not implemented).
    """
    if split != "rand":
        raise ValueError(f"only the 'rand' split is implemented; got {split!r}")
    if n_subclasses < 2 or n_subclasses % 2:
        raise ValueError(f"n_subclasses must be even and >= 2; got {n_subclasses}")
    nodes = [n for n, lv in hier.levels.items() if lv == level]
    if ancestor is not None:
        if ancestor not in hier.levels:
            raise ValueError(f"ancestor {ancestor} is not in the pruned hierarchy")
        below = hier.descendants(ancestor)
        nodes = [n for n in nodes if n in below]
    supers = [n for n in sorted(nodes) if len(hier.leaves_reachable(n)) >= n_subclasses]
    if not supers:
        raise ValueError(f"no superclass at level {level} has >= {n_subclasses} subclasses")
    rng = np.random.RandomState(seed)
    half = n_subclasses // 2
    src: list[tuple[str, ...]] = []
    tgt: list[tuple[str, ...]] = []
    for sc in supers:
        node, kids = sc, hier.children.get(sc, ())
        while len(kids) == 1:
            node = kids[0]
            kids = hier.children.get(node, ())
        pool = sorted(w for k in kids for w in sorted(hier.leaves_reachable(k)))
        pick = [pool[i] for i in rng.choice(len(pool), n_subclasses, replace=False)]
        if len(set(pick)) != n_subclasses:
            raise ValueError(f"superclass {sc}: the draw picked a subclass twice ({pick})")
        src.append(tuple(pick[:half]))
        tgt.append(tuple(pick[half:]))
    idx = hier.leaf_index
    return BreedsSplit(
        name=name,
        superclasses=tuple(supers),
        superclass_names=tuple(hier.name(s) for s in supers),
        source=tuple(tuple(idx[w] for w in ws) for ws in src),
        target=tuple(tuple(idx[w] for w in ws) for ws in tgt),
        source_wnids=tuple(src),
        target_wnids=tuple(tgt),
    )


@lru_cache(maxsize=8)
def _cached_split(info_dir: str, name: str) -> BreedsSplit:
    cfg = BREEDS_DATASETS[name]
    return breeds_split(load_hierarchy(info_dir), cfg.level, cfg.n_subclasses,
                        ancestor=cfg.ancestor, name=name)  # fmt: skip


def make_breeds(name: str, info_dir: Path | str) -> BreedsSplit:
    """The published dataset ``name`` (``living17``, ``entity30``, ``entity13``, ``nonliving26``)."""
    if name not in BREEDS_DATASETS:
        raise ValueError(f"unknown BREEDS dataset {name!r}; known: {sorted(BREEDS_DATASETS)}")
    return _cached_split(str(Path(info_dir).resolve()), name)


def _info_dir(request: LoadRequest) -> Path:
    given = request.extra.get("breeds_info")
    info = Path(given) if given else Path(request.data_root) / "breeds_info"
    require_dir(info, "BREEDS hierarchy folder (--breeds-info)", LAYOUTS["living17"])
    for f in BREEDS_FILES:
        require_file(info / f, f"BREEDS hierarchy file {f}", LAYOUTS["living17"])
    return info


def _target_files(folder: Path, split: BreedsSplit) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    layout = LAYOUTS["living17"]
    for label, wnids in enumerate(split.target_wnids):
        for w in wnids:
            files = list_images(require_dir(folder / w, f"ImageNet class folder {w}", layout))
            if not files:
                raise missing_layout_error(f"no images in ImageNet class folder {w}",
                                           folder / w, layout)  # fmt: skip
            paths += files
            labels += [label] * len(files)
    return paths, labels


def load_breeds(request: LoadRequest, name: str) -> TargetSplits:
    """Target-subpopulation splits of BREEDS dataset ``name`` (labels = superclass positions)."""
    layout = LAYOUTS["living17"]
    root = Path(request.data_root)
    train_dir = require_dir(root / "train", "ImageNet train/ folder", layout)
    val_dir = require_dir(root / "val", "ImageNet val/ folder", layout)
    split = make_breeds(name, _info_dir(request))
    k = split.num_classes
    tfm = ResizeCenterCrop(request.image_size)
    tr_paths, tr_labels = _target_files(train_dir, split)
    pool = ImageFiles(tr_paths, tr_labels, transform=tfm)
    sp = per_class_split(tr_labels, train_per_class=request.train_n // k,
                         val_per_class=request.val_per_class, test_per_class=0,
                         seed=request.seed, num_classes=k)  # fmt: skip
    te_paths, te_labels = _target_files(val_dir, split)
    test = ImageFiles(te_paths, te_labels, transform=tfm)
    if request.test_per_class is not None:
        te = per_class_split(te_labels, train_per_class=0, val_per_class=0,
                             test_per_class=request.test_per_class, seed=request.seed,
                             num_classes=k)  # fmt: skip
        test = test.subset(te.test)
    info = {
        "source": "ImageNet train/ (train, val) and val/ (test), BREEDS target subpopulations",
        "breeds": name,
        "superclasses": list(split.superclass_names),
        "target_wnids": [list(w) for w in split.target_wnids],
    }
    return TargetSplits(pool.subset(sp.train), pool.subset(sp.val), test, num_classes=k,
                        info=info)  # fmt: skip


def load_living17(request: LoadRequest) -> TargetSplits:
    """BREEDS Living-17 target splits."""
    return load_breeds(request, "living17")


def load_entity30(request: LoadRequest) -> TargetSplits:
    """BREEDS Entity-30 target splits."""
    return load_breeds(request, "entity30")
