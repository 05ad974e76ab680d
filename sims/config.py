"""The sweep's frozen configuration: presets, TOML files and overrides.

Resolution order: a preset (``quick`` or ``full``), then an optional TOML file, then explicit
overrides (the CLI's flags). The resolved config is written to ``OUT/config.json`` and every record
carries the fields that define its run.

Reproduce the README's quick sweep::

    python -m sims.sweep --quick --out results/sweep-quick --seed 0
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (pyproject installs tomli there)
    import tomli as tomllib

from twolayer import ACTIVATIONS, FAMILIES, SHIFT_KINDS, TUNE_MODES, InputShift

__all__ = ["FIELDS", "PRESETS", "TUNES", "SweepConfig", "coerce_field", "field_help", "load_toml",
           "parse_input_shift", "preset", "resolve", "to_toml", "validate", "with_overrides"]

TUNES = ("none", *TUNE_MODES)  # what a sweep may record besides the oracle: no tuning, or a mode
PRESETS = ("quick", "medium", "full", "gpu")


def _f(default: Any, doc: str) -> Any:
    """A config field with its one-line documentation (``--help`` and :func:`field_help`)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class SweepConfig:
    """Everything that defines a sweep; a run is a pure function of these fields and its seed.

    Each field carries its documentation (``dataclasses.fields(SweepConfig)[i].metadata["doc"]``);
    the CLI flags of ``python -m sims.sweep`` and the TOML keys are derived from the fields.

    >>> SweepConfig(dims=(8,), widths=(2,), seeds=2).sample_sizes(8)
    (2, 4, 8, 16)
    """

    preset: str = _f("quick", "name of the preset it started from (informational)")
    dims: tuple[int, ...] = _f((16,), "input dimensions d")
    widths: tuple[int, ...] = _f((2, 4, 8), "widths k (each must be <= d)")
    n_ratios: tuple[float, ...] = _f(
        (0.25, 0.5, 1.0, 2.0), "sample sizes as ratios n/d (n = max(1, round(ratio*d))); ignored "
        "when ns is set")
    ns: tuple[int, ...] = _f((), "absolute sample sizes n (override n_ratios)")
    activations: tuple[str, ...] = _f(ACTIVATIONS, f"subset of {','.join(ACTIVATIONS)}")
    families: tuple[str, ...] = _f(FAMILIES, f"target input families, subset of {','.join(FAMILIES)}")
    input_shifts: tuple[InputShift, ...] = _f(
        (InputShift(1, 3.0, "scale"),), "input shifts KIND:RANK:ALPHA (TOML: tables {rank, alpha, "
        "kind}), e.g. scale:1:3,rotate:1:1")
    output_shifts: tuple[float, ...] = _f((-1.0,), "output scales t (y_trg = t y_src), each != 1")
    tunes: tuple[str, ...] = _f(TUNES, f"tune modes to record, subset of {','.join(TUNES)} (the "
                                "oracle of C1/C3 is always recorded)")
    seeds: int = _f(32, "seeds per cell (seed indices 0 .. seeds-1)")
    gd_seeds: int = _f(
        0, "seeds per cell (indices 0 .. gd_seeds-1) that also run the gradient-descent tune "
        "modes (span iteration: ReLU first/full, linear full); the others run only the "
        "closed-form modes (last, linear first); 0: every seed")
    seed: int = _f(0, "base seed; every run's PRNG key derives from (seed, seed index, cell)")
    steps: int = _f(2000, "gradient-descent steps per run")
    gd_steps: int = _f(
        0, "step budget of the gradient-descent tune modes (span iteration; they stop earlier "
        "on convergence); 0: steps")
    n_records: int = _f(20, "recorded target losses along each GD run (plus the start)")
    lr: float | None = _f(None, "GD step size (default: 1/L from twolayer's smoothness bound)")
    gtol: float = _f(1e-8, "convergence test on the gradient norm (twolayer's gtol)")
    p1: float = _f(0.3, "mass of direction u_1 in the sparse family")
    nonneg_head: bool = _f(True, "draw v_src >= 0 (the setting of C4; linear and ReLU runs share "
                           "problems)")
    merge_shapes: bool = _f(True, "one compiled group per (d, family), zero-padding smaller k and n "
                            "(exact); otherwise one per (d, k, n, family)")
    shape_buckets: tuple[float, ...] = _f(
        (), "sample-size buckets as ratios n/d for unmerged groups: each (d, k, n, family) group "
        "stays its own unit of work but is zero-padded (exact) to k = max(widths) and to the "
        "smallest bucket n = round(ratio*d) >= n (the largest n of d is always a bucket), so the "
        "groups of a bucket share their compiled programs; empty: no padding, every group "
        "compiles its own (ignored with merge_shapes)")
    chunk: int = _f(4096, "problems per compiled call (bounds memory; results do not depend on it)")
    zero_rtol: float = _f(1e-10, "'zero loss' means target loss < zero_rtol x initial target loss")
    positive_rtol: float = _f(1e-8, "'stays positive' means target loss > positive_rtol x initial "
                              "(C5)")
    agree_rtol: float = _f(1e-6, "closed forms and GD agree within this relative tolerance (C6, C7)")
    test_level: float = _f(0.01, "family-wise level of the C5 binomial tests (Bonferroni over cells) "
                           "and of the Monte Carlo checks (Bonferroni over all comparisons)")
    mc_runs: int = _f(3, "runs per cell (random seeds) whose losses are checked against Monte Carlo "
                      "from the shift's definition (0: no checks)")
    mc_samples: int = _f(8192, "fresh samples per Monte Carlo estimate")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def gd_tier(self) -> int:
        """Seeds per cell that run every tune mode: ``min(gd_seeds, seeds)`` (all when 0).

        >>> SweepConfig(seeds=100, gd_seeds=32).gd_tier, SweepConfig(seeds=4, gd_seeds=32).gd_tier
        (32, 4)
        """
        return min(self.gd_seeds, self.seeds) if self.gd_seeds else self.seeds

    @property
    def gd_step_budget(self) -> int:
        """Steps of the gradient-descent (span-iteration) tune modes: ``gd_steps``, else ``steps``."""
        return self.gd_steps or self.steps

    def sample_sizes(self, d: int) -> tuple[int, ...]:
        """Sample sizes n used with dimension ``d`` (sorted, unique)."""
        if self.ns:
            return tuple(sorted(set(self.ns)))
        return tuple(sorted({max(1, round(r * d)) for r in self.n_ratios}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (input shifts as ``{rank, alpha, kind}`` tables).

        >>> SweepConfig().to_dict()["input_shifts"]
        [{'rank': 1, 'alpha': 3.0, 'kind': 'scale'}]
        """
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "input_shifts":
                value = [dataclasses.asdict(s) for s in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SweepConfig))
_TYPES: dict[str, Any] = typing.get_type_hints(SweepConfig)


def field_help(name: str) -> str:
    """The documentation of config field ``name``.

    >>> field_help("seeds")
    'seeds per cell (seed indices 0 .. seeds-1)'
    """
    return next(f.metadata["doc"] for f in dataclasses.fields(SweepConfig) if f.name == name)


def field_kind(name: str) -> tuple[bool, type]:
    """``(is_list, element type)`` of config field ``name`` (``float | None`` -> float).

    >>> field_kind("dims"), field_kind("lr")
    ((True, <class 'int'>), (False, <class 'float'>))
    """
    typ = _TYPES[name]
    if typing.get_origin(typ) is tuple:
        return True, typing.get_args(typ)[0]
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    return False, (args[0] if args else typ)


def _fail(msg: str) -> None:
    raise ValueError(msg)


def _check_subset(name: str, values: tuple, allowed: tuple) -> None:
    if not values:
        _fail(f"{name} is empty: expected at least one of {', '.join(allowed)}")
    bad = [v for v in values if v not in allowed]
    if bad:
        _fail(f"{name} has {bad!r}: expected values from {', '.join(allowed)}")
    if len(set(values)) != len(values):
        _fail(f"{name} has duplicates: {list(values)!r}")


def _check_pos_ints(name: str, values: tuple, allow_empty: bool = False) -> None:
    if not values and not allow_empty:
        _fail(f"{name} is empty: expected at least one positive integer")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            _fail(f"{name} has {v!r}: expected positive integers")


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate(cfg: SweepConfig) -> None:
    """Raise ValueError (one line, saying what was expected) if ``cfg`` is not a valid sweep."""
    if cfg.preset not in (*PRESETS, "custom"):
        _fail(f"preset {cfg.preset!r}: expected one of {', '.join(PRESETS)} or 'custom'")
    _check_pos_ints("dims", cfg.dims)
    _check_pos_ints("widths", cfg.widths)
    _check_pos_ints("ns", cfg.ns, allow_empty=True)
    if not cfg.ns:
        if not cfg.n_ratios:
            _fail("n_ratios and ns are both empty: expected sample sizes")
        for r in cfg.n_ratios:
            if not _is_num(r) or r <= 0:
                _fail(f"n_ratios has {r!r}: expected positive numbers (n/d)")
    if max(cfg.widths) > min(cfg.dims):
        _fail(f"widths {list(cfg.widths)} must not exceed the smallest d = {min(cfg.dims)}")
    _check_subset("activations", cfg.activations, ACTIVATIONS)
    _check_subset("families", cfg.families, FAMILIES)
    _check_subset("tunes", cfg.tunes, TUNES)
    if not cfg.input_shifts and not cfg.output_shifts:
        _fail("input_shifts and output_shifts are both empty: expected at least one shift")
    for s in cfg.input_shifts:
        if not isinstance(s, InputShift):
            _fail(f"input shift {s!r}: expected twolayer.InputShift(rank, alpha, kind)")
        if s.kind not in SHIFT_KINDS:
            _fail(f"input shift kind {s.kind!r}: expected one of {', '.join(SHIFT_KINDS)}")
        if isinstance(s.rank, bool) or not isinstance(s.rank, int) or s.rank < 1:
            _fail(f"input shift rank {s.rank!r}: expected a positive integer")
        need = s.rank if s.kind == "scale" else 2 * s.rank
        if need > min(cfg.dims):
            _fail(f"input shift {s.label()} needs d >= {need}; smallest d is {min(cfg.dims)}")
        if not _is_num(s.alpha) or (s.kind == "scale" and s.alpha in (0, 1)):
            _fail(f"input shift alpha {s.alpha!r}: expected a finite number (scale: not 0 or 1)")
    for t in cfg.output_shifts:
        if not _is_num(t) or t == 1:
            _fail(f"output shift t {t!r}: expected a finite number other than 1")
    if len(set(cfg.input_shifts)) != len(cfg.input_shifts) or len(set(cfg.output_shifts)) != len(
        cfg.output_shifts
    ):
        _fail("shifts contain duplicates")
    for name in ("seeds", "steps", "n_records", "chunk", "mc_samples"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            _fail(f"{name} = {v!r}: expected a positive integer")
    if isinstance(cfg.mc_runs, bool) or not isinstance(cfg.mc_runs, int) or cfg.mc_runs < 0:
        _fail(f"mc_runs = {cfg.mc_runs!r}: expected a non-negative integer")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        _fail(f"seed = {cfg.seed!r}: expected a non-negative integer")
    if cfg.n_records > cfg.steps:
        _fail(f"n_records = {cfg.n_records} exceeds steps = {cfg.steps}")
    for name in ("gd_seeds", "gd_steps"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            _fail(f"{name} = {v!r}: expected a non-negative integer (0: every seed / steps)")
    if cfg.gd_steps and cfg.n_records > cfg.gd_steps:
        _fail(f"n_records = {cfg.n_records} exceeds gd_steps = {cfg.gd_steps}")
    for b in cfg.shape_buckets:
        if not _is_num(b) or b <= 0:
            _fail(f"shape_buckets has {b!r}: expected positive numbers (n/d), e.g. 0.25,1,2")
    if len(set(cfg.shape_buckets)) != len(cfg.shape_buckets):
        _fail(f"shape_buckets has duplicates: {list(cfg.shape_buckets)!r}")
    if cfg.lr is not None and (not _is_num(cfg.lr) or cfg.lr <= 0):
        _fail(f"lr = {cfg.lr!r}: expected a positive number or None")
    if not (_is_num(cfg.p1) and 0 < cfg.p1 < 1):
        _fail(f"p1 = {cfg.p1!r}: expected a probability in (0, 1)")
    for name in ("gtol", "zero_rtol", "positive_rtol", "agree_rtol"):
        v = getattr(cfg, name)
        if not _is_num(v) or v <= 0:
            _fail(f"{name} = {v!r}: expected a positive number")
    if not (_is_num(cfg.test_level) and 0 < cfg.test_level < 1):
        _fail(f"test_level = {cfg.test_level!r}: expected a probability in (0, 1)")


def preset(name: str) -> SweepConfig:
    """The ``quick`` (CPU, minutes), ``medium`` (CPU, minutes: a phase diagram at d = 64),
    ``full`` (paper scale, GPU) or ``gpu`` (the full grid up to d = 256 with 20 seeds, minutes on
    one GPU) config; each is also a file in ``configs/``.

    ``medium`` resolves the winning tune mode over 8 x 4 (n/d, k/d) cells per (activation, shift)
    at d = 64 with Gaussian inputs (one compiled group: k and n zero-padded), 8 seeds and 1000 GD
    steps (early stop on convergence).

    ``full`` is tiered by cost: the closed-form tune modes (last layer, linear first layer) on 100
    seeds per cell and 20,000 steps, the span-iteration gradient descent (ReLU first/full, linear
    full) on the first 32 seeds and at most 2,000 steps (``gd_seeds``, ``gd_steps``). Its 256 shape
    groups (d, k, n, family) are the units of work, padded to one shape bucket per (d, family)
    (``shape_buckets``: k to 16, n to 2d), so each (d, family) compiles its runners once.
    """
    if name == "quick":
        return SweepConfig()
    if name == "medium":
        return SweepConfig(
            preset="medium",
            dims=(64,),
            widths=(1, 2, 4, 8),
            n_ratios=(1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0, 3 / 2, 2.0),
            families=("gaussian",),
            seeds=8,
            steps=1000,
            n_records=10,
        )
    if name == "full":
        return SweepConfig(
            preset="full",
            dims=(16, 64, 256, 1024),
            widths=(2, 4, 8, 16),
            n_ratios=(1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1.0, 3 / 2, 2.0),
            input_shifts=(
                InputShift(1, 3.0, "scale"),
                InputShift(1, 1.0, "rotate"),
                InputShift(2, 0.5, "scale"),
            ),
            output_shifts=(-1.0, 0.5, 2.0),
            seeds=100,
            gd_seeds=32,
            steps=20000,
            gd_steps=2000,
            n_records=40,
            merge_shapes=False,
            shape_buckets=(2.0,),
        )
    if name == "gpu":  # the full grid's shapes up to d = 256 in minutes on one GPU
        return dataclasses.replace(preset("full"), preset="gpu", dims=(16, 64, 256), seeds=20,
                                   gd_seeds=0, steps=5000, gd_steps=0, merge_shapes=True,
                                   shape_buckets=(), chunk=2048)
    raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def to_toml(cfg: SweepConfig) -> str:
    """TOML text of every field of ``cfg`` (``lr = None`` is left out: TOML has no null), which
    :func:`load_toml` + :func:`with_overrides` read back to ``cfg`` over any preset.

    >>> print(to_toml(SweepConfig()).splitlines()[3])
    n_ratios = [0.25, 0.5, 1.0, 2.0]
    """
    lines = [f"{k} = {_toml_value(v)}" for k, v in cfg.to_dict().items() if v is not None]
    return "\n".join(lines) + "\n"


def _coerce(name: str, value: Any, typ: type) -> Any:
    if typ is InputShift:
        return parse_input_shift(value)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is bool and not isinstance(value, bool):
        _fail(f"{name} = {value!r}: expected true or false")
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        _fail(f"{name} = {value!r}: expected {typ.__name__}")
    return value


def coerce_field(name: str, value: Any) -> Any:
    """``value`` as the type of config field ``name`` (lists -> tuples; ints -> floats where the
    field is a float); raises ValueError naming the field and the expected type.

    >>> coerce_field("n_ratios", [1, 0.5]), coerce_field("lr", None)
    ((1.0, 0.5), None)
    """
    if name not in _TYPES:
        _fail(f"unknown config key {name!r}: expected one of {', '.join(FIELDS)}")
    is_list, typ = field_kind(name)
    if is_list:
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            _fail(f"{name} = {value!r}: expected a list")
        return tuple(_coerce(name, v, typ) for v in value)
    if value is None and type(None) in typing.get_args(_TYPES[name]):
        return None
    return _coerce(name, value, typ)


def parse_input_shift(value: Any) -> InputShift:
    """An input shift from a mapping ``{rank, alpha, kind}`` or text ``kind:rank:alpha``.

    >>> parse_input_shift("rotate:1:0.5")
    InputShift(rank=1, alpha=0.5, kind='rotate')
    """
    if isinstance(value, InputShift):
        return value
    if isinstance(value, str):
        parts = value.split(":")
        if len(parts) != 3:
            _fail(f"input shift {value!r}: expected KIND:RANK:ALPHA, e.g. scale:1:3.0")
        kind, rank, alpha = parts
        try:
            rank_i, alpha_f = int(rank), float(alpha)
        except ValueError:
            _fail(f"input shift {value!r}: expected KIND:RANK:ALPHA with integer rank, number alpha")
        return InputShift(rank=rank_i, alpha=alpha_f, kind=kind)
    if isinstance(value, Mapping):
        unknown = set(value) - {"rank", "alpha", "kind"}
        if unknown:
            _fail(f"input shift keys {sorted(unknown)}: expected rank, alpha, kind")
        return InputShift(
            rank=_coerce("input shift rank", value.get("rank", 1), int),
            alpha=_coerce("input shift alpha", value.get("alpha", 2.0), float),
            kind=_coerce("input shift kind", value.get("kind", "scale"), str),
        )
    _fail(f"input shift {value!r}: expected a table {{rank, alpha, kind}} or KIND:RANK:ALPHA")
    raise AssertionError  # unreachable


def with_overrides(cfg: SweepConfig, overrides: Mapping[str, Any]) -> SweepConfig:
    """A new config with ``overrides`` applied (type-checked; unknown keys raise ValueError).

    >>> with_overrides(SweepConfig(), {"seeds": 4, "dims": [8]}).seeds
    4
    """
    return dataclasses.replace(cfg, **{k: coerce_field(k, v) for k, v in overrides.items()})


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML sweep file (keys = :class:`SweepConfig` fields; optional ``[sweep]`` table)."""
    path = Path(path)
    if not path.is_file():
        _fail(f"config file {path} not found: expected a TOML file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        _fail(f"config file {path} cannot be read ({exc.strerror})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        _fail(f"config file {path} is not UTF-8 text (line {line})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = "" if "line" in str(exc) else f" (line {max(1, len(text.splitlines()))})"
        _fail(f"config file {path} is not valid TOML: {exc}{where}")
    if "sweep" in data and isinstance(data["sweep"], dict):
        data = data["sweep"]
    return data


def resolve(name: str = "quick", toml_path: str | Path | None = None,
            overrides: Mapping[str, Any] | None = None) -> SweepConfig:
    """Preset ``name``, then the TOML file, then ``overrides``."""
    cfg = preset(name)
    if toml_path is not None:
        cfg = with_overrides(cfg, load_toml(toml_path))
    if overrides:
        cfg = with_overrides(cfg, overrides)
    return cfg
