"""Counting the lines a run store parses, for tests of how often it reads its file."""

from __future__ import annotations

import json
from unittest import mock


class ParseCounter:
    """Counts the lines the store parses (its ``json.loads`` calls) inside ``with``."""

    def __init__(self) -> None:
        self.lines = 0
        self._real = json.loads

    def __call__(self, text, *args, **kwargs):
        self.lines += 1
        return self._real(text, *args, **kwargs)

    def __enter__(self) -> ParseCounter:
        self._patch = mock.patch("sims.infra.store.json.loads", self)
        self._patch.start()
        return self

    def __exit__(self, *exc) -> None:
        self._patch.stop()
