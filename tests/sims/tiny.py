"""A tiny sweep config shared by the sims and paper_figures tests (seconds, not minutes)."""

from sims.config import SweepConfig
from twolayer import InputShift

TINY = SweepConfig(
    dims=(8,), widths=(2, 4), n_ratios=(0.5, 1.0), seeds=6, steps=300, n_records=5,
    input_shifts=(InputShift(1, 3.0, "scale"),), output_shifts=(-1.0,),
)
TINY_FLAGS = ["--dims", "8", "--widths", "2,4", "--n-ratios", "0.5,1", "--seeds", "6",
              "--steps", "300", "--n-records", "5"]
