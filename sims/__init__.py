"""sims: vectorized sweeps that verify the two-layer theory (``python -m sims.sweep``).

Modules: ``config`` (frozen SweepConfig, presets, TOML), ``grid`` (runs, ids, shape groups),
``engine`` (one shape group -> records, vmapped and jitted), ``claims`` (verdicts C1–C7),
``summary`` (summary.csv), ``sweep`` (CLI), ``bench`` (engine vs NumPy loop), and the execution /
storage layer shared with ``realdata``: ``runs`` (RunStore, stable ids, atomic writes) and
``executors`` (serial, processes, dask, slurm; ``run_units``).
"""
