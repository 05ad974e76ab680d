"""Exact population losses against Monte Carlo, and the closed-form kernel against sampling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import twolayer as tl

from .conftest import PROPERTY, input_shifts, output_shifts, problem_and_data, seeds

# Monte Carlo band: |exact − MC| ≤ 5 standard errors (a two-sided 5σ band: false alarms ~6e-7 per check).
Z_BAND = 5.0
N_MC = 200_000


@PROPERTY
@given(
    seed=seeds,
    activation=st.sampled_from(["linear", "relu"]),
    family=st.sampled_from(["gaussian", "sparse"]),
    shift=input_shifts | output_shifts,
)
def test_exact_loss_matches_monte_carlo(seed, activation, family, shift):
    """The exact loss uses the teacher (v*, B*); MC samples from the shift's definition."""
    p, _, _ = problem_and_data(seed, d=6, k=3, n=1, activation=activation, family=family, shift=shift)
    # Evaluate at a perturbed network, so the loss is not trivially that of the source network.
    kb = jax.random.PRNGKey(seed % 1000 + 1)
    v = p.v_src + 0.3 * jax.random.normal(kb, p.v_src.shape)
    B = p.B_src + 0.3 * jax.random.normal(jax.random.split(kb)[0], p.B_src.shape)
    exact = float(tl.population_loss(v, B, p, family, activation))
    mean, se = tl.mc_population_loss(jax.random.PRNGKey(seed % 997), v, B, p, family, activation, N_MC)
    assert abs(exact - float(mean)) <= Z_BAND * float(se) + 1e-12, (exact, float(mean), float(se))
    assert exact >= 0.0


@PROPERTY
@given(seed=seeds, m=st.integers(1, 4))
def test_arccos_kernel_matches_sampling(seed, m):
    key = jax.random.PRNGKey(seed)
    ka, kl, kx = jax.random.split(key, 3)
    a = jax.random.normal(ka, (m, 5))
    L = jax.random.normal(kl, (5, 5)) / 2 + jnp.eye(5)
    cov = L @ L.T
    x = jax.random.normal(kx, (N_MC, 5)) @ L.T
    h = jnp.maximum(x @ a.T, 0)
    prods = h[:, :, None] * h[:, None, :]
    mc, se = prods.mean(0), prods.std(0) / np.sqrt(N_MC)
    exact = tl.arccos_kernel(a @ cov @ a.T)
    assert np.all(np.abs(np.asarray(exact - mc)) <= Z_BAND * np.asarray(se) + 1e-12)


def test_arccos_kernel_handles_zero_rows():
    a = jnp.array([[0.0, 0.0], [1.0, 2.0]])
    K = tl.arccos_kernel(a @ a.T)
    assert np.all(np.isfinite(np.asarray(K)))
    np.testing.assert_allclose(K[0], 0.0)
    np.testing.assert_allclose(K[1, 1], 5.0 / 2)  # E[relu(g)²] = σ²/2


def test_linear_loss_is_the_quadratic_form():
    p, _, _ = problem_and_data(1, d=5, k=3, n=1, activation="linear", family="gaussian",
                               shift=tl.InputShift(2, 2.0))
    v, B = p.v_src * 1.3, p.B_src
    e = B.T @ v - p.B_star.T @ p.v_star
    want = e @ (p.A @ p.A.T) @ e
    np.testing.assert_allclose(tl.population_loss(v, B, p, "gaussian", "linear"), want, rtol=1e-12)


@PROPERTY
@given(seed=seeds, family=st.sampled_from(["gaussian", "sparse"]), shift=input_shifts | output_shifts,
       d=st.integers(4, 9), m=st.integers(1, 3))
def test_moment_root_factors_the_second_moment(seed, family, shift, d, m):
    """Mᵀ Y and ‖Mᵀe‖² (O(d²), never forming Σ) against Σ = E_trg[x xᵀ] formed in NumPy from its
    definition: A Aᵀ (Gaussian), Σ_j p_j (A u_j)(A u_j)ᵀ (sparse)."""
    p, _, _ = problem_and_data(seed, d=d, k=2, n=1, activation="linear", family=family, shift=shift)
    A, U, probs = (np.asarray(a) for a in (p.A, p.basis, p.probs))
    dirs = U @ A.T  # rows A u_j
    sigma = A @ A.T if family == "gaussian" else (dirs.T * probs) @ dirs
    M = np.asarray(tl.target_moment_root_t(p, family, jnp.eye(d))).T
    np.testing.assert_allclose(M @ M.T, sigma, rtol=1e-12, atol=1e-12 * np.abs(sigma).max())
    Y = np.asarray(jax.random.normal(jax.random.PRNGKey(seed + 1), (d, m)))
    np.testing.assert_allclose(tl.target_moment_root_t(p, family, jnp.asarray(Y)), M.T @ Y,
                               rtol=1e-12, atol=1e-12 * np.abs(M.T @ Y).max())
    e = Y[:, 0]
    np.testing.assert_allclose(tl.target_quadratic_form(p, family, jnp.asarray(e)), e @ sigma @ e,
                               rtol=1e-11)
