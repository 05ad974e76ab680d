"""Block maps: an ordered grouping of a model's parameters into named blocks.

A block map is an ordered mapping ``block name -> parameter-name patterns``. A pattern ``p``
matches a parameter (or module) name ``n`` when ``n == p``, ``n`` starts with ``p + "."``, or
``fnmatch(n, p)`` holds (so ``"layer1"`` matches every parameter of ``layer1`` and
``"features.[0-3].*"`` works for user models). Every parameter must match exactly one block:
:func:`assign_parameters` raises ``ValueError`` naming the parameters that match none or several.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

from torch import nn

__all__ = ["BlockMap", "assign_parameters", "block_of", "matches"]

#: Ordered ``block -> patterns``; the order is the network's depth order (input first, head last).
BlockMap = Mapping[str, Sequence[str]]


def matches(name: str, pattern: str) -> bool:
    """Whether ``pattern`` matches the dotted parameter/module ``name`` (see module docstring)."""
    return name == pattern or name.startswith(pattern + ".") or fnmatchcase(name, pattern)


def block_of(name: str, block_map: BlockMap) -> list[str]:
    """All blocks whose patterns match ``name`` (a correct map gives exactly one)."""
    return [b for b, pats in block_map.items() if any(matches(name, p) for p in pats)]


def assign_parameters(
    model: nn.Module | Iterable[tuple[str, object]], block_map: BlockMap
) -> dict[str, list[str]]:
    """Map each block to the names of its parameters (in ``named_parameters`` order).

    Args:
        model: a module, or an iterable of ``(name, parameter)`` pairs.
        block_map: ordered ``block -> patterns``.

    Returns:
        ``{block: [parameter names]}`` in block-map order; every block present (possibly empty).

    Raises:
        ValueError: if the map is empty, a block has no patterns, or a parameter matches no block or
            several blocks (the message lists up to 10 offending names and the blocks).
    """
    if not block_map:
        raise ValueError("block map is empty; expected an ordered mapping block -> patterns")
    for b, pats in block_map.items():
        if isinstance(pats, str) or not pats:
            raise ValueError(f"block {b!r} needs a non-empty sequence of patterns; got {pats!r}")
    named = model.named_parameters() if isinstance(model, nn.Module) else model
    out: dict[str, list[str]] = {b: [] for b in block_map}
    missing: list[str] = []
    multiple: list[str] = []
    for name, _ in named:
        hits = block_of(name, block_map)
        if not hits:
            missing.append(name)
        elif len(hits) > 1:
            multiple.append(f"{name} -> {hits}")
        else:
            out[hits[0]].append(name)
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} parameter(s) in no block: {missing[:10]}"
            + (" ..." if len(missing) > 10 else "")
        )
    if multiple:
        problems.append(f"{len(multiple)} parameter(s) in several blocks: {multiple[:10]}")
    if problems:
        raise ValueError(
            "block map must put every parameter in exactly one block; "
            + "; ".join(problems)
            + f"; blocks: {dict(block_map)}"
        )
    return out
