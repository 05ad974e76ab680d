"""Plain-JSON conversion and stable run ids: the same fields give the same id on any machine."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sims.infra.version import package_version

__all__ = ["canonical_json", "stable_id", "stable_id_with", "to_jsonable"]


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types (dict, list, str, int, float, bool, None).

    Handles dataclass instances (as dicts of their fields), mappings (keys become ``str``),
    tuples/lists/sets (lists; sets sorted), ``pathlib.Path`` (``str``), NumPy/JAX scalars and
    arrays (``.item()`` / nested lists) and enum-like objects with a ``value``. Floats are kept,
    including non-finite ones (Python's ``json`` writes them as ``NaN``/``Infinity``).

    Raises:
        TypeError: for objects of any other type (say which).

    Example:
        >>> import numpy as np
        >>> to_jsonable({'x': np.float64(0.5), 't': (1, 2), 'a': np.arange(2)})
        {'x': np.float64(0.5), 't': [1, 2], 'a': [0, 1]}
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=canonical_json)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
        arr = np.asarray(obj)
        return arr.item() if arr.ndim == 0 else arr.tolist()
    raise TypeError(f"to_jsonable: cannot convert object of type {type(obj).__name__!r} to JSON")


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of ``obj``: sorted keys, no whitespace, after :func:`to_jsonable`.

    Example:
        >>> canonical_json({'b': 1, 'a': [1.0, None]})
        '{"a":[1.0,null],"b":1}'
    """
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def stable_id(fields: Mapping[str, Any]) -> str:
    """16 hex characters identifying a run: sha256 of canonical JSON of ``fields`` + version.

    The same fields give the same id in any process or machine; a different package version
    gives a different id (results of another version are not reused).

    Example:
        >>> stable_id({'x': 1}) == stable_id({'x': 1}) != stable_id({'x': 2})
        True
    """
    if not isinstance(fields, Mapping):
        raise TypeError(
            f"stable_id expects a mapping of config fields, got {type(fields).__name__}"
        )
    return _digest(to_jsonable(fields), package_version())


def _digest(fields: dict, version: str) -> str:
    """The id of already converted ``fields`` (:func:`to_jsonable`) at package ``version``."""
    payload = json.dumps({"fields": fields, "package_version": version}, sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def stable_id_with(common: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], str]:
    """``fields -> stable_id({**common, **fields})`` for many ``fields`` sharing ``common``.

    ``common`` is converted to JSON types once (in a sweep it is the config's run settings, the
    same for every record), so an id costs one shallow merge, one ``json.dumps`` and one sha256
    instead of converting the whole mapping again. The ids are :func:`stable_id`'s, bit for bit.

    Example:
        >>> make = stable_id_with({'seed': 0, 'lr': None})
        >>> make({'n': 4}) == stable_id({'seed': 0, 'lr': None, 'n': 4})
        True
    """
    if not isinstance(common, Mapping):
        raise TypeError(f"stable_id_with expects a mapping, got {type(common).__name__}")
    base = to_jsonable(common)
    version = package_version()

    def make(fields: Mapping[str, Any]) -> str:
        return _digest({**base, **to_jsonable(fields)}, version)

    return make
