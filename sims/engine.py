"""The vectorized engine: one shape group -> its records.

Per group, the functions are compiled once: a *builder* (``make_problem`` + ``sample_target`` for
every (k, shift) of the group, mapped over seeds; a merged group's widths are a ``lax.map`` over
``twolayer.make_padded_problem`` with the width traced, one trace per shift) and one *runner* per
activation (every tune mode,
the closed forms, the exact losses and the bounds of one run, ``vmap``-ed over the batch). The batch
axis is sharded over the devices (``shard_map``; see :func:`default_devices`) and processed in
chunks of fixed size, so one compilation serves the whole group.

Shape buckets (``SweepConfig.shape_buckets``, unmerged groups): a group's problems are padded to
the bucket's width and its data to the bucket's sample size (:attr:`sims.grid.ShapeGroup.padded`),
and its batch size per seed tier is the bucket's (:func:`chunk_size` reads the padded shape), so the
runners, the Monte Carlo programs, the expansion step (:func:`_expand`) and the builder are one
compiled program per bucket: the builder (:func:`_padded_builder`) takes the group's width as an
argument and draws every problem at the bucket's width, keeping the first k rows
(``twolayer.make_padded_problem``; JAX's draws are prefix-stable, so these are ``make_problem``'s
draws). Every run gets the same problem and data as unpadded up to rounding, and the first n rows
of the pool are the run's data whatever the padded n.

Padding is exact. A zero sample (x = 0, y = 0) has zero output and zero gradient because φ(0) = 0
and the network has no bias; the normalisations by n of ``twolayer`` (loss, step 1/L, gradient) all
scale by the same factor n/n_pad, so the GD iterates are unchanged (train loss is rescaled back).
A zero hidden unit (v_j = 0, B_j = 0) has zero gradient in v_j and B_j, contributes nothing to
outputs or losses, and stays zero. ``tests/sims/test_engine.py`` checks padded runs against
unpadded ``twolayer.finetune`` calls.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import sims.runtime  # noqa: F401  (XLA flags and float64 before anything computes)
import twolayer as tl
from sims import evidence
from sims.config import SweepConfig
from sims.grid import (
    RecordIds,
    Run,
    ShapeGroup,
    problem_seed,
    run_methods,
    run_settings,
    shifts_of,
    tunes_of,
)
from sims.infra import package_version
from sims.records import SimsRecord, to_records
from twolayer import bounds
from twolayer.diagnostics import feature_rank, limit_gap, sampled_directions, unsampled_count

__all__ = ["DeviceClock", "build_run", "chunk_size", "clear_caches", "compute_group", "default_devices",
           "device_clock", "device_memory_budget", "mc_batch_size",
           "problem_key", "program_keys", "run_group", "stream_keys"]


def problem_key(cfg: SweepConfig, run: Run) -> jax.Array:
    """The PRNG key of a run's problem and sample pool (from :func:`sims.grid.problem_seed`)."""
    return jax.random.PRNGKey(np.uint32(problem_seed(cfg, run)))


def stream_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(problem key, sample key) of a run key: ``make_problem`` draws from the first and
    ``sample_target`` from the second."""
    return jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)


def build_run(cfg: SweepConfig, run: Run) -> tuple[tl.Problem, jnp.ndarray, jnp.ndarray]:
    """The unbatched, unpadded (problem, X (n, d), y (n,)) of ``run``, exactly as the engine builds
    it (same keys, same pool; X and y are the first n rows of the pool)."""
    kp, ks = stream_keys(problem_key(cfg, run))
    p = tl.make_problem(kp, d=run.d, k=run.k, activation=run.activation, family=run.family,
                        shift=run.shift, nonneg_head=cfg.nonneg_head, p1=cfg.p1)
    X, y = tl.sample_target(ks, p, run.family, run.activation, run.pool_n)
    return p, X[: run.n], y[: run.n]


def _build(keys, make, n_k: int, shifts: tuple, activations: tuple[str, ...], family: str,
           pool_n: int, k_pad: int, widths=None):
    """``keys (C, S) -> (problems, X, ys)`` with C = n_k * len(shifts) combos (k outer).

    Without ``widths``, ``make(i, shift)`` is ``key -> Problem`` for the i-th width, traced once
    per (width, shift) (the shift is static). With ``widths`` ((n_k,) int, traced),
    ``make(k, shift)`` takes the width as a traced scalar and the widths are a ``lax.map``: one
    trace per shift serves every width (``twolayer.make_padded_problem``). ``sample_target`` is
    traced once per (width or map, activation), mapped over shifts and seeds (same key, so the
    inputs X are shared and only the labels depend on the activation). Problems are zero-padded to
    width ``k_pad`` after sampling; X is (C, S, pool_n, d) and ys a tuple (one per activation) of
    (C, S, pool_n)."""

    def pad_k(p):
        pk = k_pad - p.v_src.shape[-1]
        zk = ((0, 0), (0, pk))
        return p._replace(
            v_src=jnp.pad(p.v_src, zk), B_src=jnp.pad(p.B_src, (*zk, (0, 0))),
            v_star=jnp.pad(p.v_star, zk), B_star=jnp.pad(p.B_star, (*zk, (0, 0))),
        )

    def one_width(width_keys, make_one):
        """(len(shifts), S) keys of one width -> its (problems, X, ys), leading len(shifts) * S."""
        probs = []
        for j, shift in enumerate(shifts):
            one = make_one(shift)
            probs.append(jax.lax.map(lambda kk, one=one: one(stream_keys(kk)[0]), width_keys[j]))
        batch = jax.tree.map(lambda *a: jnp.stack(a), *probs)  # (len(shifts), S, ...)
        flat = jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), (width_keys, batch))

        ys = []
        for act in activations:
            def sample(args, act=act):
                kk, p = args
                return tl.sample_target(stream_keys(kk)[1], p, family, act, pool_n)

            X, y = jax.lax.map(sample, flat)
            ys.append(y)
        return pad_k(jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), batch)), X, tuple(ys)

    per_width = keys.reshape((n_k, len(shifts), *keys.shape[1:]))
    if widths is None:
        outs = [one_width(per_width[i], functools.partial(make, i)) for i in range(n_k)]
        probs, X, y = jax.tree.map(lambda *a: jnp.concatenate(a), *outs)
    else:
        mapped = jax.lax.map(lambda args: one_width(args[0], functools.partial(make, args[1])),
                             (per_width, widths))
        probs, X, y = jax.tree.map(lambda a: a.reshape((-1, *a.shape[2:])), mapped)
    S = keys.shape[1]
    return jax.tree.map(lambda a: a.reshape((-1, S, *a.shape[1:])), (probs, X, y))


@functools.lru_cache(maxsize=128)
def _builder(d: int, ks: tuple[int, ...], shifts: tuple, activations: tuple[str, ...],
             family: str, pool_n: int, nonneg: bool, p1: float, k_pad: int | None = None):
    """Jitted ``keys (C, S) -> (problems, X, ys)`` (:func:`_build`) with the widths ``ks``
    static: ``make_problem`` at each width, its samples, then zero-padding to ``k_pad`` (default
    max(ks)). The problems of an unbucketed group of one width (:func:`_preparer`)."""
    k_pad = max(ks) if k_pad is None else k_pad

    def make(i, shift):
        return functools.partial(tl.make_problem, d=d, k=ks[i], activation=activations[0],
                                 family=family, shift=shift, nonneg_head=nonneg, p1=p1)

    return jax.jit(lambda keys: _build(keys, make, len(ks), shifts, activations, family, pool_n,
                                       k_pad))


@functools.lru_cache(maxsize=128)
def _padded_build(d: int, k_pad: int, n_k: int, shifts: tuple, activations: tuple[str, ...],
                  family: str, pool_n: int, nonneg: bool, p1: float):
    """``(keys (C, S), widths (n_k,) int) -> (problems, X, ys)`` (:func:`_build`) with the widths
    traced: ``twolayer.make_padded_problem`` draws every problem at width ``k_pad`` and keeps its
    first k rows, so one program serves every width. Several widths (a merged group) are a
    ``lax.map`` (one trace of the problem per shift); one width (a bucketed group) is traced
    directly. The draws are ``make_problem``'s bit for bit (they are prefix-stable,
    ``twolayer.prefix_stable_draws``); v_src (a traced 1/√k), B_star (a solve with more
    right-hand sides) and the labels (the padded network's outputs) equal the unpadded ones up to
    rounding. Cached: one function object per arguments (a key of :func:`_preparer`'s cache)."""

    def make(k, shift):
        return functools.partial(tl.make_padded_problem, d=d, k=k, k_pad=k_pad,
                                 activation=activations[0], family=family, shift=shift,
                                 nonneg_head=nonneg, p1=p1)

    def build(keys, widths):
        if n_k == 1:
            return _build(keys, lambda i, shift: make(widths[i], shift), 1, shifts, activations,
                          family, pool_n, k_pad)
        return _build(keys, make, n_k, shifts, activations, family, pool_n, k_pad, widths)

    return build


@functools.lru_cache(maxsize=128)
def _padded_builder(d: int, k_pad: int, n_k: int, shifts: tuple, activations: tuple[str, ...],
                    family: str, pool_n: int, nonneg: bool, p1: float):
    """Jitted ``(seeds (C, S), widths (n_k,) int) -> (problems, X, ys)`` (:func:`_padded_build`):
    a shape bucket's builder, one program for every width of the bucket."""
    build = _padded_build(d, k_pad, n_k, shifts, activations, family, pool_n, nonneg, p1)
    return jax.jit(lambda seeds, widths: build(_keys(seeds), widths))


def _bucket_problems(group: ShapeGroup, seeds: np.ndarray):
    """``(problems, X, ys)`` of a bucketed group's seeds (C, S): one builder program per
    (d, family) bucket and seed count, whatever the group's widths."""
    cfg = group.config
    build = _padded_builder(group.d, group.padded[0], len(group.ks), shifts_of(cfg),
                            group.activations, group.family, group.pool_n, cfg.nonneg_head,
                            cfg.p1)
    return build(seeds, np.array(group.ks, dtype=np.int32))


def _keys(seeds: jnp.ndarray) -> jax.Array:
    """PRNG keys (C, S, 2) of the problem seeds (C, S) (= :func:`problem_key` of each run)."""
    return jax.vmap(jax.vmap(jax.random.PRNGKey))(seeds)


def _expand(n_ns: int, n_max: int, pad: int, seeds: int | None = None):
    """``(built, n_valid (B,), is_input (B,)) -> one runner input per activation``, where
    ``built = (problems, X, ys)`` with leading (C, S): the first ``seeds`` seeds (default all S)
    and ``n_max`` samples, each (combo, seed) repeated over the ``n_ns`` sample sizes (n fastest)
    and ``pad`` copies of the first run appended (padding the batch to a multiple of the device
    count; their results are dropped)."""

    def expand(a):  # (C, S, ...) -> (C*S*n_ns, ...) with n fastest
        a = jnp.repeat(a[:, :, None], n_ns, axis=2)
        return a.reshape((-1, *a.shape[3:]))

    def pad_batch(a):
        return jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]) if pad else a

    def prepare(built, n_valid, is_input):
        problems, X, ys = jax.tree.map(lambda a: a[:, :seeds], built)
        X = X[:, :, :n_max]
        n_valid = n_valid.astype(X.dtype)
        return tuple(jax.tree.map(pad_batch, (*jax.tree.map(expand, (problems, X, y[:, :, :n_max])),
                                              n_valid, is_input))
                     for y in ys)

    return prepare


@functools.lru_cache(maxsize=128)
def _preparer(build, n_ns: int, n_max: int, pad: int):
    """Jitted ``(seeds (C, S), widths (n_k,) int, n_valid (B,), is_input (B,)) -> one runner input
    per activation``: the PRNG keys of the seeds (:func:`problem_key`), the group's
    ``build(keys, widths)`` and :func:`_expand` in one compiled program per group."""
    expand = _expand(n_ns, n_max, pad)
    return jax.jit(lambda seeds, widths, n_valid, is_input: expand(build(_keys(seeds), widths),
                                                                   n_valid, is_input))


def _group_build(group: ShapeGroup):
    """The ``build(keys, widths)`` of an unbucketed group's preparer: a merged group's several
    widths through :func:`_padded_build` (one trace of the problem per shift for all widths), a
    group of one width through :func:`_builder` (``make_problem`` at that width)."""
    cfg = group.config
    args = (shifts_of(cfg), group.activations, group.family, group.pool_n, cfg.nonneg_head, cfg.p1)
    if len(group.ks) > 1:
        return _padded_build(group.d, group.padded[0], len(group.ks), *args)
    return _static_build(group.d, group.ks, *args, group.padded[0])


@functools.lru_cache(maxsize=128)
def _static_build(d: int, ks: tuple[int, ...], *args):
    """``build(keys, widths)`` that ignores ``widths``: :func:`_builder` (static widths)."""
    static = _builder(d, ks, *args)
    return lambda keys, widths: static(keys)


@functools.lru_cache(maxsize=128)
def _expander(n_ns: int, n_max: int, pad: int, seeds: int):
    """Jitted :func:`_expand`: shared by every group of a shape bucket (same input shapes)."""
    return jax.jit(_expand(n_ns, n_max, pad, seeds))


def _run_one(problem, X, y, n_valid, is_input, gd_on, *, activation, family, tunes, steps,
             gd_steps, n_records, gtol, lr):
    """All methods and diagnostics of one (possibly padded) run; returns a dict of arrays.

    Closed-form tune modes run ``steps`` steps, span-iteration ones (``twolayer.uses_closed_form``
    false) ``gd_steps``, and only where ``gd_on`` (a scalar shared by the batch, so a real branch
    under ``vmap``): the closed-form tier's seeds run the same program with ``gd_on`` false, and
    their span-iteration results are NaN placeholders that no record reads."""
    n_pad = X.shape[0]
    mask = (jnp.arange(n_pad) < n_valid).astype(X.dtype)
    X = X * mask[:, None]
    y = y * mask
    scale = n_pad / n_valid  # padded normalisation -> true normalisation

    def loss(v, B):
        return tl.population_loss(v, B, problem, family, activation)

    out: dict[str, Any] = {"L0": loss(problem.v_src, problem.B_src)}
    B_oracle = jnp.linalg.solve(problem.A.T, problem.B_src.T).T  # B_src A⁻¹
    out["oracle"] = jnp.where(is_input, loss(problem.v_src, B_oracle),
                              loss(problem.t * problem.v_src, problem.B_src))
    points = {"pretrained": (problem.v_src, problem.B_src), "c1": (problem.v_src, B_oracle)}
    results = {}
    for tune in tunes:
        budget = steps if tl.uses_closed_form(tune, activation) else gd_steps
        def run(tune=tune, budget=budget):
            return tl.finetune_core(problem, X, y, tune=tune, activation=activation, family=family,
                                    steps=budget, lr=lr, gtol=gtol, n_records=n_records)

        r = run() if tl.uses_closed_form(tune, activation) else jax.lax.cond(
            gd_on, run, functools.partial(_placeholder, jax.eval_shape(run)))
        results[tune] = r
        points[tune] = (r.v, r.B)
        out[tune] = {
            "target_loss": r.target_loss, "trace": r.trace, "train_loss": r.train_loss * scale,
            "converged": r.converged, "diverged": r.diverged, "steps_taken": r.steps_taken,
            "grad_norm_rel": r.grad_norm / jnp.where(r.grad_norm0 > 0, r.grad_norm0, 1.0),
            "lr": r.lr / scale,
        }
        if tune == "first":
            B_first = r.B
    v_inf = tl.last_layer_limit(problem.v_src, problem.B_src, X, y, activation)
    out["last_limit"] = loss(v_inf, problem.B_src)
    points["last_limit"] = (v_inf, problem.B_src)
    out["rank_z"] = feature_rank(tl.features(problem.B_src, X, activation))
    if activation == "linear":
        B_inf = tl.first_layer_limit(problem.v_src, problem.B_src, X, y)
        out["first_limit"] = loss(problem.v_src, B_inf)
        points["first_limit"] = (problem.v_src, B_inf)
        if "first" in tunes:
            out["first_limit_gap"] = limit_gap(B_first, B_inf, problem.B_src)
        out["first_layer_bound"] = bounds.first_layer_linear_loss_of(problem, family, X)
        out["c2_floor"] = bounds.c2_floor_of(problem, family)
    else:
        out["c4_floor"] = bounds.c4_floor(problem, family, activation)
    if family == "sparse":
        sampled = sampled_directions(problem, X)
        out["e1_sampled"] = sampled[0]
        out["n_unsampled"] = unsampled_count(problem, sampled)
    out["evidence"] = evidence.run_evidence(
        problem, X, y, mask, results, activation=activation, family=family,
        steps_taken={t: r.steps_taken for t, r in results.items()})
    out["points"] = points
    return out


def _placeholder(shapes):
    """A result of the shapes ``shapes`` (a tree of ``ShapeDtypeStruct``) that is not one: NaN
    floats, zero integers, false booleans."""
    def fill(a):
        if jnp.issubdtype(a.dtype, jnp.floating):
            return jnp.full(a.shape, jnp.nan, a.dtype)
        return jnp.zeros(a.shape, a.dtype)
    return jax.tree.map(fill, shapes)


@functools.lru_cache(maxsize=128)
def _runner(activation: str, family: str, tunes: tuple[str, ...], steps: int, gd_steps: int,
            n_records: int, gtol: float, lr: float | None, devices: tuple):
    """Jitted batched runner ``(problem, X, y, n_valid, is_input, gd_on) -> results``; each device
    runs its slice of the batch independently (``shard_map``, no collectives: per-device
    while-loops stop on their own). ``gd_on`` (a scalar bool, replicated) turns the span
    iterations on (the gradient-descent tier) or off (the closed-form tier), so both tiers run
    one compiled program."""
    fn = jax.vmap(functools.partial(_run_one, activation=activation, family=family, tunes=tunes,
                                    steps=steps, gd_steps=gd_steps, n_records=n_records, gtol=gtol,
                                    lr=lr), in_axes=(0, 0, 0, 0, 0, None))
    mesh = Mesh(np.array(devices), ("batch",))
    spec = PartitionSpec("batch")
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(spec,) * 5 + (PartitionSpec(),),
                                 out_specs=spec, check_vma=False))


def clear_caches() -> None:
    """Forget every traced builder, preparer, runner and Monte Carlo program of this process
    (and JAX's own caches), so the next group traces again: for tests that patch ``twolayer``."""
    for fn in (_builder, _padded_build, _padded_builder, _static_build, _preparer,
               _expander, _runner, _mc_runner):
        fn.cache_clear()
    jax.clear_caches()


def _shard(tree, devices):
    """Place the leading (batch) axis of every leaf across ``devices``."""
    mesh = Mesh(np.array(devices), ("batch",))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("batch")))


def default_devices() -> list:
    """Devices the batch is sharded over: all accelerators; on CPU only the first device.

    Multi-device CPU execution of the runner deadlocks intermittently in jaxlib 0.10.2 (threads
    parked at 0% CPU, also with :data:`sims.runtime.XLA_SAFE_FLAGS`), so on CPU the cores are used
    by running shape groups in parallel processes (``--executor processes``) instead.
    """
    devs = jax.devices()
    return devs if devs[0].platform != "cpu" else devs[:1]


class DeviceClock:
    """Seconds :func:`compute_group` spent in its compiled calls since the process started:
    dispatching them, compiling or loading them, waiting for their results and transferring
    them. The rest of a pass is host work (seeds, record assembly); ``sims.bench`` reports
    both."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start


#: The process's :class:`DeviceClock`.
device_clock = DeviceClock()


#: Working memory of one compiled call where the device does not report its memory (CPU).
DEFAULT_MEMORY_BYTES = 2e9


def device_memory_budget(devices: Sequence) -> float:
    """Bytes one compiled call may use per device: half the smallest accelerator memory
    (``memory_stats()["bytes_limit"]``), or :data:`DEFAULT_MEMORY_BYTES` where it is not reported."""
    limits = []
    for dev in devices:
        try:
            stats = dev.memory_stats() or {}
        except Exception:  # backends without memory stats
            stats = {}
        if stats.get("bytes_limit"):
            limits.append(stats["bytes_limit"])
    return 0.5 * min(limits) if len(limits) == len(devices) and limits else DEFAULT_MEMORY_BYTES


def chunk_size(group: ShapeGroup, n_devices: int, memory_bytes: float = DEFAULT_MEMORY_BYTES) -> int:
    """Problems per compiled call: the config's ``chunk``, capped by a rough memory estimate of
    ``memory_bytes`` per device (at the group's padded shape, so every group of a shape bucket
    gets the same size), rounded up to a multiple of the device count."""
    k, n = group.padded
    d = group.d
    per_problem = 8 * (6 * n * d + 8 * d * d + 64 * k * d) * 4
    cap = max(1, int(memory_bytes // per_problem)) * n_devices
    size = min(group.config.chunk, cap, len(group.runs()))
    return -(-size // n_devices) * n_devices


def _mc_selector(cfg: SweepConfig):
    """``run -> bool``: whether a run of ``cfg`` is in its cell's Monte Carlo subset
    (:func:`sims.evidence.mc_selected`), each cell's subset drawn once."""
    cells: dict[tuple, frozenset[int]] = {}

    def wanted(run: Run) -> bool:
        cell = {k: v for k, v in run.fields().items() if k != "seed_index"}
        key = tuple(cell.items())
        if key not in cells:
            cells[key] = evidence.mc_selected(cfg, cell)
        return run.seed_index in cells[key]

    return wanted


#: Monte Carlo runs per vectorized step on CPU: measured fastest there (quick preset, one group on
#: 2 cores: 0.43 s at 8, 0.61 s at 32, 0.77 s at 144 runs per step, 144 runs per call).
CPU_MC_BATCH = 8


def mc_batch_size(d: int, k_pad: int, n_mc: int, runs: int, platform: str,
                  memory_bytes: float = DEFAULT_MEMORY_BYTES) -> int:
    """Monte Carlo runs evaluated together (``lax.map``'s ``batch_size``) in a call of ``runs``:
    :data:`CPU_MC_BATCH` on CPU; on an accelerator all of them, unless a rough estimate of the
    working memory (fresh samples X, X2 of n_mc x d and the forward passes of 7 points, float64)
    exceeds ``memory_bytes``, which caps it. No sequential chunking below what memory requires."""
    if platform == "cpu":
        return max(1, min(CPU_MC_BATCH, runs))
    per_run = 8 * n_mc * (4 * d + 16 * k_pad + 16)
    return max(1, min(runs, int(memory_bytes // per_run)))


@functools.lru_cache(maxsize=128)
def _mc_runner(activation: str, family: str, n_mc: int, batch: int):
    def one(args):
        key, problem, points = args
        return evidence.mc_evidence(key, problem, points, activation=activation, family=family,
                                    n_mc=n_mc)

    return jax.jit(lambda seeds, problems, points: jax.lax.map(
        one, (jax.vmap(jax.random.PRNGKey)(seeds), problems, points), batch_size=batch))


@jax.jit
def _take_rows(tree, rows):
    """``leaf[rows]`` of every leaf of ``tree`` on its device (one program per shape)."""
    return jax.tree.map(lambda a: jnp.take(a, rows, axis=0), tree)


def _mc_rows_bound(group: ShapeGroup, seed_chunk: int) -> int:
    """Most Monte Carlo runs one runner call can hold: every (k, shift, n) cell of the call with
    ``min(mc_runs, gd_tier, seeds per call)`` seeds. :func:`_mc_part` gathers this many rows,
    padded, so its gather has one shape per seed tier."""
    cfg = group.config
    cells = len(group.ks) * len(shifts_of(cfg)) * len(group.ns)
    return cells * min(cfg.mc_runs, cfg.gd_tier, seed_chunk)


def _mc_part(run_indices: list[int], rows: list[int], seeds: list, problems, points,
             bound: int) -> tuple:
    """The Monte Carlo inputs of one runner batch: ``(run_indices, seeds (R,) uint32, problems,
    points)`` for the batch rows ``rows``. The problems are gathered on their device (not a
    transfer of the batch), ``rows`` padded to ``bound`` (:func:`_mc_rows_bound`) so the gather
    compiles once per seed tier, then brought to the host without the padding."""
    padded = jnp.asarray(rows + [rows[-1]] * (bound - len(rows)))
    problems = jax.tree.map(lambda a: np.asarray(a)[:len(rows)], _take_rows(problems, padded))
    points = jax.tree.map(lambda a: a[rows], points)
    return run_indices, np.asarray(seeds, dtype=np.uint32), problems, points


def _mc_batch(activation: str, family: str, n_mc: int, parts: list, devices: Sequence,
              memory_bytes: float) -> list[tuple[int, dict]]:
    """(run index, Monte Carlo evidence) of the queued runs of one activation, in one compiled
    call over the parts (:func:`_mc_part`) of all batches, on the first of ``devices``. A run's
    key is ``jax.random.PRNGKey(seed)`` of its problem seed, made inside the program."""
    if not parts:
        return []
    run_indices = [i for part in parts for i in part[0]]
    stack = jax.tree.map(lambda *a: np.concatenate(a), *[part[1:] for part in parts])
    k_pad = stack[1].B_src.shape[1]
    batch = mc_batch_size(stack[1].B_src.shape[2], k_pad, n_mc, len(run_indices),
                          devices[0].platform, memory_bytes)
    stack = jax.device_put(stack, devices[0])
    out = jax.tree.map(np.asarray, _mc_runner(activation, family, n_mc, batch)(*stack))
    return list(zip(run_indices, _rows(out)))


def _rows(tree) -> list:
    """Per-row copies of a tree of host arrays with a leading row axis, as Python values
    (``.tolist()`` once per leaf): row i is the tree of ``leaf[i]`` for every leaf."""
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        return []
    columns = [leaf.tolist() for leaf in leaves]
    return [jax.tree.unflatten(treedef, values) for values in zip(*columns)]


def _seed_tiers(cfg: SweepConfig) -> list[tuple[range, bool]]:
    """(seed indices, runs the gradient-descent modes) of each non-empty cost tier."""
    tiers = [(range(0, cfg.gd_tier), True), (range(cfg.gd_tier, cfg.seeds), False)]
    return [(seeds, gd) for seeds, gd in tiers if len(seeds)]


#: Cost of a gradient-descent-tier seed against a closed-form-tier seed, for choosing the seeds
#: per call of a two-tier group (:func:`shared_seed_chunk`): measured 4.5 on 2 CPU cores (d = 64,
#: n = 64, k = 8, both activations: 9.4 ms against 2.1 ms per run of each tier's runner, warm).
GD_SEED_WEIGHT = 4


def shared_seed_chunk(gd_seeds: int, cf_seeds: int, cap: int) -> int:
    """Seeds per call for both tiers of a two-tier group (the tiers then run one compiled program,
    whose shape is the call's): the chunk c <= ``cap`` (the memory's) that minimises the padded
    work ``GD_SEED_WEIGHT * ceil(g / c) c + ceil(r / c) c`` plus one seed per call, ties to the
    larger chunk.

    >>> shared_seed_chunk(32, 68, 1000), shared_seed_chunk(32, 68, 9), shared_seed_chunk(4, 6, 100)
    (34, 8, 4)
    """
    def cost(c: int) -> tuple[int, int]:
        calls_gd, calls_cf = -(-gd_seeds // c), -(-cf_seeds // c)
        return GD_SEED_WEIGHT * calls_gd * c + calls_cf * c + calls_gd + calls_cf, -c

    return min(range(1, max(1, min(cap, max(gd_seeds, cf_seeds))) + 1), key=cost)


def _tier_batches(group: ShapeGroup, per_call: int, n_devices: int) -> list[tuple[range, bool, int, int]]:
    """(seed indices, runs GD, seeds per call, batch size per call) of each cost tier. Two tiers
    share one seed chunk (:func:`shared_seed_chunk`), so one runner serves both."""
    combos = len(group.ks) * len(shifts_of(group.config))
    n_ns = len(group.ns)
    cap = max(1, per_call // (combos * n_ns))
    tiers = _seed_tiers(group.config)
    if len(tiers) == 2:
        chunk = shared_seed_chunk(len(tiers[0][0]), len(tiers[1][0]), cap)
        chunks = [chunk, chunk]
    else:
        chunks = [min(len(tier), cap) for tier, _ in tiers]
    out = []
    for (tier, gd), seed_chunk in zip(tiers, chunks):
        batch = -(-(combos * seed_chunk * n_ns) // n_devices) * n_devices
        out.append((tier, gd, seed_chunk, batch))
    return out


def program_keys(group: ShapeGroup, n_devices: int = 1,
                 memory_bytes: float = DEFAULT_MEMORY_BYTES) -> set[tuple]:
    """The compiled programs :func:`compute_group` runs for ``group``, one hashable key each; two
    groups share a program exactly when they share its key (same traced function, same input
    shapes). Per seed tier: the preparer (or, bucketed, the bucket's expansion; its builder has
    one shape for every tier and every width of the bucket) and one runner per activation, and
    in the gradient-descent tier the gather of the Monte Carlo runs' problems (``"take"``); per
    activation one Monte Carlo program. Small eager operations (transfers) are not counted."""
    cfg = group.config
    d, fam, acts = group.d, group.family, group.activations
    k_pad, n_pad = group.padded
    bucketed = bool(cfg.shape_buckets) and not cfg.merge_shapes
    per_call = chunk_size(group, n_devices, memory_bytes)
    keys: set[tuple] = set()
    tiers = _tier_batches(group, per_call, n_devices)
    build_seeds = max(t[2] for t in tiers)
    for _, gd, seed_chunk, batch in tiers:
        if bucketed:
            keys.add(("build", d, k_pad, len(group.ks), fam, build_seeds))
            keys.add(("expand", d, k_pad, n_pad, len(group.ns), build_seeds, seed_chunk, batch))
        else:
            keys.add(("prepare", d, group.ks, group.ns, fam, seed_chunk, batch))
        keys.update(("run", a, fam, tunes_of(cfg, a, True), d, k_pad, n_pad, batch) for a in acts)
        if gd and min(cfg.mc_runs, cfg.gd_tier) > 0:  # the Monte Carlo runs' gather
            keys.add(("take", d, k_pad, fam, batch, _mc_rows_bound(group, seed_chunk)))
    runs = group.runs()
    wanted = _mc_selector(cfg)
    for a in acts:
        queue = sum(1 for r in runs if r.activation == a and wanted(r))
        if queue:
            keys.add(("mc", a, fam, d, k_pad, queue))
    return keys


def compute_group(group: ShapeGroup, devices: Sequence | None = None) -> list[SimsRecord]:
    """Compute every record of ``group`` (pure: same group -> same numbers).

    Seeds of the gradient-descent tier (:attr:`SweepConfig.gd_tier`) run every tune mode; the
    others only the closed-form ones (:func:`sims.grid.tunes_of`), in batches of their own.

    Args:
        group: the shape group.
        devices: JAX devices to shard the batch over (default: :func:`default_devices`).

    Returns:
        The group's records, in :meth:`ShapeGroup.runs` order, one per (run, method) of
        :func:`sims.grid.run_methods`.
    """
    cfg = group.config
    devices = list(default_devices() if devices is None else devices)
    start = time.perf_counter()
    shifts = shifts_of(cfg)
    acts = group.activations
    combos = [(k, s) for k in group.ks for s in shifts]
    n_ns, n_seeds = len(group.ns), cfg.seeds
    n_pad = group.padded[1]
    bucketed = bool(cfg.shape_buckets) and not cfg.merge_shapes
    per_call = chunk_size(group, len(devices), device_memory_budget(devices))
    ns = np.array(group.ns)
    results: dict[int, dict] = {}
    runs = group.runs()
    mc_parts: dict[int, list] = {a_i: [] for a_i in range(len(acts))}  # per batch, see _mc_part
    mc_wanted = _mc_selector(cfg)
    tiers = _tier_batches(group, per_call, len(devices))
    build_seeds = max(t[2] for t in tiers)  # bucketed: one builder shape for every tier
    runners = [_runner(a, group.family, tunes_of(cfg, a, True), cfg.steps, cfg.gd_step_budget,
                       cfg.n_records, cfg.gtol, cfg.lr, tuple(devices)) for a in acts]  # both tiers
    for tier, gd, seed_chunk, batch in tiers:
        for s0 in range(tier.start, tier.stop, seed_chunk):
            s_idx = list(range(s0, min(s0 + seed_chunk, tier.stop)))
            s_pad = s_idx + [s_idx[-1]] * ((build_seeds if bucketed else seed_chunk) - len(s_idx))
            seeds = np.array([[problem_seed(cfg, Run(group.d, k, 0, group.pool_n, acts[0],
                                                     group.family, sh, s)) for s in s_pad]
                              for k, sh in combos], dtype=np.uint32)
            n_valid = np.tile(ns, len(combos) * seed_chunk).astype(np.float64)
            is_input = np.repeat([isinstance(sh, tl.InputShift) for _, sh in combos],
                                 seed_chunk * n_ns)
            count = n_valid.shape[0]
            with device_clock():
                if bucketed:  # the bucket's builder (same seed count in every tier), then expansion
                    inputs = _expander(n_ns, n_pad, batch - count, seed_chunk)(
                        _bucket_problems(group, seeds), n_valid, is_input)
                else:
                    inputs = _preparer(_group_build(group), n_ns, n_pad, batch - count)(
                        seeds, np.array(group.ks, dtype=np.int32), n_valid, is_input)
            for a_i, (runner, args) in enumerate(zip(runners, inputs)):
                with device_clock():
                    out = jax.tree.map(lambda a, count=count: np.asarray(a)[:count],
                                       runner(*_shard(args, devices), jnp.asarray(gd)))
                points = out.pop("points")
                dtype = str(out["L0"].dtype)
                rows = _rows(out)
                mc_index, mc_rows, mc_seeds = [], [], []
                for c in range(len(combos)):
                    for j, s in enumerate(s_idx):
                        for m in range(n_ns):
                            e = (c * seed_chunk + j) * n_ns + m
                            run_index = ((a_i * len(combos) + c) * n_seeds + s) * n_ns + m
                            results[run_index] = rows[e]
                            rows[e]["dtype"] = dtype
                            if mc_wanted(runs[run_index]):
                                mc_index.append(run_index)
                                mc_rows.append(e)
                                mc_seeds.append(seeds[c, j])  # the run's problem key's seed
                if mc_index:
                    with device_clock():
                        part = _mc_part(mc_index, mc_rows, mc_seeds, args[0], points,
                                        _mc_rows_bound(group, seed_chunk))
                    mc_parts[a_i].append(part)
    for a_i, parts in mc_parts.items():
        with device_clock():
            mc_results = _mc_batch(acts[a_i], group.family, cfg.mc_samples, parts, devices,
                                   device_memory_budget(devices))
        for run_index, mc in mc_results:
            results[run_index]["mc"] = mc
    wall = time.perf_counter() - start
    return _records(group, runs, results, wall / max(len(runs), 1))


def _records(group: ShapeGroup, runs: list[Run], results: dict[int, dict],
             wall_per_run: float) -> list[SimsRecord]:
    cfg = group.config
    settings = run_settings(cfg)
    version = package_version()
    schedules = {budget: tl.record_schedule(budget, cfg.n_records).tolist()
                 for budget in {cfg.steps, cfg.gd_step_budget}}
    records: list[SimsRecord] = []
    ids_of = RecordIds(cfg)
    for i, run in enumerate(runs):
        common = {**settings, **run.fields(), "package_version": version, "wall_s": wall_per_run}
        methods = run_methods(cfg, run)
        ids = ids_of(run, methods)
        solvers = {m: "closed_form_gd" if tl.uses_closed_form(m, run.activation) else "gd"
                   for m in methods if m in tl.TUNE_MODES}
        budgets = {m: cfg.steps if solver == "closed_form_gd" else cfg.gd_step_budget
                   for m, solver in solvers.items()}
        recs = to_records(common, results[i], methods, ids, solvers,
                          {m: schedules[b] for m, b in budgets.items()}, budgets)
        run_fields = _evidence_fields(results[i])
        for rec in recs:
            rec.update(run_fields)
            if rec["method"] in tl.TUNE_MODES:
                rec.update(_method_evidence_fields(results[i], rec["method"]))
        records += recs
    return records


def _evidence_fields(res: dict) -> dict:
    """Run-level evidence fields of a record (see :mod:`sims.evidence`)."""
    ev = res["evidence"]
    mc = res.get("mc")
    return {
        "dtype": res["dtype"],
        "loss_scale": float(ev["loss_scale"]),
        "c1_pool_loss": float(ev["c1_pool_loss"]),
        "pool_y2": float(ev["pool_y2"]),
        "mc": None if mc is None else {name: [float(x) for x in np.atleast_1d(val)]
                                       for name, val in mc.items()},
    }


def _method_evidence_fields(res: dict, method: str) -> dict:
    """Per-tune evidence fields: start train loss, closed-form iterate after ``steps_taken``."""
    ev = res["evidence"]
    out = {"start_train_loss": float(ev[f"{method}_start_train_loss"])}
    for key in ("cf_gap", "cf_moved", "cf_norm", "cf_target_loss"):
        full = f"{method}_{key}"
        out[key] = float(ev[full]) if full in ev else None
    return out


def run_group(group: ShapeGroup) -> list[SimsRecord]:
    """Executor entry point (top level, picklable; a worker that unpickles it imports this module,
    hence :mod:`sims.runtime`): compute the group on the default devices."""
    return compute_group(group)
