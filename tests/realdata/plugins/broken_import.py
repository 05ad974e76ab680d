"""A task module whose own import fails (the error must name the missing module)."""

import realdata_missing_dependency  # noqa: F401
