"""``python -m sims.sweep``: verify claims C1–C7 over a grid of problems, resumably.

Examples::

    python -m sims.sweep                      # = --quick, writes results/sweep-quick
    python -m sims.sweep --full --executor serial --out results/sweep-full   # GPU
    python -m sims.sweep --config my.toml --seeds 8 --dims 16,32 --strict
    python -m sims.sweep --executor dask --scheduler tcp://HOST:8786

Outputs in OUT: runs.jsonl (one record per run and method), config.json, summary.csv,
verdicts.json, figures/. Re-running with the same --out skips finished records.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sims.engine import ensure_runtime

FLAG_FIELDS = {  # flag -> (config field, parser of the text)
    "dims": ("dims", "ints"), "widths": ("widths", "ints"), "ns": ("ns", "ints"),
    "n_ratios": ("n_ratios", "floats"), "activations": ("activations", "strs"),
    "families": ("families", "strs"), "input_shifts": ("input_shifts", "strs"),
    "output_shifts": ("output_shifts", "floats"), "tunes": ("tunes", "strs"),
    "seeds": ("seeds", "int"), "seed": ("seed", "int"), "steps": ("steps", "int"),
    "n_records": ("n_records", "int"), "lr": ("lr", "float"), "p1": ("p1", "float"),
}


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
    g.add_argument("--full", action="store_true",
                   help="the paper-scale preset (d up to 1024, 100 seeds; meant for a GPU)")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML file of SweepConfig fields, applied over the preset")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default results/sweep-<preset>); reused to resume")
    p.add_argument("--seed", type=int, default=None, help="base seed of every run's PRNG key")
    p.add_argument("--seeds", type=int, default=None, help="seeds per cell")
    p.add_argument("--dims", default=None, help="input dimensions d, comma-separated")
    p.add_argument("--widths", default=None, help="widths k, comma-separated (each <= d)")
    p.add_argument("--n-ratios", dest="n_ratios", default=None,
                   help="sample sizes as n/d ratios, comma-separated")
    p.add_argument("--ns", default=None, help="absolute sample sizes n (override --n-ratios)")
    p.add_argument("--activations", default=None, help="subset of linear,relu")
    p.add_argument("--families", default=None, help="subset of gaussian,sparse")
    p.add_argument("--input-shifts", dest="input_shifts", default=None,
                   help="input shifts KIND:RANK:ALPHA, comma-separated, e.g. scale:1:3,rotate:1:1")
    p.add_argument("--output-shifts", dest="output_shifts", default=None,
                   help="output scales t, comma-separated, e.g. -1,2 ('' for none)")
    p.add_argument("--tunes", default=None, help="subset of none,first,last,full")
    p.add_argument("--steps", type=int, default=None, help="gradient-descent steps per run")
    p.add_argument("--n-records", dest="n_records", type=int, default=None,
                   help="recorded target losses along each GD run")
    p.add_argument("--lr", type=float, default=None,
                   help="GD step size (default: 1/L from twolayer's smoothness bound)")
    p.add_argument("--p1", type=float, default=None, help="mass of u_1 in the sparse family")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true", help="exit 1 if any claim fails")
    p.add_argument("--no-figures", dest="figures", action="store_false",
                   help="skip drawing OUT/figures")
    return p


def _parse_list(text: str, kind: str) -> list[Any]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        if kind == "ints":
            return [int(t) for t in items]
        if kind == "floats":
            return [float(t) for t in items]
    except ValueError:
        raise ValueError(f"{text!r}: expected comma-separated {kind[:-1]}s") from None
    return items


def config_from_args(args: argparse.Namespace):
    """Resolve preset + TOML + flags into a :class:`~sims.config.SweepConfig`."""
    from sims.config import resolve

    overrides: dict[str, Any] = {}
    for flag, (name, kind) in FLAG_FIELDS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        overrides[name] = _parse_list(value, kind) if kind in ("ints", "floats", "strs") else value
    return resolve("full" if args.full else "quick", args.config, overrides)


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
    import jax

    return "processes" if jax.devices()[0].platform == "cpu" and n_groups > 1 else "serial"


def figures_command(out: Path) -> list[str]:
    """The command that draws the theory figures of sweep folder ``out`` (``paper_figures`` reads
    the stored records only; ``sims`` never imports it)."""
    return [sys.executable, "-m", "paper_figures", "theory", "--results", str(out)]


def draw_figures(out: Path) -> bool:
    """Run :func:`figures_command` in a subprocess; print the PNG paths, or the command on failure."""
    cmd = figures_command(out)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"figures failed ({tail}); draw them with: {shlex.join(cmd)}", file=sys.stderr)
        return False
    pngs = [line for line in proc.stdout.splitlines() if line.endswith(".png")]
    print(f"figures: {', '.join(pngs)}")
    return True


def run_sweep(args: argparse.Namespace) -> int:
    """Run the sweep described by parsed ``args``; returns the exit code."""
    from sims.claims import evaluate, verdict_table
    from sims.config import SweepConfig  # noqa: F401  (documented type)
    from sims.engine import run_group
    from sims.grid import group_ids, shape_groups
    from sims.infra import RunStore, make_executor, run_units, write_json_atomic, write_text_atomic
    from sims.summary import summarize, to_csv

    cfg = config_from_args(args)
    out = args.out or Path("results") / f"sweep-{cfg.preset}"
    groups = shape_groups(cfg)
    executor_name = args.executor if args.executor != "auto" else _default_executor(len(groups))
    workers = args.workers
    if executor_name == "processes" and workers is None:
        import os

        workers = max(1, min(os.cpu_count() or 1, len(groups)))
    store = RunStore(out)
    write_json_atomic(out / "config.json", {"config": cfg.to_dict(), "executor": executor_name,
                                            "groups": [g.key for g in groups]})
    executor = make_executor(
        executor_name, workers=workers, scheduler=args.scheduler,
        slurm=_slurm_params(args.slurm, out) if executor_name == "slurm" else None,
    )
    start = time.perf_counter()
    try:
        report = run_units(groups, run_group, store, executor, unit_ids=group_ids,
                           progress=not args.quiet, desc="shape groups")
    finally:
        executor.close()
    wanted = {i for g in groups for i in g.record_ids()}
    records = [r for r in store.load() if r["id"] in wanted]
    missing = len(wanted) - len({r["id"] for r in records})
    if missing:
        raise RuntimeError(f"{missing} records missing from {store.path} after the sweep")
    write_text_atomic(out / "summary.csv", to_csv(summarize(records)))
    verdicts = evaluate(records, cfg)
    write_json_atomic(out / "verdicts.json", {"verdicts": [v.to_dict() for v in verdicts],
                                              "records": len(records)})
    print(verdict_table(verdicts))
    print(f"\n{len(records)} records ({report.records_written} new, {report.units_skipped} of "
          f"{report.units_total} shape groups already done) in {time.perf_counter() - start:.1f} s"
          f" with executor {executor_name}; results in {out}")
    if args.figures:
        draw_figures(out)
    failed = [v.claim for v in verdicts if v.verdict == "fails"]
    if failed:
        print(f"claims failing: {', '.join(failed)}")
    return 1 if (args.strict and failed) else 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: parse, run, and turn bad input into a one-line error (exit 2)."""
    ensure_runtime()
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
