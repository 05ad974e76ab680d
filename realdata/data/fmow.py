"""FMoW (Functional Map of the World) in the WILDS layout ``fmow_v1.1/``, lazily decoded.

Task ``fmow`` (natural shift over time; CLIP ViT-B/16, 62 land-use classes). WILDS's official split
scheme (``time_after_2016``): an image is OOD-test when its timestamp is in 2016 or later and its
original ``split`` is ``test``; OOD-val when the timestamp is in 2013-2015 and ``split`` is ``val``;
``seq`` rows are never used. The target's labelled train and validation examples are drawn per
class from the OOD-val split; the test examples are the OOD-test split (all of it with
``test_per_class=None``, else a seeded per-class subset).

Groups are WILDS regions from ``country_code_mapping.csv`` (``alpha-3 -> region``), indexed in
:data:`FMOW_REGIONS` order. WILDS reports the worst-region accuracy over these five regions and
ignores countries with no region (``Other``); the target splits here leave ``Other`` images out,
so the task's ``worst_group`` metric is WILDS's worst-region accuracy and ``test_accuracy`` is the
average over the five regions' images. Image ``i`` (0-based row of ``rgb_metadata.csv``, ``seq``
rows included) is ``images/rgb_img_<i>.png``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from realdata.data.base import DatasetLayoutError, LoadRequest, TargetSplits, per_class_split
from realdata.data.image_files import ImageFiles, ResizeCenterCrop
from realdata.data.layout import LAYOUTS, require_columns, require_dir
from realdata.data.wilds import _check_images_exist, read_csv_columns

__all__ = ["FMOW_CATEGORIES", "FMOW_DIR", "FMOW_REGIONS", "OOD_TEST_YEAR", "OOD_VAL_YEAR",
           "fmow_image_path", "load_fmow"]

FMOW_DIR = "fmow_v1.1"
#: First year of the OOD test split and of the OOD validation split (WILDS ``time_after_2016``).
OOD_TEST_YEAR, OOD_VAL_YEAR = 2016, 2013
#: Regions in group-index order (``Other`` excluded, as in WILDS's worst-region metric).
FMOW_REGIONS = ("Africa", "Americas", "Asia", "Europe", "Oceania")
#: The 62 categories in WILDS's label order (label = index).
FMOW_CATEGORIES = (
    "airport", "airport_hangar", "airport_terminal", "amusement_park", "aquaculture",
    "archaeological_site", "barn", "border_checkpoint", "burial_site", "car_dealership",
    "construction_site", "crop_field", "dam", "debris_or_rubble", "educational_institution",
    "electric_substation", "factory_or_powerplant", "fire_station", "flooded_road", "fountain",
    "gas_station", "golf_course", "ground_transportation_station", "helipad", "hospital",
    "impoverished_settlement", "interchange", "lake_or_pond", "lighthouse", "military_facility",
    "multi-unit_residential", "nuclear_powerplant", "office_building", "oil_or_gas_facility",
    "park", "parking_lot_or_garage", "place_of_worship", "police_station", "port", "prison",
    "race_track", "railway_bridge", "recreational_facility", "road_bridge", "runway", "shipyard",
    "shopping_mall", "single-unit_residential", "smokestack", "solar_farm", "space_facility",
    "stadium", "storage_tank", "surface_mine", "swimming_pool", "toll_booth", "tower",
    "tunnel_opening", "waste_disposal", "water_treatment_facility", "wind_farm", "zoo",
)


def fmow_image_path(root: Path, row: int) -> Path:
    """Image of row ``row`` (0-based, over all rows of ``rgb_metadata.csv``)."""
    return Path(root) / "images" / f"rgb_img_{row}.png"


def _year(stamp: str) -> int:
    """UTC year of an ISO-8601 timestamp (``2016-02-04T14:44:20Z``; naive stamps taken as UTC)."""
    t = datetime.fromisoformat(stamp)
    return t.astimezone(timezone.utc).year if t.tzinfo else t.year


def load_fmow(request: LoadRequest) -> TargetSplits:
    """FMoW target splits: train/val per class from OOD-val, test = OOD-test; groups = regions."""
    layout = LAYOUTS["fmow"]
    root = require_dir(Path(request.data_root) / FMOW_DIR, "FMoW folder", layout)
    meta, mapping = root / "rgb_metadata.csv", root / "country_code_mapping.csv"
    need = ("split", "category", "country_code", "timestamp")
    require_columns(meta, need, "FMoW rgb_metadata.csv", layout)
    require_columns(mapping, ("alpha-3", "region"), "FMoW country_code_mapping.csv", layout)
    cols = read_csv_columns(meta, need)
    m = read_csv_columns(mapping, ("alpha-3", "region"))
    region_of = dict(zip(m["alpha-3"], m["region"]))
    label_of = {c: i for i, c in enumerate(FMOW_CATEGORIES)}
    unknown = sorted({c for c in cols["category"] if c not in label_of})
    if unknown:
        raise DatasetLayoutError(f"{meta}: unknown categories {unknown[:5]} (expected the 62 WILDS "
                                 f"FMoW categories)\nexpected layout under --data-root:\n{layout}")
    try:
        years = np.asarray([_year(s) for s in cols["timestamp"]])
    except ValueError as exc:
        raise DatasetLayoutError(f"{meta}: column 'timestamp' must hold ISO-8601 times ({exc})\n"
                                 f"expected layout under --data-root:\n{layout}") from exc
    split = np.asarray(cols["split"])
    labels = np.asarray([label_of[c] for c in cols["category"]], dtype=np.int64)
    rix = {r: i for i, r in enumerate(FMOW_REGIONS)}
    groups = np.asarray([rix.get(region_of.get(c, "Other"), -1) for c in cols["country_code"]],
                        dtype=np.int64)
    named = groups >= 0
    ood_test = np.flatnonzero((years >= OOD_TEST_YEAR) & (split == "test") & named)
    ood_val = np.flatnonzero((years >= OOD_VAL_YEAR) & (years < OOD_TEST_YEAR) & (split == "val")
                             & named)
    if ood_test.size == 0 or ood_val.size == 0:
        raise DatasetLayoutError(f"{meta} has no OOD-val (2013-2015, split val) or no OOD-test "
                                 f"(>= {OOD_TEST_YEAR}, split test) image of a named region\n"
                                 f"expected layout under --data-root:\n{layout}")
    paths = [fmow_image_path(root, i) for i in range(len(labels))]
    _check_images_exist([paths[ood_val[0]]], "FMoW", layout)
    k = len(FMOW_CATEGORIES)
    sp = per_class_split(labels[ood_val], train_per_class=request.train_n // k,
                         val_per_class=request.val_per_class, test_per_class=0,
                         seed=request.seed, num_classes=k)
    if request.test_per_class is not None:
        te = per_class_split(labels[ood_test], train_per_class=0, val_per_class=0,
                             test_per_class=request.test_per_class, seed=request.seed,
                             num_classes=k)
        ood_test = ood_test[te.test]
    pool = ImageFiles(paths, labels, groups, transform=ResizeCenterCrop(request.image_size, 1.0))
    info = {"source": f"WILDS FMoW v1.1; target = OOD-val {OOD_VAL_YEAR}-{OOD_TEST_YEAR - 1} "
                      f"(train/val), OOD-test >= {OOD_TEST_YEAR}",
            "groups": "region: " + ", ".join(FMOW_REGIONS), "excluded": "region Other"}
    return TargetSplits(pool.subset(ood_val[sp.train]), pool.subset(ood_val[sp.val]),
                        pool.subset(ood_test), num_classes=k, num_groups=len(FMOW_REGIONS),
                        info=info)

