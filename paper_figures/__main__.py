"""``python -m paper_figures SUBCOMMAND ...``: one module per subcommand.

The subcommand ``NAME`` runs ``paper_figures.NAME.main(argv)``; a new figure family is a new module
listed in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = ("realdata", "rgn_weights", "theory")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m paper_figures {{{','.join(SUBCOMMANDS)}}} [options]")
        return 0 if args else 2
    if args[0] not in SUBCOMMANDS:
        print(f"error: unknown subcommand {args[0]!r}; known: {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    return int(importlib.import_module(f"paper_figures.{args[0]}").main(args[1:]))


if __name__ == "__main__":
    raise SystemExit(main())
