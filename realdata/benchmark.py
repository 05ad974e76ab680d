"""``python -m realdata.benchmark``: the surgical fine-tuning benchmark grid.

For each task, target variant and seed, fine-tune every tuned option (no tuning, each block,
``all``; optionally Auto-RGN and Auto-SNR) from the task's source checkpoint with the official
protocol, and store one record per run in ``OUT/runs.jsonl`` (resumable: finished runs are
skipped). Then write ``OUT/summary.csv`` (see :mod:`realdata.summary`), ``OUT/verdicts.json`` and
``OUT/config.json``.

Reproduce the README's offline demo (built-in synthetic task, about 4 minutes on 2 CPU cores)::

    python -m realdata.benchmark --task synthetic --quick --out results/realdata-quick

Real tasks read ``--data-root`` and need ``--checkpoint`` (a local state_dict file; see README).

Head size: the model is always built with the task's ``TaskSpec.num_classes`` outputs, the size the
checkpoint's head must have (checked before any run). A reader may find fewer classes on disk (a
subset of ImageNet-C's 1000 classes, a test fixture); that is fine as long as every label is below
the head size. A reader reporting more classes than the head has is refused with a clear error.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from realdata.baselines import BASELINES, DEFAULT_L1_STRENGTHS, GRADUAL, check_l1_strengths
from realdata.data.base import LoadRequest, TargetSplits
from realdata.models import build_backbone, load_checkpoint
from realdata.models.base import Backbone
from realdata.online import OBJECTIVES, OnlineConfig, adapt_online
from realdata.summary import summarize, summary_csv, verdicts
from realdata.tasks import Protocol, TaskSpec, all_tasks, get_task
from realdata.train import FinetuneConfig, accelerations, finetune
from sims.infra import (
    FolderLock,
    InputError,
    RunStore,
    check_out_dir,
    make_executor,
    package_version,
    run_units,
    stable_id,
    to_jsonable,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["BenchmarkConfig", "RunUnit", "build_units", "check_device", "check_head", "main",
           "run_benchmark", "run_unit"]

METHODS = ("rgn", "snr", *BASELINES)

#: Files the benchmark writes in OUT (each must be a regular file if it exists).
OUT_FILES = ("runs.jsonl", "config.json", "summary.csv", "verdicts.json")


@dataclass(frozen=True)
class RunUnit:
    """One fine-tuning run (a pure function of these fields).

    ``checkpoint`` is the source model file; ``data_root``/``breeds_info`` only say where the data
    are, so they are not part of the run id. ``threads`` sets torch's intra-op threads,
    ``loader_workers`` the DataLoader workers; ``bf16``/``channels_last``/``pin_memory`` allow
    those accelerations on a CUDA device (bf16 autocast changes the numbers, so a run that uses
    it has ``precision`` in its id).
    """

    task: str
    variant: str | None
    tuned: str
    method: str
    seed: int
    protocol: Protocol
    bn: str
    checkpoint: str
    data_root: str = "."
    breeds_info: str | None = None
    cache: bool = True
    threads: int = 0
    device: str = "cpu"
    preset: str = "quick"
    loader_workers: int = 0
    bf16: bool = True
    channels_last: bool = True
    pin_memory: bool = True
    backbone_kwargs: tuple[tuple[str, Any], ...] = ()
    l1_strengths: tuple[float, ...] = DEFAULT_L1_STRENGTHS
    gradual_every: int | None = None
    objective: str = "supervised"
    online: tuple[tuple[str, Any], ...] = ()

    def online_config(self) -> OnlineConfig:
        """The :class:`OnlineConfig` of an unsupervised run (``objective`` memo|tent)."""
        return OnlineConfig(objective=self.objective, tuned=self.tuned,  # type: ignore[arg-type]
                            **dict(self.online))

    def finetune_config(self) -> FinetuneConfig:
        """The :class:`FinetuneConfig` of this run."""
        return FinetuneConfig(tuned=self.tuned, method=self.method,  # type: ignore[arg-type]
                              l1_strengths=self.l1_strengths, gradual_every=self.gradual_every,
                              bn=self.bn, cache=self.cache,  # type: ignore[arg-type]
                              workers=self.loader_workers, device=self.device, bf16=self.bf16,
                              channels_last=self.channels_last, pin_memory=self.pin_memory)

    def id_fields(self) -> dict[str, Any]:
        """The fields that define the run's result (and its id)."""
        fields = {"task": self.task, "variant": self.variant, "tuned": self.tuned,
                  "method": self.method, "seed": self.seed, "protocol": self.protocol,
                  "bn": self.bn, "checkpoint": os.path.basename(self.checkpoint)}
        if self.method == "snr":
            defaults = FinetuneConfig()
            fields["snr"] = {"threshold": defaults.snr_threshold, "normalization": "min-max",
                             "batches": defaults.auto_batches}
        if self.method == "l1":
            fields["l1"] = {"strengths": list(self.l1_strengths), "penalty": "sum |w - w0|"}
        if self.method in GRADUAL:
            fields["gradual_every"] = self.gradual_every or "epochs // blocks"
        if self.objective != "supervised":
            cfg = dataclasses.asdict(self.online_config())
            fields["objective"] = cfg.pop("objective")
            fields["online"] = {k: v for k, v in cfg.items() if k != "tuned"}
        if accelerations(self.finetune_config()).bf16:
            fields["precision"] = "bf16-autocast"
        if self.backbone_kwargs:
            fields["backbone_kwargs"] = dict(self.backbone_kwargs)
        transform_id = getattr(get_task(self.task).model_transform, "run_id", None)
        if transform_id is not None:  # e.g. the noise level of noise-in-block
            fields["model_transform"] = transform_id
        return fields

    @property
    def id(self) -> str:
        return stable_id(to_jsonable(self.id_fields()))


@dataclass(frozen=True)
class BenchmarkConfig:
    """The resolved benchmark configuration (written to ``OUT/config.json``).

    Attributes:
        tasks: task names.
        preset: ``"quick"`` or ``"full"``.
        seeds: run seeds (data split and order).
        variants: per-task override of the variants (empty: the preset's).
        tuned: tuned options (empty: ``none``, every block, ``all``).
        methods: single-run methods to add (``rgn``, ``snr``, ``l1``, ``gradual-down``,
            ``gradual-up``); they tune ``all``.
        l1_strengths: the L1-regularize strength grid (selected on validation with the lr).
        gradual_every: gradual unfreezing interval in epochs (``None``: epochs // blocks).
        bn: BatchNorm mode.
        protocol_overrides: Protocol fields overriding the preset (epochs, lrs, train_n, ...).
        checkpoints: task -> checkpoint path (``"*"`` applies to every task).
        data_root, breeds_info: data locations.
        cache: allow frozen-prefix caching.
        executor, workers, scheduler: how units run (see ``sims.infra.executors``).
        device: torch device.
        loader_workers: DataLoader worker processes per run (image folders decoded lazily).
        bf16, channels_last, pin_memory: allow these accelerations on a CUDA device.
        backbone_kwargs: backbone constructor arguments overriding the task's (e.g. a tiny
            ``{"depth": 8}`` ResNet-26 for smoke tests); the checkpoint must fit the result.
    """

    tasks: tuple[str, ...]
    preset: str = "quick"
    seeds: tuple[int, ...] = (0, 1)
    variants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tuned: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("rgn",)
    bn: str = "eval"
    protocol_overrides: Mapping[str, Any] = field(default_factory=dict)
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    data_root: str = "."
    breeds_info: str | None = None
    cache: bool = True
    executor: str = "serial"
    workers: int | None = None
    scheduler: str | None = None
    device: str = "cpu"
    loader_workers: int = 0
    bf16: bool = True
    channels_last: bool = True
    pin_memory: bool = True
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    l1_strengths: tuple[float, ...] = DEFAULT_L1_STRENGTHS
    gradual_every: int | None = None
    objective: str = "supervised"
    online: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.objective not in ("supervised", *OBJECTIVES):
            raise ValueError(f"--objective must be supervised|memo|tent; got {self.objective!r}")
        if self.objective != "supervised":
            if self.methods:
                raise ValueError(f"--methods {' '.join(self.methods)} are supervised; with "
                                 f"--objective {self.objective} give --methods with no value")
            OnlineConfig(objective=self.objective, **dict(self.online))  # type: ignore[arg-type]
        object.__setattr__(self, "l1_strengths", check_l1_strengths(self.l1_strengths))
        if self.gradual_every is not None and self.gradual_every < 1:
            raise ValueError(f"--gradual-every must be >= 1 epoch; got {self.gradual_every}")
        if self.loader_workers < 0:
            raise ValueError(f"--loader-workers must be >= 0; got {self.loader_workers}")
        if self.preset not in ("quick", "full"):
            raise ValueError(f"preset must be quick|full; got {self.preset!r}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if self.bn not in ("eval", "train"):
            raise ValueError(f"--bn must be eval|train; got {self.bn!r}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; known: {list(METHODS)}")


def _protocol(spec: TaskSpec, cfg: BenchmarkConfig) -> tuple[Protocol, tuple[str, ...]]:
    proto, variants = spec.preset(cfg.preset == "quick")
    proto = proto.override(**cfg.protocol_overrides)
    if spec.name in cfg.variants:
        unknown = set(cfg.variants[spec.name]) - set(spec.variants)
        if unknown:
            raise ValueError(f"unknown variant(s) {sorted(unknown)} for task {spec.name}; "
                             f"known: {list(spec.variants)}")
        variants = cfg.variants[spec.name]
    return proto, variants


def _build(spec: TaskSpec, overrides: Mapping[str, Any]) -> Backbone:
    """The task's backbone with ``spec.num_classes`` outputs (``overrides`` update its kwargs)."""
    return build_backbone(spec.backbone, spec.num_classes,
                          **{**dict(spec.backbone_kwargs), **dict(overrides)})


def _blocks(spec: TaskSpec, overrides: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(_build(spec, overrides).block_map())


def build_units(cfg: BenchmarkConfig, checkpoints: Mapping[str, str]) -> list[RunUnit]:
    """The grid: task x variant x seed x (tuned options + automatic methods)."""
    from realdata.surgery import resolve_tuned

    units = []
    threads = _threads(cfg)
    for name in cfg.tasks:
        spec = get_task(name)
        proto, variants = _protocol(spec, cfg)
        blocks = _blocks(spec, cfg.backbone_kwargs)
        tuned = cfg.tuned or ("none", *blocks, "all")
        for t in tuned:
            resolve_tuned(t, blocks)  # validate early: unknown block -> ValueError
        opts = [(t, "fixed") for t in tuned] + [("all", m) for m in cfg.methods]
        online = tuple(sorted(cfg.online.items()))
        for variant in variants or (None,):
            for seed in cfg.seeds:
                for t, method in opts:
                    units.append(RunUnit(
                        task=name, variant=variant, tuned=t, method=method, seed=seed,
                        protocol=proto, bn=cfg.bn, checkpoint=checkpoints[name],
                        data_root=cfg.data_root, breeds_info=cfg.breeds_info, cache=cfg.cache,
                        threads=threads, device=cfg.device, preset=cfg.preset,
                        loader_workers=cfg.loader_workers, bf16=cfg.bf16,
                        channels_last=cfg.channels_last, pin_memory=cfg.pin_memory,
                        backbone_kwargs=tuple(sorted(cfg.backbone_kwargs.items())),
                        l1_strengths=cfg.l1_strengths, gradual_every=cfg.gradual_every,
                        objective=cfg.objective, online=online))
    return units


def _threads(cfg: BenchmarkConfig) -> int:
    if cfg.executor == "serial":
        return 0
    workers = cfg.workers or os.cpu_count() or 1
    return max(1, (os.cpu_count() or 1) // workers)


def _request(unit: RunUnit) -> LoadRequest:
    p = unit.protocol
    extra: dict[str, Any] = {"preset": unit.preset}
    if unit.breeds_info:
        extra["breeds_info"] = Path(unit.breeds_info)
    return LoadRequest(data_root=Path(unit.data_root), variant=unit.variant, severity=p.severity,
                       train_n=p.train_n, seed=unit.seed, image_size=p.image_size,
                       val_per_class=p.val_per_class, test_per_class=p.test_per_class,
                       extra=extra)


@functools.lru_cache(maxsize=2)
def _load(task: str, request: LoadRequest) -> TargetSplits:
    return get_task(task).load(request)


def _freeze_request(req: LoadRequest) -> LoadRequest:
    # LoadRequest.extra is a dict (unhashable); lru_cache needs a hashable key
    return dataclasses.replace(req, extra=_HashableDict(req.extra))


class _HashableDict(dict):
    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((k, str(v)) for k, v in self.items())))


def check_head(spec: TaskSpec, splits: TargetSplits) -> None:
    """The head has ``spec.num_classes`` outputs (the checkpoint's); every label must be below it.

    Raises:
        ValueError: the reader found more classes than the head has.
    """
    if splits.num_classes > spec.num_classes:
        raise ValueError(
            f"task {spec.name}: the data have {splits.num_classes} classes but the model head "
            f"(and its checkpoint) has {spec.num_classes} outputs; labels must be < "
            f"{spec.num_classes}. Use a checkpoint and task whose head covers every class.")


def run_unit(unit: RunUnit) -> list[dict[str, Any]]:
    """Run one unit and return its record (a list of one dict, for ``sims.infra.run_units``)."""
    if unit.threads:
        torch.set_num_threads(unit.threads)
    t0 = time.perf_counter()
    spec = get_task(unit.task)
    splits = _load(unit.task, _freeze_request(_request(unit)))
    check_head(spec, splits)
    model = _build(spec, dict(unit.backbone_kwargs))
    load_checkpoint(model, unit.checkpoint)
    transform_info = (dict(spec.model_transform(model, _request(unit)))
                      if spec.model_transform is not None else None)
    block_map = model.block_map()
    if unit.objective != "supervised":
        return [_online_record(unit, spec, splits, model, t0)]
    res = finetune(model, block_map, splits.train, splits.val, splits.test,
                   protocol=unit.protocol, seed=unit.seed, metric=spec.metric,
                   config=unit.finetune_config())
    rec = {
        "id": unit.id, **to_jsonable(unit.id_fields()),
        "level": spec.level_of(unit.variant), "backbone": spec.backbone,
        "blocks": list(block_map), "metric": spec.metric, "status": res.status,
        "error": res.error, "tuned_blocks": list(res.tuned_blocks), "best_lr": res.best_lr,
        "best_epoch": res.best_epoch, "val_metric": res.val_metric,
        "test_metric": res.test_metric, "test_accuracy": res.test_accuracy,
        "cached": res.cached, "n_trainable": res.n_trainable,
        "train_seconds": res.train_seconds, "wall_s": time.perf_counter() - t0,
        "lr_errors": {f"{t.lr:g}": t.error for t in res.traces if t.error},
        "val_curves": {f"{t.lr:g}": t.val_metric for t in res.traces},
        "data_info": to_jsonable(dict(splits.info)),
        "n_train": len(splits.train), "num_classes_data": splits.num_classes,
        "head_size": spec.num_classes, "package_version": package_version(),
        "best_l1": res.best_l1, "rgn_block_weights": _rgn_block_weights(res),
    }
    if transform_info is not None:
        rec["transform_info"] = to_jsonable(transform_info)
    return [rec]


def _online_record(unit: RunUnit, spec: TaskSpec, splits: TargetSplits, model: Backbone,
                   t0: float) -> dict[str, Any]:
    """Record of an unsupervised online run (:mod:`realdata.online`); same core fields as a
    supervised record, so summaries, Cross-Val and ranks read it unchanged."""
    model.to(unit.device)
    res = adapt_online(model, model.block_map(), splits.val, splits.test,
                       config=unit.online_config(), seed=unit.seed, metric=spec.metric)
    return {
        "id": unit.id, **to_jsonable(unit.id_fields()),
        "level": spec.level_of(unit.variant), "backbone": spec.backbone,
        "blocks": list(model.block_map()), "metric": spec.metric, "status": res.status,
        "error": res.error, "tuned_blocks": list(res.tuned_blocks), "best_lr": res.best_lr,
        "best_epoch": 0, "val_metric": res.val_metric, "test_metric": res.test_metric,
        "test_accuracy": res.test_accuracy, "cached": False, "n_trainable": res.n_trainable,
        "train_seconds": res.seconds, "wall_s": time.perf_counter() - t0,
        "val_by_lr": res.val_by_lr, "data_info": to_jsonable(dict(splits.info)),
        "n_train": 0, "num_classes_data": splits.num_classes, "head_size": spec.num_classes,
        "package_version": package_version(),
    }


def _rgn_block_weights(res: Any) -> dict[str, float] | None:
    """Auto-RGN: per block, the mean over epochs of the selected lr's block multipliers."""
    trace = next((t for t in res.traces if t.lr == res.best_lr and t.rgn_blocks), None)
    if trace is None:
        return None
    return {b: sum(e[b] for e in trace.rgn_blocks) / len(trace.rgn_blocks)
            for b in trace.rgn_blocks[0]}


def _resolve_checkpoints(cfg: BenchmarkConfig, out: Path) -> dict[str, str]:
    """Checkpoint per task: ``--checkpoint`` (per task or ``*``), else the task's built-in
    source model (cached under ``OUT/checkpoints``)."""
    paths: dict[str, str] = {}
    missing = []
    for name in cfg.tasks:
        spec = get_task(name)
        given = cfg.checkpoints.get(name, cfg.checkpoints.get("*"))
        if given:
            if not Path(given).is_file():
                raise ValueError(f"checkpoint file not found for task {name}: {given}")
            paths[name] = str(Path(given).resolve())
            # fail fast (before any run) on a checkpoint for another architecture
            load_checkpoint(_build(spec, cfg.backbone_kwargs), paths[name])
        elif spec.prepare_source is not None:
            if cfg.backbone_kwargs:
                raise ValueError(f"--backbone-kwargs needs --checkpoint for task {name} (its "
                                 "built-in source model has the task's own backbone)")
            proto, _ = _protocol(spec, cfg)
            req = LoadRequest(data_root=Path(cfg.data_root), image_size=proto.image_size,
                              extra={"preset": cfg.preset})
            paths[name] = str(spec.prepare_source(req, out / "checkpoints"))
        else:
            missing.append(f"{name} ({spec.backbone})")
    if missing:
        raise ValueError("these tasks need --checkpoint PATH (or TASK=PATH) with a pretrained "
                         f"source state_dict: {', '.join(missing)}")
    return paths


def _preflight(cfg: BenchmarkConfig) -> None:
    """Read each data-backed task's first target once so a wrong --data-root fails before any run
    (the reader's error prints the expected layout)."""
    for name in cfg.tasks:
        spec = get_task(name)
        if not spec.needs_data:
            continue
        if not Path(cfg.data_root).is_dir():
            raise ValueError(f"--data-root {cfg.data_root} is not a folder; task {name} expects:"
                             f"\n{spec.layout}")
        proto, variants = _protocol(spec, cfg)
        unit = RunUnit(task=name, variant=(variants or (None,))[0], tuned="none",
                       method="fixed", seed=cfg.seeds[0], protocol=proto, bn=cfg.bn,
                       checkpoint="", data_root=cfg.data_root, breeds_info=cfg.breeds_info)
        check_head(spec, _load(name, _freeze_request(_request(unit))))


def check_device(device: str) -> None:
    """Refuse a torch device string that does not parse or names hardware that is missing.

    Raises:
        InputError: e.g. ``nonsense``, or ``cuda`` where ``torch.cuda.is_available()`` is false.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:N or "
                         "mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"--device {device}: no CUDA device is available to torch; use "
                             "--device cpu")
        if dev.index is not None and dev.index >= count:
            raise InputError(f"--device {device}: only {count} CUDA device(s) are visible")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available; use --device cpu")


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, *, progress: bool = True
                  ) -> dict[str, Any]:
    """Run (or resume) the grid into ``out``; write summary files; return the report.

    Everything is validated (device, ``out``, the folder lock, data, checkpoints, the stored
    records, the executor) before ``config.json`` is written; ``out`` stays locked until the end.
    """
    check_device(cfg.device)
    out = check_out_dir(out, files=OUT_FILES)
    with FolderLock(out):
        return _run_locked(cfg, out, progress)


def _run_locked(cfg: BenchmarkConfig, out: Path, progress: bool) -> dict[str, Any]:
    t0 = time.perf_counter()
    _preflight(cfg)
    checkpoints = _resolve_checkpoints(cfg, out)
    units = build_units(cfg, checkpoints)
    store = RunStore(out)
    store.load()  # an unreadable runs.jsonl fails here, before config.json is written
    executor = make_executor(cfg.executor, workers=cfg.workers, scheduler=cfg.scheduler)
    try:
        write_json_atomic(out / "config.json", {"config": to_jsonable(cfg),
                                                "checkpoints": checkpoints,
                                                "package_version": package_version(),
                                                "n_units": len(units)})
        report = run_units(units, run_unit, store, executor, unit_ids=lambda u: [u.id],
                           progress=progress, desc="realdata")
    finally:
        executor.close()
    # summarize every record in the folder (several tasks may share one OUT, one call each)
    records = store.load()
    rows = summarize(records)
    write_text_atomic(out / "summary.csv", summary_csv(rows))
    blocks_of = {(r["task"], r["variant"] or ""): r["blocks"] for r in records}
    v = verdicts(rows, blocks_of)
    write_json_atomic(out / "verdicts.json", v)
    tv = task_verdicts(cfg.tasks, records)
    if tv:
        write_json_atomic(out / "task_verdicts.json", tv)
    wanted = {u.id for u in units}
    failed = [r for r in records if r["id"] in wanted and r["status"] != "ok"]
    return {"units": len(units), "run": report.units_run, "skipped": report.units_skipped,
            "failed": len(failed), "wall_s": time.perf_counter() - t0, "verdicts": v,
            "task_verdicts": tv}


def task_verdicts(tasks: Sequence[str], records: Sequence[Mapping[str, Any]]
                  ) -> list[dict[str, Any]]:
    """The tasks' own verdicts (:attr:`TaskSpec.task_verdicts`) on their records."""
    out: list[dict[str, Any]] = []
    for name in tasks:
        judge = get_task(name).task_verdicts
        if judge is not None:
            out.extend(judge([r for r in records if r["task"] == name]))
    return out


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m realdata.benchmark",
        description="Surgical fine-tuning benchmark: fine-tune each block of a pretrained CNN on "
                    "a few target examples and compare (see README, section realdata).")
    p.add_argument("--task", default="synthetic",
                   help="task name or 'all' (registered: %(default)s and the dataset tasks; "
                        "unknown names list the known ones)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="preset", action="store_const", const="quick",
                   help="small preset: few variants, epochs and examples (default)")
    g.add_argument("--full", dest="preset", action="store_const", const="full",
                   help="the paper's protocol and every variant")
    p.set_defaults(preset="quick")
    p.add_argument("--out", required=True, help="output folder (runs.jsonl, summary.csv, ...)")
    p.add_argument("--seed", type=int, default=None, help="a single seed")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds (default: 0 1 2 with --quick, 0..4 with --full)")
    p.add_argument("--data-root", default=".", help="folder holding the published datasets")
    p.add_argument("--checkpoint", action="append", default=[], metavar="[TASK=]PATH",
                   help="local source checkpoint (state_dict or a dict holding one); repeat as "
                        "TASK=PATH for several tasks")
    p.add_argument("--breeds-info", default=None,
                   help="folder with the BREEDS hierarchy files (dataset_class_info.json, ...)")
    p.add_argument("--variants", nargs="+", default=None,
                   help="target variants of the task (e.g. corruption names)")
    p.add_argument("--tuned", nargs="+", default=None,
                   help="tuned options: block names, ranges A-B, all, head, none "
                        "(default: none, every block, all)")
    p.add_argument("--methods", nargs="*", default=None, choices=METHODS,
                   help="single-run methods to add: rgn, snr (automatic block choice), l1, "
                        "gradual-down, gradual-up (baselines) (default: rgn with --quick, rgn snr "
                        "with --full)")
    p.add_argument("--l1-strengths", type=float, nargs="+", default=None, metavar="LAM",
                   help="L1-regularize strength grid, selected on validation with the lr "
                        f"(default {' '.join(f'{x:g}' for x in DEFAULT_L1_STRENGTHS)})")
    p.add_argument("--gradual-every", type=int, default=None, metavar="EPOCHS",
                   help="gradual unfreezing: epochs between unfreezing steps (default: "
                        "epochs // number of blocks, at least 1)")
    p.add_argument("--objective", choices=("supervised", *OBJECTIVES), default="supervised",
                   help="supervised fine-tuning (default) or unsupervised online adaptation over "
                        "the target test stream: memo (marginal entropy over AugMix views of "
                        "each image) or tent (entropy of each batch's predictions)")
    p.add_argument("--online-lrs", type=float, nargs="+", default=None, metavar="LR",
                   help="online SGD learning rates, one selected on the validation stream "
                        "(default 5e-3 1e-3 1e-4)")
    p.add_argument("--online-steps", type=int, default=None,
                   help="online gradient steps per stream batch (default 1)")
    p.add_argument("--memo-augs", type=int, default=None,
                   help="MEMO: AugMix views per test image (default 16)")
    p.add_argument("--online-batch-size", type=int, default=None,
                   help="TENT: test images per stream batch (default 64)")
    p.add_argument("--online-bn", choices=("eval", "batch"), default=None,
                   help="BatchNorm during online adaptation: eval (source statistics, default) "
                        "or batch (statistics of each forward batch)")
    p.add_argument("--episodic", action="store_true",
                   help="reset the weights after every stream batch (default: carry forward)")
    p.add_argument("--bn", choices=("eval", "train"), default="eval",
                   help="BatchNorm during fine-tuning (default eval, as the official code)")
    p.add_argument("--epochs", type=int, default=None, help="override the protocol's epochs")
    p.add_argument("--lrs", type=float, nargs="+", default=None, help="override the lr grid")
    p.add_argument("--train-n", type=int, default=None,
                   help="override train_n (labelled target training examples in total)")
    p.add_argument("--train-n-grid", type=int, nargs="+", default=None, metavar="N",
                   help="accuracy against target-set size: run the grid once per N labelled "
                        "training examples PER CLASS (e.g. 1 2 5 10 20 50) into one --out; writes "
                        "size_summary.csv and size_verdicts.json")
    p.add_argument("--val-per-class", type=int, default=None,
                   help="override the validation examples per class")
    p.add_argument("--test-per-class", type=int, default=None,
                   help="override the test examples per class")
    p.add_argument("--image-size", type=int, default=None,
                   help="override the image side in pixels (ImageNet-size tasks: 224)")
    p.add_argument("--severity", type=int, default=None, choices=range(1, 6), metavar="1..5",
                   help="override the corruption severity (corruption tasks; default 5)")
    p.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    p.add_argument("--no-cache", action="store_true", help="disable frozen-prefix caching")
    p.add_argument("--executor", default="serial",
                   choices=("serial", "processes", "dask", "slurm"), help="how units run")
    p.add_argument("--workers", type=int, default=None, help="worker processes / dask workers")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (tcp://HOST:8786)")
    p.add_argument("--backbone-kwargs", default=None, metavar="JSON",
                   help="backbone constructor arguments overriding the task's, as a JSON object, "
                        "e.g. '{\"depth\": 8}' (tiny ResNet-26) or '{\"layers\": [1, 1, 1, 1], "
                        "\"base_width\": 8}' (tiny ResNet-50); needs a matching --checkpoint")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--loader-workers", type=int, default=0, metavar="N",
                   help="DataLoader worker processes per run for image-folder datasets "
                        "(default 0: decode in the run's process; --workers is the executor's)")
    p.add_argument("--no-bf16", action="store_true",
                   help="no bf16 autocast (default: on for CUDA devices that support bf16)")
    p.add_argument("--no-channels-last", action="store_true",
                   help="no channels_last memory format (default: on for CUDA)")
    p.add_argument("--no-pin-memory", action="store_true",
                   help="no pinned host memory for batches (default: on for CUDA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _config_from_args(a: argparse.Namespace) -> BenchmarkConfig:
    tasks = tuple(all_tasks()) if a.task == "all" else (get_task(a.task).name,)
    if a.seeds is not None and a.seed is not None:
        raise ValueError("give --seed or --seeds, not both")
    seeds = tuple(a.seeds) if a.seeds else ((a.seed,) if a.seed is not None else
                                            ((0, 1, 2) if a.preset == "quick" else (0, 1, 2, 3, 4)))
    ckpts: dict[str, str] = {}
    for item in a.checkpoint:
        task, sep, path = item.partition("=")
        if sep and task in all_tasks():
            ckpts[task] = path
        else:
            ckpts["*"] = item
    if "*" in ckpts and len(tasks) > 1:
        raise ValueError("with --task all give --checkpoint TASK=PATH for each task")
    variants = {}
    if a.variants:
        if len(tasks) > 1:
            raise ValueError("--variants needs a single --task")
        variants[tasks[0]] = tuple(a.variants)
    overrides = {"epochs": a.epochs, "train_n": a.train_n, "batch_size": a.batch_size,
                 "lrs": tuple(a.lrs) if a.lrs else None, "val_per_class": a.val_per_class,
                 "test_per_class": a.test_per_class, "image_size": a.image_size,
                 "severity": a.severity}
    backbone_kwargs: dict[str, Any] = {}
    if a.backbone_kwargs:
        try:
            backbone_kwargs = json.loads(a.backbone_kwargs)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--backbone-kwargs must be a JSON object; got {a.backbone_kwargs!r}"
                             f" ({exc})") from exc
        if not isinstance(backbone_kwargs, dict):
            raise ValueError(f"--backbone-kwargs must be a JSON object; got {a.backbone_kwargs!r}")
    methods = tuple(a.methods) if a.methods is not None else (
        () if a.objective != "supervised" else ("rgn",) if a.preset == "quick" else
        ("rgn", "snr"))
    online = {k: v for k, v in (("lrs", tuple(a.online_lrs) if a.online_lrs else None),
                                ("steps", a.online_steps), ("n_augs", a.memo_augs),
                                ("batch_size", a.online_batch_size), ("bn", a.online_bn),
                                ("episodic", a.episodic or None)) if v is not None}
    if online and a.objective == "supervised":
        raise ValueError("--online-*, --memo-augs and --episodic need --objective memo|tent")
    return BenchmarkConfig(
        tasks=tasks, preset=a.preset, seeds=seeds, variants=variants,
        tuned=tuple(a.tuned or ()), methods=methods, bn=a.bn,
        protocol_overrides={k: v for k, v in overrides.items() if v is not None},
        checkpoints=ckpts, data_root=a.data_root, breeds_info=a.breeds_info,
        cache=not a.no_cache, executor=a.executor, workers=a.workers, scheduler=a.scheduler,
        device=a.device, loader_workers=a.loader_workers, bf16=not a.no_bf16,
        channels_last=not a.no_channels_last, pin_memory=not a.no_pin_memory,
        backbone_kwargs=backbone_kwargs,
        l1_strengths=tuple(a.l1_strengths) if a.l1_strengths else DEFAULT_L1_STRENGTHS,
        gradual_every=a.gradual_every, objective=a.objective, online=online)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 with a one-line reason on bad input)."""
    args = _parser().parse_args(argv)
    try:
        cfg = _config_from_args(args)
        if args.train_n_grid:
            if args.train_n is not None:
                raise ValueError("give --train-n or --train-n-grid, not both")
            from realdata.experiments.size_curve import run_size_curve

            size = run_size_curve(cfg, args.train_n_grid, args.out,
                                  progress=not args.no_progress)
        else:
            report = run_benchmark(cfg, args.out, progress=not args.no_progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.train_n_grid:
        print(f"{size['units']} runs ({size['run']} new, {size['skipped']} resumed, "
              f"{size['failed']} failed) in {size['wall_s']:.1f} s -> {args.out}")
        for v in size["verdicts"]:
            gaps = " ".join(f"{n}:{100 * g['diff']:+.1f}" for n, g in v["gaps"].items())
            print(f"  {v['task']}/{v['shift'] or '-'}: best block {v['best_block']}; gap to all "
                  f"per class size [{gaps}] pts; shrinks: {v['verdict']} ({v['reason']})")
        return 0
    print(f"{report['units']} runs ({report['run']} new, {report['skipped']} resumed, "
          f"{report['failed']} failed) in {report['wall_s']:.1f} s -> {args.out}")
    for v in report["verdicts"]:
        accs = " ".join(f"{b}={x:.3f}" for b, x in v["accs"].items())
        print(f"  {v['task']}/{v['shift'] or '-'} ({v['level']}): best {v['best_block']} "
              f"{v['best_acc']:.3f} vs all {v['all_acc']:.3f}; paper ordering "
              f"{'n/a' if v['holds'] is None else ('holds' if v['holds'] else 'does NOT hold')}"
              f" [{accs}]")
    for v in report["task_verdicts"]:
        accs = " ".join(f"{b}={x:.3f}" for b, x in v.get("accs", {}).items())
        print(f"  {v['task']}/{v.get('perturbed', '-')}: {v['verdict']} ({v['reason']}) [{accs}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
