"""Cost breakdown of one sweep run (``sims.engine._run_one``) by piece, on the local CPU.

    python scripts/profile_run_one.py [--d 256] [--k 2] [--batch 8] [--family gaussian]
        [--activation linear] [--repeat 3] [--gd-steps 200]

Builds ``batch`` problems of one (d, k, family) with the shifts of the quick preset alternating
(input scale, output), samples padded to n_max = 2d rows with n_valid spread over the grid's n/d,
and times each piece of a run, ``jit(vmap(piece))`` over the batch, warm (compiled first; the best
of ``--repeat`` calls), in float64. Also times the whole ``_run_one`` the same way. Prints one JSON
object: per piece its seconds per batch, its FLOPs per batch from XLA's cost analysis (None
where XLA does not report them) and its share of the summed seconds. Timings on a shared machine
are noisy: compare shares and ratios measured in one process.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import sims.runtime  # noqa: F401  (float64, XLA flags)
import twolayer as tl
from sims import engine, evidence
from twolayer import bounds
from twolayer.diagnostics import feature_rank, sampled_directions, unsampled_count


def _inputs(d: int, k: int, family: str, activation: str, batch: int, n: int | None = None):
    """``batch`` problems; samples padded to 2d rows with n_valid spread over the grid's n/d, or
    (``n`` given) n rows, all valid (one shape group of the full preset)."""
    ratios = np.array([0.0625, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
    n_max = 2 * d if n is None else n
    probs, Xs, ys, nv, inp = [], [], [], [], []
    for b in range(batch):
        shift = tl.InputShift(1, 3.0) if b % 2 == 0 else tl.OutputShift(-1.0)
        key = jax.random.PRNGKey(b)
        p = tl.make_problem(jax.random.fold_in(key, 0), d=d, k=k, activation=activation,
                            family=family, shift=shift, nonneg_head=True)
        X, y = tl.sample_target(jax.random.fold_in(key, 1), p, family, activation, n_max)
        n_b = n_max if n is not None else max(1, round(ratios[b % len(ratios)] * d))
        mask = (np.arange(n_max) < n_b).astype(np.float64)
        probs.append(p)
        Xs.append(np.asarray(X) * mask[:, None])
        ys.append(np.asarray(y) * mask)
        nv.append(float(n_b))
        inp.append(isinstance(shift, tl.InputShift))
    problems = jax.tree.map(lambda *a: jnp.stack(a), *probs)
    return problems, jnp.asarray(np.stack(Xs)), jnp.asarray(np.stack(ys)), jnp.asarray(nv), \
        jnp.asarray(inp)


def _pieces(activation: str, family: str, steps: int, gd_steps: int, n_records: int):
    """name -> function(problem, X, y, n_valid, is_input) of one run."""

    def loss(p, v, B):
        return tl.population_loss(v, B, p, family, activation)

    def tune(name):
        budget = steps if tl.uses_closed_form(name, activation) else gd_steps
        return lambda p, X, y, nv, ii: tl.finetune_core(
            p, X, y, tune=name, activation=activation, family=family, steps=budget, lr=None,
            gtol=1e-8, n_records=n_records, n_valid=nv)

    pieces = {
        "population_loss (one call)": lambda p, X, y, nv, ii: loss(p, p.v_src, p.B_src),
        "oracle solve B_src A^-1": lambda p, X, y, nv, ii: jnp.linalg.solve(p.A.T, p.B_src.T).T,
        "tune last (closed form)": tune("last"),
        "tune first": tune("first"),
        "tune full (GD)": tune("full"),
        "last_layer_limit": lambda p, X, y, nv, ii: tl.last_layer_limit(p.v_src, p.B_src, X, y,
                                                                         activation),
        "feature_rank": lambda p, X, y, nv, ii: feature_rank(tl.features(p.B_src, X, activation)),
    }
    if activation == "linear":
        pieces["first_layer_limit"] = lambda p, X, y, nv, ii: tl.first_layer_limit(
            p.v_src, p.B_src, X, y)
        pieces["first_layer_bound"] = lambda p, X, y, nv, ii: bounds.first_layer_linear_loss_of(
            p, family, X)
        pieces["c2_floor"] = lambda p, X, y, nv, ii: bounds.c2_floor_of(p, family)
    else:
        pieces["c4_floor"] = lambda p, X, y, nv, ii: bounds.c4_floor(p, family, activation)
    if family == "sparse":
        pieces["sampled/unsampled"] = lambda p, X, y, nv, ii: unsampled_count(
            p, sampled_directions(p, X))

    def ev(p, X, y, nv, ii):
        mask = (jnp.arange(X.shape[0]) < nv).astype(X.dtype)
        results = {t: tune(t)(p, X, y, nv, ii) for t in ("first", "last")
                   if tl.uses_closed_form(t, activation)}
        return evidence.run_evidence(p, X, y, mask, results, activation=activation, family=family,
                                     steps_taken={t: r.steps_taken for t, r in results.items()})

    pieces["run_evidence (+ its closed-form tunes)"] = ev
    pieces["_run_one (whole run)"] = lambda p, X, y, nv, ii: engine._run_one(
        p, X, y, nv, ii, activation=activation, family=family, tunes=("first", "last", "full"),
        steps=steps, gd_steps=gd_steps, n_records=n_records, gtol=1e-8, lr=None)
    return pieces


def _time(fn, args, repeat: int) -> tuple[float, float | None]:
    jf = jax.jit(jax.vmap(fn))
    compiled = jf.lower(*args).compile()
    try:
        ca = compiled.cost_analysis()
        ca = ca[0] if isinstance(ca, list) else ca
        flops = float(ca.get("flops")) if ca and "flops" in ca else None
    except Exception:  # backends without cost analysis
        flops = None
    jax.block_until_ready(compiled(*args))
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best, flops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n", type=int, default=None,
                    help="samples per run, all valid (default: 2d rows, n_valid spread over n/d)")
    ap.add_argument("--family", default="gaussian", choices=tl.FAMILIES)
    ap.add_argument("--activation", default="linear", choices=tl.ACTIVATIONS)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--gd-steps", type=int, default=200)
    ap.add_argument("--n-records", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated substrings of piece names")
    a = ap.parse_args(argv)
    args = _inputs(a.d, a.k, a.family, a.activation, a.batch, a.n)
    pieces = _pieces(a.activation, a.family, a.steps, a.gd_steps, a.n_records)
    rows = {}
    for name, fn in pieces.items():
        if a.only and not any(s in name for s in a.only.split(",")):
            continue
        sec, flops = _time(fn, args, a.repeat)
        rows[name] = {"seconds": sec, "flops": flops}
    total = sum(r["seconds"] for n, r in rows.items() if not n.startswith("_run_one"))
    for n, r in rows.items():
        r["share_of_pieces"] = None if n.startswith("_run_one") else r["seconds"] / total
    print(json.dumps({"d": a.d, "k": a.k, "batch": a.batch, "family": a.family,
                      "activation": a.activation, "n_rows": a.n or 2 * a.d, "gd_steps": a.gd_steps,
                      "pieces": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
