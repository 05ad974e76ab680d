"""Version of the installed ``surgical-finetuning`` distribution (part of every run id)."""

from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path

__all__ = ["package_version"]

_DIST_NAME = "surgical-finetuning"


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """Version of the installed ``surgical-finetuning`` distribution.

    Falls back to ``[project].version`` of the repository's ``pyproject.toml`` when the package
    is used from a source checkout without being installed.

    Example:
        >>> isinstance(package_version(), str)
        True
    """
    try:
        return metadata.version(_DIST_NAME)
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - python 3.10
        tomllib = None
    if tomllib is not None and pyproject.is_file():
        with pyproject.open("rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])
    return "0+unknown"  # pragma: no cover


