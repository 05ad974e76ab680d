"""FMoW reader on a fixture in the WILDS ``fmow_v1.1/`` layout: the OOD splits by UTC year and
original split, regions from the country mapping (``Other`` left out), image numbering by row."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from realdata.data.base import DatasetLayoutError, LoadRequest
from realdata.data.fmow import FMOW_CATEGORIES, FMOW_REGIONS, load_fmow
from realdata.tasks import get_task
from tests.realdata.data.fixtures import FMOW_COUNTRIES, make_fmow


def _rows(root):
    with open(root / "fmow_v1.1" / "rgb_metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


def _row_of(path: str) -> int:
    return int(path.rsplit("rgb_img_", 1)[1].split(".")[0])


def test_fmow_splits_follow_wilds_official_scheme(tmp_path):
    root = make_fmow(tmp_path)
    rows = _rows(root)
    req = LoadRequest(data_root=root, train_n=62, val_per_class=2, test_per_class=None, seed=3,
                      image_size=24)
    ts = load_fmow(req)
    assert ts.num_classes == 62 and ts.num_groups == 5 and len(ts.train) == 62
    assert len(ts.val) == 124
    # every split's image number is its metadata row; labels are the category's WILDS index
    for split, allowed in ((ts.train, {"val"}), (ts.val, {"val"}), (ts.test, {"test"})):
        for p, y, g in zip(split.paths, split.labels, split.groups):
            r = rows[_row_of(p)]
            assert r["split"] in allowed
            assert FMOW_CATEGORIES[y] == r["category"]
            assert FMOW_REGIONS[g] == FMOW_COUNTRIES[r["country_code"]]  # never "Other"
    years = [rows[_row_of(p)]["timestamp"][:4] for p in ts.train.paths + ts.val.paths]
    assert set(years) <= {"2013", "2014", "2015"}
    # OOD test: 2 per class (the -05:00 stamp on 2015-12-31 is 2016 in UTC); Other excluded
    assert len(ts.test) == 2 * 62
    assert sum(rows[_row_of(p)]["timestamp"].startswith("2015") for p in ts.test.paths) == 62
    assert not set(ts.train.paths) & set(ts.val.paths)
    img, y, g = ts.test[0]
    assert tuple(img.shape) == (3, 24, 24) and 0 <= g < 5
    # seeded per-class subset of the test split
    sub = load_fmow(LoadRequest(data_root=root, train_n=62, val_per_class=1, test_per_class=1,
                                seed=3, image_size=24))
    assert len(sub.test) == 62 and np.array_equal(np.sort(sub.test.labels), np.arange(62))


def test_fmow_task_registered():
    spec = get_task("fmow")
    assert (spec.backbone, spec.num_classes, spec.metric, spec.shift_level) == (
        "clip_vit_b16", 62, "worst_group", "natural")


def test_fmow_bad_metadata(tmp_path):
    root = make_fmow(tmp_path)
    meta = root / "fmow_v1.1" / "rgb_metadata.csv"
    text = meta.read_text()
    meta.write_text(text.replace(",airport,", ",not_a_category,", 1))
    with pytest.raises(DatasetLayoutError, match="unknown categories"):
        load_fmow(LoadRequest(data_root=root, train_n=62, val_per_class=1))
    meta.write_text(text.replace("2014-06-01T10:00:00Z", "June 2014", 1))
    with pytest.raises(DatasetLayoutError, match="ISO-8601"):
        load_fmow(LoadRequest(data_root=root, train_n=62, val_per_class=1))
    meta.write_text(text)
    (root / "fmow_v1.1" / "country_code_mapping.csv").unlink()
    with pytest.raises(DatasetLayoutError, match=r"country_code_mapping\.csv"):
        load_fmow(LoadRequest(data_root=root, train_n=62, val_per_class=1))
