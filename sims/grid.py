"""The sweep grid: runs (one problem + data set each), their record ids, and shape groups.

A *run* is one seeded problem (d, k, activation, family, shift, seed index) with n target samples;
each run yields one record per method (:data:`RECORD_METHODS`; a run past the config's
gradient-descent tier, ``gd_seeds``, records only the closed-form tune modes: :func:`run_methods`). A
*shape group* is the unit of work: the runs that share array shapes, problems and data (one
compiled builder, one compiled runner per activation). With ``merge_shapes`` (the quick preset) a
group is (d, family) and smaller k and n are zero-padded to the group's largest (exact: padded
samples and hidden units are inert, see :mod:`sims.engine`); otherwise a group is (d, k, n, family).
With ``shape_buckets`` an unmerged group stays the unit of work (stored, resumed and sliced on its
own) but its arrays are zero-padded to its *bucket's* shape (:attr:`ShapeGroup.padded`: k to the
largest width, n to the smallest bucket size >= n), so every group of a bucket runs the same
compiled programs; only the small problem builder is compiled per k.

Data: the n samples of a run are the first n rows of a pool of ``pool_n`` samples (the largest n
of its d) drawn from the run's problem, so the curves over n use nested data sets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sims.config import SweepConfig
from sims.infra import canonical_json, stable_id, stable_id_with, to_jsonable
from twolayer import TUNE_MODES, InputShift, OutputShift, Shift, uses_closed_form

__all__ = ["RECORD_METHODS", "RecordIds", "Run", "ShapeGroup", "bucket_n", "group_ids", "in_gd_tier",
           "iter_runs", "methods_of", "problem_seed", "record_id", "run_methods", "run_settings",
           "shape_groups", "shift_fields", "shifts_of", "tunes_of"]

#: The ``method`` of a record: no tuning, the oracle of C1/C3, or one of twolayer's tune modes.
RECORD_METHODS = ("none", "oracle", "first", "last", "full")


def shift_fields(shift: Shift) -> dict[str, Any]:
    """Record fields of a shift: ``shift`` (input/output), ``shift_kind``, ``rank``, ``alpha``, ``t``.

    >>> shift_fields(OutputShift(-1.0))
    {'shift': 'output', 'shift_kind': 'output', 'rank': None, 'alpha': None, 't': -1.0}
    """
    if isinstance(shift, InputShift):
        return {"shift": "input", "shift_kind": shift.kind, "rank": shift.rank,
                "alpha": float(shift.alpha), "t": None}
    return {"shift": "output", "shift_kind": "output", "rank": None, "alpha": None,
            "t": float(shift.t)}


def shifts_of(cfg: SweepConfig) -> tuple[Shift, ...]:
    """All shifts of a config: input shifts first, then output shifts.

    >>> shifts_of(SweepConfig())
    (InputShift(rank=1, alpha=3.0, kind='scale'), OutputShift(t=-1.0))
    """
    ins = tuple(InputShift(s.rank, float(s.alpha), s.kind) for s in cfg.input_shifts)
    return ins + tuple(OutputShift(float(t)) for t in cfg.output_shifts)


@dataclass(frozen=True)
class Run:
    """One seeded problem with its data size; record fields come from :meth:`fields`."""

    d: int
    k: int
    n: int
    pool_n: int
    activation: str
    family: str
    shift: Shift  # twolayer.InputShift or twolayer.OutputShift
    seed_index: int

    def problem_fields(self) -> dict[str, Any]:
        """Fields that define the problem and its sample pool (all but n and the activation:
        linear and ReLU runs share pretrained weights and inputs; ``sample_target`` labels them
        with each run's activation)."""
        return {"d": self.d, "k": self.k, "family": self.family, **shift_fields(self.shift),
                "seed_index": self.seed_index, "pool_n": self.pool_n}

    def fields(self) -> dict[str, Any]:
        """Fields of the run (problem fields + activation + n)."""
        return {**self.problem_fields(), "activation": self.activation, "n": self.n}


def run_settings(cfg: SweepConfig) -> dict[str, Any]:
    """Config fields that change a run's numbers (part of every record and id). The cost tiers
    ``gd_seeds`` and ``gd_steps`` are included when set (non-zero), so untiered sweeps keep their ids.

    >>> sorted(set(run_settings(SweepConfig(gd_seeds=4))) - set(run_settings(SweepConfig())))
    ['gd_seeds']
    """
    out = {"seed": cfg.seed, "steps": cfg.steps, "n_records": cfg.n_records, "lr": cfg.lr,
           "gtol": cfg.gtol, "p1": cfg.p1, "nonneg_head": cfg.nonneg_head,
           "mc_runs": cfg.mc_runs, "mc_samples": cfg.mc_samples}
    out.update({name: getattr(cfg, name) for name in ("gd_seeds", "gd_steps") if getattr(cfg, name)})
    return out


def problem_seed(cfg: SweepConfig, run: Run) -> int:
    """A 32-bit PRNG seed for the run's problem: hash of (base seed, problem fields)."""
    text = canonical_json({"seed": cfg.seed, **run.problem_fields()})
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def record_id(cfg: SweepConfig, run: Run, method: str) -> str:
    """Stable id of the record of ``method`` on ``run``."""
    return stable_id({**run_settings(cfg), **run.fields(), "method": method})


class RecordIds:
    """:func:`record_id` for many runs of one config (the engine and the sweep hash 1.2 M ids in
    ``--full``): the config's run settings are converted once, a run's fields once per run.

    >>> cfg = SweepConfig()
    >>> run = shape_groups(cfg)[0].runs()[0]
    >>> RecordIds(cfg)(run, ("none",)) == {"none": record_id(cfg, run, "none")}
    True
    """

    def __init__(self, cfg: SweepConfig) -> None:
        self._make = stable_id_with(run_settings(cfg))

    def __call__(self, run: Run, methods: Iterable[str]) -> dict[str, str]:
        """``{method: record_id(cfg, run, method)}`` for ``methods``."""
        fields = to_jsonable(run.fields())
        return {m: self._make({**fields, "method": m}) for m in methods}


def methods_of(cfg: SweepConfig) -> tuple[str, ...]:
    """Methods recorded per run of the gradient-descent tier: the config's tune modes plus the
    oracle."""
    return tuple(m for m in RECORD_METHODS if m == "oracle" or m in cfg.tunes)


def in_gd_tier(cfg: SweepConfig, run: Run) -> bool:
    """Whether ``run`` runs the gradient-descent (span-iteration) tune modes: its seed index is
    below :attr:`SweepConfig.gd_tier`."""
    return run.seed_index < cfg.gd_tier


def tunes_of(cfg: SweepConfig, activation: str, gd: bool) -> tuple[str, ...]:
    """Tune modes a run of ``activation`` runs: all of the config's, or (``gd`` False: a seed past
    the gradient-descent tier) only those with a closed-form trajectory (``twolayer.uses_closed_form``).

    >>> tunes_of(SweepConfig(), "relu", gd=False), tunes_of(SweepConfig(), "linear", gd=False)
    (('last',), ('first', 'last'))
    """
    return tuple(t for t in TUNE_MODES if t in cfg.tunes and (gd or uses_closed_form(t, activation)))


def run_methods(cfg: SweepConfig, run: Run) -> tuple[str, ...]:
    """Methods recorded for ``run``: :func:`methods_of`, without the gradient-descent tune modes
    when the run is past the gradient-descent tier."""
    tunes = tunes_of(cfg, run.activation, in_gd_tier(cfg, run))
    return tuple(m for m in methods_of(cfg) if m not in TUNE_MODES or m in tunes)


def bucket_n(cfg: SweepConfig, d: int, n: int) -> int:
    """The sample size a group of dimension ``d`` and sample size ``n`` is padded to under
    ``cfg.shape_buckets``: the smallest bucket ``round(ratio * d)`` (at most the pool size, the
    largest n of d, which is always a bucket) that holds ``n``.

    >>> cfg = SweepConfig(dims=(64,), n_ratios=(1 / 16, 0.5, 1.0, 2.0), shape_buckets=(0.25, 1.0))
    >>> [bucket_n(cfg, 64, n) for n in cfg.sample_sizes(64)]
    [16, 64, 64, 128]
    """
    pool = max(cfg.sample_sizes(d))
    sizes = sorted({min(pool, max(1, round(b * d))) for b in cfg.shape_buckets} | {pool})
    return next(s for s in sizes if s >= n)


@dataclass(frozen=True)
class ShapeGroup:
    """A unit of work: runs sharing one compiled function (see module docstring).

    Attributes:
        config: the sweep config.
        d, family: shared by all runs.
        ks, ns: widths and sample sizes in the group (one each unless shapes are merged).
        activations: the config's activations (same shapes, same problems and data).
    """

    config: SweepConfig
    d: int
    family: str
    ks: tuple[int, ...]
    ns: tuple[int, ...]

    @property
    def activations(self) -> tuple[str, ...]:
        """Activations of the group's runs."""
        return self.config.activations

    @property
    def key(self) -> str:
        """Short label, e.g. ``d=16 gaussian k=2,4 n=4,8``."""
        ks = ",".join(map(str, self.ks))
        ns = ",".join(map(str, self.ns))
        return f"d={self.d} {self.family} k={ks} n={ns}"

    @property
    def padded(self) -> tuple[int, int]:
        """(k, n) the group's arrays are zero-padded to: its own largest, or with
        ``shape_buckets`` (unmerged groups) the largest width and :func:`bucket_n`."""
        cfg = self.config
        if cfg.merge_shapes or not cfg.shape_buckets:
            return max(self.ks), max(self.ns)
        return max(cfg.widths), bucket_n(cfg, self.d, max(self.ns))

    @property
    def pool_n(self) -> int:
        """Size of the sample pool of dimension d (largest n of d in the config)."""
        return max(self.config.sample_sizes(self.d))

    def runs(self) -> list[Run]:
        """Runs in batch order: activation, k, shift, seed, n (n varies fastest)."""
        return [
            Run(self.d, k, n, self.pool_n, act, self.family, shift, s)
            for act in self.activations
            for k in self.ks
            for shift in shifts_of(self.config)
            for s in range(self.config.seeds)
            for n in self.ns
        ]

    def record_ids(self) -> list[str]:
        """Ids of every record this group produces."""
        cfg = self.config
        ids = RecordIds(cfg)
        return [i for r in self.runs() for i in ids(r, run_methods(cfg, r)).values()]


def group_ids(group: ShapeGroup) -> list[str]:
    """Record ids of a group (top-level, for :func:`sims.infra.run_units`)."""
    return group.record_ids()


def shape_groups(cfg: SweepConfig) -> list[ShapeGroup]:
    """The config's shape groups, largest d last."""
    groups = []
    for d in cfg.dims:
        ns = cfg.sample_sizes(d)
        for fam in cfg.families:
            if cfg.merge_shapes:
                groups.append(ShapeGroup(cfg, d, fam, tuple(sorted(cfg.widths)), ns))
            else:
                groups.extend(ShapeGroup(cfg, d, fam, (k,), (n,))
                              for k in sorted(cfg.widths) for n in ns)
    return groups


def iter_runs(cfg: SweepConfig) -> Iterator[Run]:
    """Every run of the config."""
    for g in shape_groups(cfg):
        yield from g.runs()
