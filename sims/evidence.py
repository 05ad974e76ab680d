"""Independent evidence for the verdicts: quantities computed by a different route than the records.

Two kinds, both pure functions of the run's problem, data and PRNG key:

* :func:`run_evidence` (every run, inside the engine's batched runner, cheap):
  - ``loss_scale`` = E_trg[y²] + E_trg[f_src²], the size of the terms whose difference is a loss
    (the absolute rounding floor of the zero tests is a multiple of eps × loss_scale);
  - ``c1_pool_loss``, ``pool_y2``: mean of (f_{v_src, B_src A⁻¹}(x_i) − y_i)² and of y_i² over the
    run's own samples, which ``sample_target`` drew from the shift's definition (never the teacher),
    with A⁻¹ applied by a linear solve: C1 is a pointwise statement about those samples;
  - per closed-form tune mode (last layer; first layer with φ = identity) the GD iterate recomputed
    after the run's ``steps_taken`` steps through a thin SVD and the scalar coefficients
    c_t(s) = (1 − (1 − ηs²/n)^t)/s (``cf_gap``: its distance to the solver's final parameters,
    ``cf_moved``: its distance to the start, ``cf_norm``: the norms of start and iterate, for a
    rounding floor; ``cf_target_loss``: its exact target loss). The parameters are v (last layer)
    or the predictor w = Bᵀv_src (first layer);
  - ``start_train_loss`` per tune mode, so that the judge can tell a solver that moved from one that
    did not.
* :func:`mc_evidence` (a random subset of runs per cell, :func:`mc_selected`): Monte Carlo estimates
  (mean, standard error) of the target loss at the points the claims read, from fresh samples drawn
  by ``sample_target`` (the shift's definition), and a population-optimal head for C2 fitted by least
  squares on other fresh samples.

The judge (:mod:`sims.claims`) compares these with the records' exact values.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from sims.infra import canonical_json

# Keys of the per-run point dict (``points``) that the engine's runner returns; each is (v, B).
MC_POINTS = ("pretrained", "c1", "first", "last", "full", "last_limit", "first_limit")


def mc_selected(cfg, cell: dict[str, Any]) -> frozenset[int]:
    """Seed indices of ``cell`` (a run's fields without ``seed_index``) that get Monte Carlo checks.

    ``cfg.mc_runs`` seeds per cell (all if fewer), drawn without replacement from the
    gradient-descent tier (``cfg.gd_tier``, every seed unless ``gd_seeds`` is set, so that every
    tune mode's point is checked) by a generator seeded from (base seed, cell): random,
    reproducible, and independent of the GD results.
    """
    m = min(cfg.mc_runs, cfg.gd_tier)
    if m <= 0:
        return frozenset()
    text = canonical_json({"seed": cfg.seed, "mc": 1, **cell})
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little"))
    return frozenset(int(s) for s in rng.choice(cfg.gd_tier, size=m, replace=False))


def _sq_mean(a, mask, count):
    import jax.numpy as jnp

    return jnp.sum(mask * a * a) / count


def run_evidence(problem, X, y, mask, results, *, activation: str, family: str,
                 steps_taken: dict) -> dict:
    """Cheap per-run evidence (module docstring). Traced inside the engine's ``vmap``.

    Args:
        problem: the (k-padded) problem.  X: (n_pad, d) samples, zero past the valid rows;
        y: (n_pad,) labels.  mask: (n_pad,) 1 on valid rows.
        results: ``{tune: GDResult}`` of the runner (computed with n = n_pad, lr as used).
        steps_taken: ``{tune: steps}`` (same as ``results[tune].steps_taken``).

    Returns:
        A dict of scalars: ``loss_scale``, ``c1_pool_loss``, ``pool_y2``, and per tune
        ``{tune}_start_train_loss``, and for closed-form tunes ``{tune}_cf_gap``,
        ``{tune}_cf_moved``, ``{tune}_cf_norm``, ``{tune}_cf_target_loss``.
    """
    import jax.numpy as jnp

    import twolayer as tl
    from twolayer.closed_form import gd_coef

    count = jnp.sum(mask)
    n_pad = X.shape[0]
    zero_head = jnp.zeros_like(problem.v_star)
    out: dict[str, Any] = {}
    out["loss_scale"] = (
        tl.target_second_moment_of_labels(problem, family, activation)
        + tl.population_loss(problem.v_src, problem.B_src, problem._replace(v_star=zero_head),
                             family, activation))
    B_c1 = jnp.linalg.solve(problem.A.T, problem.B_src.T).T
    out["c1_pool_loss"] = _sq_mean(tl.forward(problem.v_src, B_c1, X, activation) - y, mask, count)
    out["pool_y2"] = _sq_mean(y, mask, count)
    for tune, r in results.items():
        r0 = tl.forward(problem.v_src, problem.B_src, X, activation) - y
        out[f"{tune}_start_train_loss"] = 0.5 * _sq_mean(r0, mask, count)
        if not tl.uses_closed_form(tune, activation):
            continue
        t = steps_taken[tune]
        if tune == "last":
            F, u0, eta = tl.features(problem.B_src, X, activation), problem.v_src, r.lr
            u_gd = r.v
        else:
            vv = problem.v_src @ problem.v_src
            F, u0, eta = X, problem.B_src.T @ problem.v_src, r.lr * vv
            u_gd = r.B.T @ problem.v_src
        U, s, Vt = jnp.linalg.svd(F, full_matrices=False)
        u_t = u0 + Vt.T @ (gd_coef(s, t, eta, n_pad) * (U.T @ (y - F @ u0)))
        out[f"{tune}_cf_gap"] = jnp.linalg.norm(u_gd - u_t)
        out[f"{tune}_cf_moved"] = jnp.linalg.norm(u_t - u0)
        out[f"{tune}_cf_norm"] = jnp.linalg.norm(u0) + jnp.linalg.norm(u_t)
        if tune == "last":
            loss_t = tl.population_loss(u_t, problem.B_src, problem, family, activation)
        else:
            B_t = problem.B_src + jnp.outer(problem.v_src, u_t - u0) / vv
            loss_t = tl.population_loss(problem.v_src, B_t, problem, family, activation)
        out[f"{tune}_cf_target_loss"] = loss_t
    return out


def mc_evidence(key, problem, points: dict, *, activation: str, family: str, n_mc: int) -> dict:
    """Monte Carlo evidence for one run: fresh samples from the shift's definition.

    Args:
        key: the run's PRNG key (the engine folds in 2 and 3 here; 0 and 1 made the problem and
            its samples).
        problem: the (k-padded) problem.
        points: ``{name: (v, B)}``, names from :data:`MC_POINTS` (any subset).
        n_mc: samples per estimate.

    Returns:
        ``{name: (mean, se)}`` of (f(x) − y)² for every point, ``labels2`` (mean, se) of y²
        (E_trg[y²] = t² E_src[y_src²]), and for φ = identity ``c2_head``: (exact loss, mean, se) of
        the head fitted by least squares on n_mc other fresh samples with B = B_src.
    """
    import jax
    import jax.numpy as jnp

    import twolayer as tl

    X, y = tl.sample_target(jax.random.fold_in(key, 2), problem, family, activation, n_mc)

    def mean_se(sq):
        return jnp.stack([jnp.mean(sq), jnp.std(sq) / jnp.sqrt(n_mc)])

    out = {name: mean_se((tl.forward(v, B, X, activation) - y) ** 2) for name, (v, B) in points.items()}
    out["labels2"] = mean_se(y * y)
    if activation == "linear":
        X2, y2 = tl.sample_target(jax.random.fold_in(key, 3), problem, family, activation, n_mc)
        F = tl.features(problem.B_src, X2, activation)
        v_hat = jnp.linalg.lstsq(F, y2)[0]
        exact = tl.population_loss(v_hat, problem.B_src, problem, family, activation)
        out["c2_head"] = jnp.concatenate(
            [exact[None], mean_se((tl.forward(v_hat, problem.B_src, X, activation) - y) ** 2)])
    return out
