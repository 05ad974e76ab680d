"""Content fingerprints that key benchmark runs: checkpoint files and target splits.

* :func:`file_sha256`: sha256 of a file, cached by (resolved path, mtime_ns, size) in a JSON file,
  so a checkpoint is hashed once until it changes.
* :func:`splits_fingerprint`: a hash of what a reader returned: per split its length, labels,
  groups and content (image bytes of in-memory splits, file paths of image folders, the first,
  middle and last items of any other dataset), plus the
  reader's ``info`` (which says generated vs published data) and the task's reader version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from realdata.data.base import TargetSplits, TensorImages
from sims.infra import canonical_json, to_jsonable, write_json_atomic

__all__ = ["file_sha256", "splits_fingerprint"]


def file_sha256(path: str | Path, cache: str | Path | None = None) -> str:
    """Hex sha256 of ``path``'s bytes; ``cache`` (a JSON file) remembers it per path+mtime+size."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_mtime_ns}|{st.st_size}"
    table: dict[str, str] = {}
    if cache is not None and Path(cache).is_file():
        try:
            table = json.loads(Path(cache).read_text())
        except (OSError, json.JSONDecodeError):
            table = {}
        if key in table:
            return table[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if cache is not None:
        table = {k: v for k, v in table.items() if not k.startswith(f"{path}|")}
        table[key] = digest
        try:
            write_json_atomic(cache, table)
        except OSError:  # a read-only folder only loses the cache
            pass
    return digest


def _update_split(h: Any, ds: Any) -> None:
    h.update(f"{type(ds).__name__}|{len(ds)}|".encode())
    if isinstance(ds, TensorImages):
        for name in ("images", "labels", "groups"):
            t = getattr(ds, name, None)
            if isinstance(t, torch.Tensor):
                h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return
    known = False
    for name in ("paths", "files"):
        items = getattr(ds, name, None)
        if items is not None:
            known = True
            h.update("\n".join(map(os.fspath, items)).encode())
    for name in ("labels", "groups", "indices"):
        arr = getattr(ds, name, None)
        if arr is not None:
            h.update(np.asarray(arr).tobytes())
    if not known and len(ds):  # any other dataset: its first, middle and last items
        for i in sorted({0, len(ds) // 2, len(ds) - 1}):
            x, y, g = ds[i]
            h.update(torch.as_tensor(x).detach().cpu().contiguous().numpy().tobytes())
            h.update(f"|{int(y)}|{int(g)}|".encode())


def splits_fingerprint(splits: TargetSplits, reader_version: str) -> str:
    """16 hex characters identifying the data a run trains and is evaluated on."""
    h = hashlib.sha256()
    h.update(f"reader {reader_version}|".encode())
    h.update(canonical_json(to_jsonable(dict(splits.info))).encode())
    for ds in (splits.train, splits.val, splits.test):
        _update_split(h, ds)
    return h.hexdigest()[:16]
