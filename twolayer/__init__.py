"""twolayer: the idealized two-layer network f(x) = vᵀφ(Bx) of surgical fine-tuning (math only).

Arrays in, arrays out (JAX). Shapes: d input dimension, k width, n samples; X (n, d), B (k, d), v (k,).
Float64 is recommended for theory checks: set ``jax.config.update("jax_enable_x64", True)`` in the
entry point (library code never sets it). See THEORY.md for the setting and the claims C1–C7.
"""

from twolayer import bounds, diagnostics
from twolayer._checks import ACTIVATIONS, FAMILIES, TUNE_MODES
from twolayer.closed_form import (
    first_layer_limit,
    last_layer_limit,
    lsq_flow_limit,
    lsq_gd_iterate,
    lsq_gd_path,
)
from twolayer.descent import (
    GD_METHODS,
    GDResult,
    auto_chunk_size,
    default_unroll,
    finetune,
    finetune_batch,
    finetune_core,
    record_schedule,
    smoothness_bound,
    uses_closed_form,
)
from twolayer.losses import (
    arccos_kernel,
    mc_population_loss,
    population_loss,
    target_second_moment_of_labels,
)
from twolayer.model import activate, empirical_loss, features, forward
from twolayer.problems import (
    SHIFT_KINDS,
    InputShift,
    OutputShift,
    Problem,
    Shift,
    check_problem,
    make_padded_problem,
    make_problem,
    prefix_stable_draws,
    sample_source_inputs,
    sample_target,
    shift_matrix,
    target_directions,
    target_moment_root_t,
    target_quadratic_form,
    target_second_moment,
)

__all__ = [
    "ACTIVATIONS",
    "FAMILIES",
    "GD_METHODS",
    "SHIFT_KINDS",
    "TUNE_MODES",
    "GDResult",
    "InputShift",
    "OutputShift",
    "Problem",
    "Shift",
    "activate",
    "arccos_kernel",
    "auto_chunk_size",
    "bounds",
    "check_problem",
    "default_unroll",
    "diagnostics",
    "empirical_loss",
    "features",
    "finetune",
    "finetune_batch",
    "finetune_core",
    "first_layer_limit",
    "forward",
    "last_layer_limit",
    "lsq_flow_limit",
    "lsq_gd_iterate",
    "lsq_gd_path",
    "make_padded_problem",
    "make_problem",
    "mc_population_loss",
    "population_loss",
    "prefix_stable_draws",
    "record_schedule",
    "sample_source_inputs",
    "sample_target",
    "shift_matrix",
    "smoothness_bound",
    "target_directions",
    "target_moment_root_t",
    "target_quadratic_form",
    "target_second_moment",
    "target_second_moment_of_labels",
    "uses_closed_form",
]
