"""paper_figures: the paper's figures, drawn from stored result files only (never recomputed).

``python -m paper_figures theory --results OUT`` draws a ``sims.sweep`` folder's figures and
``python -m paper_figures realdata ...`` a ``realdata.benchmark`` folder's. No package imports
``paper_figures``; it reads records through :mod:`sims.records` and :mod:`sims.infra`.
"""

__all__ = ["realdata", "theory"]
