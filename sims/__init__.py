"""sims: vectorized sweeps that verify the two-layer theory (``python -m sims.sweep``).

Public modules (importing ``sims`` itself imports nothing, so ``sims.infra`` stays light for
``realdata`` and ``paper_figures``):

* :mod:`sims.config`: the frozen :class:`~sims.config.SweepConfig`, presets (``quick``, ``full``,
  ``gpu``; also files in ``configs/``), TOML files and overrides.
* :mod:`sims.grid`: runs, record ids and shape groups (pure data).
* :mod:`sims.engine`: one shape group -> its records (vmapped, jitted, sharded);
  :func:`~sims.engine.build_run` rebuilds one run's problem and data.
* :mod:`sims.records`: the record schema (:class:`~sims.records.SimsRecord`, ``schema_version``),
  :func:`~sims.records.read_records`.
* :mod:`sims.claims`: verdicts on claims C1–C7; :mod:`sims.summary`: ``summary.csv``.
* :mod:`sims.sweep` (CLI), :mod:`sims.bench` (engine against a NumPy loop), :mod:`sims.runtime`
  (XLA flags and float64, imported first by the entry points).
* :mod:`sims.infra`: the science-free floor shared with ``realdata`` and ``paper_figures`` (run
  store, executors, atomic writes, ids, version, statistics).

Example::

    from sims.config import preset
    from sims.engine import compute_group
    from sims.grid import shape_groups

    records = [r for g in shape_groups(preset("quick")) for r in compute_group(g)]
"""

__all__ = ["bench", "claims", "config", "engine", "grid", "infra", "records", "runtime", "summary",
           "sweep"]
