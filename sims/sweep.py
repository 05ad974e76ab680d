"""``python -m sims.sweep``: verify claims C1–C7 over a grid of problems, resumably.

Examples::

    python -m sims.sweep                      # = --quick, writes results/sweep-quick
    python -m sims.sweep --full --executor serial --out results/sweep-full   # GPU
    python -m sims.sweep --full --slice 1/4 --max-minutes 8 --out results/sweep-full  # a slice
    python -m sims.sweep --config my.toml --seeds 8 --dims 16,32 --strict
    python -m sims.sweep --executor dask --scheduler tcp://HOST:8786

Outputs in OUT: runs.jsonl (one record per run and method), config.json, summary.csv,
verdicts.json, figures/. Re-running with the same --out skips finished records.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax

import sims.runtime  # noqa: F401  (XLA flags and float64 before anything computes)
from sims.claims import evaluate, exit_worthy, verdict_table
from sims.config import FIELDS, SweepConfig, field_help, field_kind, resolve
from sims.engine import run_group
from sims.grid import ShapeGroup, group_ids, shape_groups
from sims.infra import (
    FolderLock,
    RunStore,
    check_out_dir,
    make_executor,
    run_units,
    write_json_atomic,
    write_text_atomic,
)
from sims.runtime import add_cache_flags, cache_from_args, compile_stats
from sims.summary import summarize, to_csv

__all__ = ["CPU_HEAVY_D", "EXIT_INCOMPLETE", "build_parser", "config_from_args", "cpu_notice",
           "figures_command", "finish_figures", "main", "run_group_until", "run_sweep",
           "slice_groups", "start_figures", "tiers_note"]

#: Files a sweep writes in OUT (each must be a regular file if it exists).
OUT_FILES = ("runs.jsonl", "config.json", "summary.csv", "verdicts.json")

#: Config fields without a flag: ``preset`` comes from --quick/--full.
NO_FLAG = ("preset",)


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`SweepConfig` field (``n_ratios`` -> ``--n-ratios``), documented by the
    field; lists are comma-separated, booleans are ``--name`` / ``--no-name``."""
    for name in FIELDS:
        if name in NO_FLAG:
            continue
        flag = "--" + name.replace("_", "-")
        is_list, typ = field_kind(name)
        text = field_help(name)
        if is_list:
            p.add_argument(flag, dest=name, default=None, metavar="A,B,...",
                           help=f"{text}; comma-separated")
        elif typ is bool:
            p.add_argument(flag, dest=name, default=None, action=argparse.BooleanOptionalAction,
                           help=text)
        else:
            p.add_argument(flag, dest=name, type=typ, default=None, help=text)


def build_parser() -> argparse.ArgumentParser:
    """The CLI (every flag documented in ``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m sims.sweep",
        description="Sweep the two-layer fine-tuning theory (claims C1-C7) and draw figures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true",
                   help="the quick preset (default): d=16, about half a minute on 2 CPU cores")
    g.add_argument("--medium", action="store_true",
                   help="the medium preset: phase diagrams over 8 x 4 (n/d, k/d) cells at d=64, "
                        "minutes on 2 CPU cores")
    g.add_argument("--full", action="store_true",
                   help="the paper-scale preset (d up to 1024, 100 seeds; meant for a GPU)")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML file of SweepConfig fields, applied over the preset")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default results/sweep-<preset>); reused to resume")
    _add_config_flags(p)
    p.add_argument("--executor", default="auto",
                   choices=("auto", "serial", "processes", "dask", "slurm"),
                   help="where shape groups run; auto = processes on CPU, serial on a GPU")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (processes: default min(cpus, groups); dask: 2)")
    p.add_argument("--scheduler", default=None,
                   help="dask scheduler tcp://HOST:PORT (default: a LocalCluster on 127.0.0.1)")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="submitit parameter for --executor slurm (repeatable), e.g. "
                        "slurm_partition=gpu, timeout_min=60, cluster=local")
    add_cache_flags(p)
    p.add_argument("--max-minutes", type=float, default=None, metavar="M",
                   help="start no shape group after M minutes; exit 3 if groups are left (re-run "
                        "the same command to resume). Groups already running finish")
    p.add_argument("--slice", type=_parse_slice, default=None, metavar="I/N",
                   help="run only slice I of N (shape groups I-1, I-1+N, I-1+2N, ...: each slice "
                        "mixes sizes); the verdicts are written once every group of the sweep is "
                        "stored, else exit 3 with what is left. Same records as one run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 if any claim fails or is inconclusive")
    p.add_argument("--no-figures", dest="figures", action="store_false",
                   help="skip drawing OUT/figures")
    return p


def _parse_slice(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 1 <= I <= N (argparse turns the ValueError into exit 2).

    >>> _parse_slice("2/3")
    (2, 3)
    """
    try:
        i, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N, e.g. 1/4") from None
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N with 1 <= I <= N")
    return i, n


def slice_groups(groups: list, part: tuple[int, int] | None) -> list:
    """The shape groups of slice ``part = (I, N)``: every N-th group from the (I-1)-th (all when
    ``part`` is None). The N slices partition the groups.

    >>> slice_groups(list("abcdefg"), (2, 3))
    ['b', 'e']
    """
    return groups if part is None else groups[part[0] - 1::part[1]]


def _parse_list(name: str, text: str) -> list[Any]:
    typ = field_kind(name)[1]
    items = [t.strip() for t in text.split(",") if t.strip()]
    if typ in (int, float):
        try:
            return [typ(t) for t in items]
        except ValueError:
            raise ValueError(f"--{name.replace('_', '-')} {text!r}: expected comma-separated "
                             f"{typ.__name__}s") from None
    return items


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    """Resolve preset + TOML + flags into a :class:`~sims.config.SweepConfig`."""
    overrides: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(args, name, None)
        if value is None:
            continue
        overrides[name] = _parse_list(name, value) if field_kind(name)[0] else value
    name = "full" if args.full else "medium" if args.medium else "quick"
    return resolve(name, args.config, overrides)


def _slurm_params(items: list[str], out: Path) -> dict[str, Any]:
    params: dict[str, Any] = {"folder": str(out / "submitit")}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--slurm {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        params[key] = value
    return params


def _default_executor(n_groups: int) -> str:
    return "processes" if jax.devices()[0].platform == "cpu" and n_groups > 1 else "serial"


def figures_command(out: Path) -> list[str]:
    """The command that draws the theory figures of sweep folder ``out`` (``paper_figures`` reads
    the stored records only; ``sims`` never imports it)."""
    return [sys.executable, "-m", "paper_figures", "theory", "--results", str(out)]


def start_figures(out: Path) -> subprocess.Popen:
    """Start :func:`figures_command` in a subprocess (it reads only ``runs.jsonl`` and
    ``config.json``, so it may draw while this process judges); :func:`finish_figures` waits."""
    return subprocess.Popen(figures_command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish_figures(proc: subprocess.Popen) -> bool:
    """Wait for :func:`start_figures`' subprocess; print the PNG paths, or the command on failure."""
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        print(f"figures failed ({tail}); draw them with: {shlex.join(proc.args)}", file=sys.stderr)
        return False
    pngs = [line for line in stdout.splitlines() if line.endswith(".png")]
    print(f"figures: {', '.join(pngs)}")
    return True


def tiers_note(cfg: SweepConfig) -> str:
    """One line on the cost tiers of ``cfg``: which seeds ran which tune modes, and their steps.

    >>> tiers_note(SweepConfig(seeds=100, gd_seeds=32, steps=20000, gd_steps=5000))[:62]
    'tiers: closed-form modes (last, linear first) on 100 seeds per'
    """
    return (f"tiers: closed-form modes (last, linear first) on {cfg.seeds} seeds per cell, "
            f"{cfg.steps} steps; gradient descent (ReLU first/full, linear full) on seeds "
            f"0..{cfg.gd_tier - 1} ({cfg.gd_tier} per cell), at most {cfg.gd_step_budget} steps "
            "(early stop on convergence); claims that read a gradient-descent mode are judged "
            "on those seeds")


def run_group_until(group: ShapeGroup, deadline: float) -> list:
    """:func:`~sims.engine.run_group` if the wall clock (``time.time()``) is before ``deadline``,
    else no records (top level, picklable: executors run it in workers)."""
    return run_group(group) if time.time() < deadline else []


def _print_compile_stats() -> None:
    """One line: programs compiled or loaded in this process and the seconds spent on them."""
    stats = compile_stats()
    if stats["programs"]:
        print(f"compilation in this process: {stats['programs']} programs "
              f"({stats['cache_hits']} from the cache), {stats['compile_s']:.1f} s")


#: Smallest d whose shape groups take minutes to hours each on a CPU (README, ``--full``, Probes:
#: a d = 256 group of the full preset 3.6 minutes, a d = 1024 group about 65 on 2 cores).
CPU_HEAVY_D = 256


def cpu_notice(cfg: SweepConfig, platform: str, time_boxed: bool) -> str | None:
    """A line for a sweep about to run groups of d >= :data:`CPU_HEAVY_D` on a CPU without a time
    box, naming what to do instead; None otherwise.

    >>> cpu_notice(SweepConfig(dims=(16,)), "cpu", False) is None
    True
    >>> cpu_notice(SweepConfig(dims=(16, 1024), widths=(2,)), "cpu", False)[:40]
    'note: d = [1024] on a CPU: each of these'
    """
    heavy = [d for d in cfg.dims if d >= CPU_HEAVY_D]
    if platform != "cpu" or not heavy or time_boxed:
        return None
    return (f"note: d = {heavy} on a CPU: each of these shape groups takes minutes to hours (the "
            "full preset's d = 1024 about an hour on 2 cores). Run it on a GPU, or time-box it "
            "with --max-minutes M (a re-run resumes); --medium draws the phase diagram in a "
            "minute.")


#: Exit code of a sweep stopped by ``--max-minutes`` with shape groups left.
EXIT_INCOMPLETE = 3


def run_sweep(args: argparse.Namespace) -> int:
    """Run the sweep described by parsed ``args``; returns the exit code.

    Everything is validated (config, ``--out``, the folder lock, the stored records, the
    executor) before anything is written, and the folder stays locked until the end.
    """
    cfg = config_from_args(args)
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise ValueError(f"--max-minutes {args.max_minutes}: expected a positive number")
    notice = cpu_notice(cfg, jax.devices()[0].platform, args.max_minutes is not None)
    if notice:
        print(notice, file=sys.stderr)
    out = check_out_dir(args.out or Path("results") / f"sweep-{cfg.preset}", files=OUT_FILES)
    cache_from_args(args)
    with FolderLock(out):
        return _run_locked(args, cfg, out)


def _run_locked(args: argparse.Namespace, cfg: SweepConfig, out: Path) -> int:
    groups = shape_groups(cfg)
    mine = slice_groups(groups, args.slice)
    executor_name = args.executor if args.executor != "auto" else _default_executor(len(mine))
    workers = args.workers
    if executor_name == "processes" and workers is None:
        workers = max(1, min(os.cpu_count() or 1, len(mine)))
    store = RunStore(out)
    store.done_ids()  # an unreadable runs.jsonl fails here, before config.json is written
    executor = make_executor(
        executor_name, workers=workers, scheduler=args.scheduler,
        slurm=_slurm_params(args.slurm, out) if executor_name == "slurm" else None,
    )
    start = time.perf_counter()
    fn = run_group if args.max_minutes is None else functools.partial(
        run_group_until, deadline=time.time() + 60 * args.max_minutes)
    ids = {g.key: group_ids(g) for g in groups}  # hashed once (1.2M records in --full)
    try:
        write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "executor": executor_name,
                                                "groups": [g.key for g in groups]})
        report = run_units(mine, fn, store, executor, unit_ids=lambda g: ids[g.key],
                           progress=not args.quiet, desc="shape groups")
    finally:
        executor.close()
    wanted = {i for g in groups for i in ids[g.key]}
    done = store.done_ids() & wanted  # the store's index is current: reads no line again
    left = [g for g in groups if not set(ids[g.key]) <= done]
    if left and (args.max_minutes is not None or args.slice is not None):
        left_mine = [g for g in mine if g in left]
        what = (f"slice {args.slice[0]}/{args.slice[1]}: {len(mine) - len(left_mine)} of its "
                f"{len(mine)} shape groups done; " if args.slice else "")
        why = f"stopped after --max-minutes {args.max_minutes:g}: " if left_mine else ""
        print(f"{why}{what}{len(groups) - len(left)} of {len(groups)} shape groups done "
              f"({len(done)} of {len(wanted)} records) in {time.perf_counter() - start:.1f} s; "
              f"{len(left)} left, verdicts once all are stored; re-run "
              f"{'the same command' if left_mine else 'the other slices'} to resume ({out})")
        _print_compile_stats()
        return EXIT_INCOMPLETE
    if left:
        raise RuntimeError(f"{len(wanted) - len(done)} records missing from {store.path} after the "
                           "sweep")
    figures = start_figures(out) if args.figures else None  # draws while the records are judged
    try:
        records = [r for r in store.load() if r["id"] in wanted]
        write_text_atomic(out / "summary.csv", to_csv(summarize(records)))
        verdicts = evaluate(records, cfg)
        write_json_atomic(out / "verdicts.json", {"verdicts": [v.to_dict() for v in verdicts],
                                                  "records": len(records), "tiers": tiers_note(cfg)})
        print(verdict_table(verdicts))
        print(tiers_note(cfg))
        print(f"\n{len(records)} records ({report.records_written} new, {report.units_skipped} of "
              f"{report.units_total} shape groups already done) in "
              f"{time.perf_counter() - start:.1f} s with executor {executor_name}; results in {out}")
        _print_compile_stats()
    finally:  # the figures read only the stored records: they finish whatever the judging did
        if figures is not None:
            finish_figures(figures)
    failed = exit_worthy(verdicts)
    if failed:
        print(f"claims failing or inconclusive: {', '.join(failed)}")
    return 1 if (args.strict and failed) else 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: parse, run, and turn bad input into a one-line error (exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_sweep(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished records are kept, re-run with the same --out to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
