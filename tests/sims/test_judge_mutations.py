"""The judge can fail: a tiny sweep with one fault injected (monkeypatched) turns a claim red.

Each fault breaks one ingredient of the theory checks: the solver, the population loss, a
closed-form limit, or the sampler. For each, at least one claim must read ``fails`` and ``--strict``
must exit 1; the unmodified package must hold every claim. The sweep runs in-process with the
serial executor on a grid small enough to compile quickly.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import twolayer as tl
import twolayer.closed_form as tl_closed_form
import twolayer.losses as tl_losses
import twolayer.problems as tl_problems
from sims import engine
from sims.sweep import main

FLAGS = ["--dims", "6", "--widths", "2,3", "--ns", "3,6", "--seeds", "5", "--steps", "200",
         "--n-records", "4", "--executor", "serial", "--quiet", "--no-figures", "--strict"]
TOML = "mc_runs = 2\nmc_samples = 4096\n"


def _clear_engine_caches() -> None:
    engine.clear_caches()


def _sweep(tmp_path: Path) -> tuple[int, dict[str, dict]]:
    cfg = tmp_path / "mut.toml"
    cfg.write_text(TOML)
    _clear_engine_caches()
    try:
        code = main([*FLAGS, "--config", str(cfg), "--out", str(tmp_path / "out")])
    finally:
        _clear_engine_caches()
    verdicts = json.loads((tmp_path / "out" / "verdicts.json").read_text())["verdicts"]
    return code, {v["claim"]: v for v in verdicts}


# ------------------------------------------------------------------------------------------ faults

_finetune_core = tl.finetune_core


def gd_never_moves(mp: pytest.MonkeyPatch) -> None:
    """GD returns its start after claiming to have run every step."""

    def fake(problem, X, y, **kw):
        r = _finetune_core(problem, X, y, **kw)
        start = tl.empirical_loss(problem.v_src, problem.B_src, X, y, kw["activation"])
        return r._replace(v=problem.v_src, B=problem.B_src, train_loss=start,
                          target_loss=r.trace[0], trace=jnp.full_like(r.trace, r.trace[0]),
                          converged=jnp.asarray(False), diverged=jnp.asarray(False),
                          steps_taken=jnp.asarray(kw["steps"]))

    mp.setattr(tl, "finetune_core", fake)


def gd_one_step_says_converged(mp: pytest.MonkeyPatch) -> None:
    """GD stops after one step and reports convergence."""

    def fake(problem, X, y, **kw):
        r = _finetune_core(problem, X, y, **kw)
        one = _finetune_core(problem, X, y, **{**kw, "steps": 1, "n_records": 1})
        trace = jnp.where(jnp.arange(r.trace.shape[0]) == 0, r.trace[0], one.target_loss)
        return r._replace(v=one.v, B=one.B, train_loss=one.train_loss,
                          target_loss=one.target_loss, trace=trace, grad_norm=one.grad_norm,
                          converged=jnp.asarray(True), steps_taken=jnp.asarray(1))

    mp.setattr(tl, "finetune_core", fake)


def sigma_identity(mp: pytest.MonkeyPatch) -> None:
    """Σ := I in the losses and the bounds (Σ itself, its factor and its quadratic form)."""

    def eye(problem, family):
        return jnp.eye(problem.B_src.shape[-1], dtype=problem.B_src.dtype)

    for mod in (tl, tl_problems):
        mp.setattr(mod, "target_second_moment", eye)
    for mod in (tl_problems, tl_losses, tl.bounds):
        mp.setattr(mod, "target_quadratic_form", lambda problem, family, e: e @ e)
    for mod in (tl_problems, tl.bounds):
        mp.setattr(mod, "target_moment_root_t", lambda problem, family, Y: Y)


def relu_kernel_x2(mp: pytest.MonkeyPatch) -> None:
    """The arc-cosine kernel of the ReLU-Gaussian loss doubled."""
    orig = tl_losses.arccos_kernel
    mp.setattr(tl_losses, "arccos_kernel", lambda G: 2.0 * orig(G))


def sparse_loss_x2(mp: pytest.MonkeyPatch) -> None:
    """The ReLU loss of the sparse family doubled."""
    orig = tl_losses._sparse_relu_loss
    mp.setattr(tl_losses, "_sparse_relu_loss", lambda v, B, p: 2.0 * orig(v, B, p))


def first_limit_from_zero(mp: pytest.MonkeyPatch) -> None:
    """First-layer limit without the projection of the start: w∞ = X⁺y instead of
    w0 + X⁺(y − X w0) (drops (I − P_X) w0)."""

    def wrong(v_src, B_src, X, y):
        w0 = B_src.T @ v_src
        w_inf = jnp.linalg.pinv(X) @ y
        return B_src + jnp.outer(v_src, w_inf - w0) / (v_src @ v_src)

    mp.setattr(tl, "first_layer_limit", wrong)
    mp.setattr(tl_closed_form, "first_layer_limit", wrong)


def last_limit_one_step(mp: pytest.MonkeyPatch) -> None:
    """Last-layer limit replaced by one gradient step of size 1/σ_max(Z)² (no pseudo-inverse)."""

    def wrong(v_src, B_src, X, y, activation):
        Z = tl.features(B_src, X, activation)
        return v_src + Z.T @ (y - Z @ v_src) / jnp.maximum(jnp.linalg.norm(Z, 2) ** 2, 1e-300)

    mp.setattr(tl, "last_layer_limit", wrong)
    mp.setattr(tl_closed_form, "last_layer_limit", wrong)


def sampler_never_u1(mp: pytest.MonkeyPatch) -> None:
    """The sparse sampler never draws direction u_1."""
    orig = tl_problems.sample_source_inputs

    def fake(key, problem, family, n):
        if family != "sparse":
            return orig(key, problem, family, n)
        probs = problem.probs.at[0].set(0.0)
        kz, kj = jax.random.split(key)
        J = jax.random.categorical(kj, jnp.log(probs / probs.sum()), shape=(n,))
        z = jax.random.normal(kz, (n,), problem.B_src.dtype)
        return z[:, None] * problem.basis[J]

    mp.setattr(tl_problems, "sample_source_inputs", fake)
    mp.setattr(tl, "sample_source_inputs", fake)


FAULTS = [gd_never_moves, gd_one_step_says_converged, sigma_identity, relu_kernel_x2,
          sparse_loss_x2, first_limit_from_zero, last_limit_one_step, sampler_never_u1]


def test_unmodified_package_holds_every_claim(tmp_path: Path) -> None:
    code, verdicts = _sweep(tmp_path)
    assert code == 0
    assert {c: v["verdict"] for c, v in verdicts.items()} == {f"C{i}": "holds" for i in range(1, 8)}
    assert all(v["monte_carlo_comparisons"] > 0 for v in verdicts.values())


@pytest.mark.parametrize("fault", FAULTS, ids=[f.__name__ for f in FAULTS])
def test_each_fault_turns_a_claim_red(fault, tmp_path: Path, monkeypatch, capsys) -> None:
    with monkeypatch.context() as mp:
        fault(mp)
        code, verdicts = _sweep(tmp_path)
    failing = sorted(c for c, v in verdicts.items() if v["verdict"] == "fails")
    print(f"{fault.__name__}: fails {failing}")
    assert failing, {c: v["verdict"] for c, v in verdicts.items()}
    assert code == 1
