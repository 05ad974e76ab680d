"""``python -m realdata.benchmark``: the surgical fine-tuning benchmark grid.

For each task, target variant and seed, fine-tune every tuned option (no tuning, each block,
``all``; optionally Auto-RGN, Auto-SNR and the single-run baselines L1-regularize and gradual
unfreezing) from the task's source checkpoint with the official protocol (or, with
``--objective memo|tent``, adapt it online without labels: :mod:`realdata.online`), and store one
record per run in ``OUT/runs.jsonl`` (:mod:`realdata.records`; resumable: finished runs are
skipped). A run's id hashes the checkpoint's content (sha256), the data fingerprint (reader
version, split contents, generated-vs-published marker), the protocol, the objective and the
package version, so a retrained model or changed data never reuses old records; a folder holding
records of other settings for the same task is refused unless ``--force-new-settings``. Then
write ``OUT/summary.csv`` (see :mod:`realdata.summary`), ``OUT/verdicts.json`` (paired verdicts)
and ``OUT/config.json``.

Reproduce the README's offline demo (built-in synthetic task, a few minutes on 2 CPU cores)::

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
import math
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
from realdata.fingerprint import file_sha256, splits_fingerprint
from realdata.models import build_backbone, load_checkpoint
from realdata.models.base import Backbone
from realdata.online import OBJECTIVES, OnlineConfig, OnlineResult, adapt_online
from realdata.pretrain import Progress
from realdata.records import RunRecord, load_records
from realdata.summary import edge_warning, summarize, summary_csv, verdicts
from realdata.tasks import Protocol, TaskSpec, all_tasks, get_task, load_task_modules
from realdata.train import (
    FinetuneConfig,
    FinetuneResult,
    LrTrace,
    accelerations,
    finetune,
    finetune_many,
)
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

__all__ = [
    "BenchmarkConfig",
    "DataLocation",
    "RunUnit",
    "SourceCheckpoint",
    "TaskPlan",
    "build_units",
    "check_device",
    "check_folder",
    "check_head",
    "grid_batch_enabled",
    "group_units",
    "main",
    "plan_task",
    "run_benchmark",
    "run_group",
    "run_unit",
]

METHODS = ("rgn", "snr", *BASELINES)
#: ``extra_id`` keys that belong to one method (not to the benchmark setting).
_METHOD_KEYS = ("snr", "l1", "gradual_every")

#: Files the benchmark writes in OUT (each must be a regular file if it exists).
OUT_FILES = ("runs.jsonl", "config.json", "summary.csv", "verdicts.json")


@dataclass(frozen=True)
class DataLocation:
    """Where a task's data are (not part of a run's identity: the data fingerprint is).

    Attributes:
        data_root: folder holding the published datasets.
        breeds_info: folder of the BREEDS hierarchy files.
        preset: ``"quick"`` or ``"full"`` (passed to readers and source builders).
    """

    data_root: str = "."
    breeds_info: str | None = None
    preset: str = "quick"

    def __post_init__(self) -> None:
        if self.preset not in ("quick", "full"):
            raise ValueError(f"preset must be quick|full; got {self.preset!r}")


@dataclass(frozen=True)
class SourceCheckpoint:
    """A source model file and the sha256 of its bytes (the content keys the runs)."""

    path: str
    sha256: str


@dataclass(frozen=True)
class RunUnit:
    """One fine-tuning run (a pure function of these fields).

    ``protocol`` and ``finetune`` are validated where they are defined; ``online`` (``None``:
    supervised fine-tuning) makes the run an unsupervised online one (:mod:`realdata.online`;
    its ``tuned`` is ``finetune.tuned``). ``data`` only says where
    the data are, ``data_fingerprint`` what they are (:mod:`realdata.fingerprint`). ``threads``
    sets torch's intra-op threads, ``progress`` the output inside the run, ``task_modules`` the
    modules a worker imports before resolving the task; none of these three enters the id.
    """

    task: str
    variant: str | None
    seed: int
    protocol: Protocol
    finetune: FinetuneConfig
    data: DataLocation
    checkpoint: SourceCheckpoint
    data_fingerprint: str
    reader_version: str = "1"
    task_modules: tuple[str, ...] = ()
    threads: int = 1
    progress: Progress = "off"
    backbone_kwargs: tuple[tuple[str, Any], ...] = ()
    online: OnlineConfig | None = None
    model_transform: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.online is not None and self.online.tuned != self.finetune.tuned:
            raise ValueError(f"online.tuned ({self.online.tuned}) must equal finetune.tuned "
                             f"({self.finetune.tuned})")

    @property
    def objective(self) -> str:
        """``"supervised"``, or the online objective (``"memo"``, ``"tent"``)."""
        return "supervised" if self.online is None else self.online.objective

    def online_fields(self) -> dict[str, Any] | None:
        """The online settings without objective and tuned option (``None``: supervised)."""
        if self.online is None:
            return None
        return {k: v for k, v in dataclasses.asdict(self.online).items()
                if k not in ("objective", "tuned")}

    @property
    def tuned(self) -> str:
        return self.finetune.tuned

    @property
    def method(self) -> str:
        return self.finetune.method

    @property
    def bn(self) -> str:
        return self.finetune.bn

    def finetune_config(self) -> FinetuneConfig:
        """The :class:`FinetuneConfig` of this run."""
        return self.finetune

    def extra_id(self) -> dict[str, Any]:
        """Method parameters, precision and backbone overrides that change the result."""
        extra: dict[str, Any] = {}
        if self.method == "snr":
            extra["snr"] = {"threshold": self.finetune.snr_threshold,
                            "normalization": "min-max", "batches": self.finetune.auto_batches}
        if self.method == "l1":
            extra["l1"] = {"strengths": list(self.finetune.l1_strengths),
                           "penalty": "sum |w - w0|"}
        if self.method in GRADUAL:
            extra["gradual_every"] = self.finetune.gradual_every or "epochs // blocks"
        if accelerations(self.finetune).bf16:
            extra["precision"] = "bf16-autocast"
        if self.backbone_kwargs:
            extra["backbone_kwargs"] = dict(self.backbone_kwargs)
        if self.model_transform:  # e.g. the noise level of noise-in-block
            extra["model_transform"] = dict(self.model_transform)
        return extra

    def settings_fields(self) -> dict[str, Any]:
        """What every run of one benchmark setting of this task shares (the objective and the
        online settings included; a method's own parameters not)."""
        return {"task": self.task, "protocol": self.protocol, "bn": self.bn,
                "checkpoint_sha256": self.checkpoint.sha256,
                "reader_version": self.reader_version, "package_version": package_version(),
                "objective": self.objective, "online": self.online_fields(),
                "extra_id": {k: v for k, v in self.extra_id().items()
                             if k not in _METHOD_KEYS}}

    def id_fields(self) -> dict[str, Any]:
        """The fields that define the run's result (and its id)."""
        return {**self.settings_fields(), "extra_id": self.extra_id(), "variant": self.variant,
                "tuned": self.tuned, "method": self.method, "seed": self.seed,
                "data_fingerprint": self.data_fingerprint}

    @property
    def settings(self) -> str:
        return stable_id(to_jsonable(self.settings_fields()))

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
        objective: ``"supervised"`` (fine-tuning) or ``"memo"`` / ``"tent"`` (unsupervised online
            adaptation; no ``methods`` then).
        online: :class:`realdata.online.OnlineConfig` fields (lrs, steps, n_augs, batch_size, bn,
            episodic) for an online objective.
        bn: BatchNorm mode.
        protocol_overrides: Protocol fields overriding the preset (epochs, lrs, train_n,
            select_with_start, min_steps, ...).
        checkpoints: task -> checkpoint path (``"*"`` applies to every task).
        data_root, breeds_info: data locations.
        cache: allow frozen-prefix caching.
        executor, workers, scheduler: how units run (see ``sims.infra.executors``).
        threads: torch threads per run (``None``: cores / concurrent runs).
        device: torch device.
        loader_workers: DataLoader worker processes per run (image folders decoded lazily).
        bf16, channels_last, pin_memory: allow these accelerations on a CUDA device.
        backbone_kwargs: backbone constructor arguments overriding the task's (e.g. a tiny
            ``{"depth": 8}`` ResNet-26 for smoke tests); the checkpoint must fit the result.
        task_modules: modules imported (here and in every worker) to register a user's tasks.
        source_flips: horizontal flips in built-in source pretraining: ``"task"`` (the task's
            declaration), ``"on"`` or ``"off"``.
        grid_batch: train each run's lr grid as one batched model (``--no-grid-batch``: the
            per-lr loop; see :mod:`realdata.grid_batch`). Not part of a run's id: both paths
            give the same numbers.
        batch_targets: with ``grid_batch``, up to this many runs of one task and tuned option
            (its seeds and variants) train as one batched model (:func:`group_units`); 1: each
            run alone. Not part of a run's id (same numbers, tested).
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
    threads: int | None = None
    device: str = "cpu"
    loader_workers: int = 0
    bf16: bool = True
    channels_last: bool = True
    pin_memory: bool = True
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    task_modules: tuple[str, ...] = ()
    source_flips: str = "task"
    l1_strengths: tuple[float, ...] = DEFAULT_L1_STRENGTHS
    gradual_every: int | None = None
    objective: str = "supervised"
    online: Mapping[str, Any] = field(default_factory=dict)
    grid_batch: bool = True
    batch_targets: int = 1

    def __post_init__(self) -> None:
        if self.batch_targets < 1:
            raise ValueError(f"--batch-targets must be >= 1; got {self.batch_targets}")
        if self.objective not in ("supervised", *OBJECTIVES):
            raise ValueError(f"--objective must be supervised|memo|tent; got {self.objective!r}")
        if self.objective != "supervised":
            if self.methods:
                raise ValueError(f"--methods {' '.join(self.methods)} are supervised; with "
                                 f"--objective {self.objective} give --methods with no value")
            OnlineConfig(objective=self.objective, **dict(self.online))  # type: ignore[arg-type]
        elif self.online:
            raise ValueError("online settings (--online-*, --memo-augs, --episodic) need "
                             "--objective memo|tent")
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
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1; got {self.threads}")
        if self.source_flips not in ("task", "on", "off"):
            raise ValueError(f"--source-flips must be task|on|off; got {self.source_flips!r}")


@dataclass(frozen=True)
class TaskPlan:
    """One task resolved once: protocol, variants, blocks, options, source model, data.

    ``fingerprints`` maps ``(variant, seed)`` to the data fingerprint of that target split.
    """

    task: str
    protocol: Protocol
    variants: tuple[str | None, ...]
    blocks: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    checkpoint: SourceCheckpoint
    fingerprints: Mapping[tuple[str | None, int], str]
    reader_version: str
    model_transform: tuple[tuple[str, Any], ...] = ()


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


def _concurrency(cfg: BenchmarkConfig) -> int:
    """Runs that execute at once on this machine."""
    if cfg.executor == "serial":
        return 1
    if cfg.executor == "dask":
        return cfg.workers or 2
    return cfg.workers or os.cpu_count() or 1


def _threads(cfg: BenchmarkConfig) -> int:
    """``--threads``, else cores / concurrent runs (at least 1)."""
    if cfg.threads is not None:
        return cfg.threads
    return max(1, (os.cpu_count() or 1) // _concurrency(cfg))


def _finetune_config(cfg: BenchmarkConfig, tuned: str, method: str) -> FinetuneConfig:
    return FinetuneConfig(tuned=tuned, method=method,  # type: ignore[arg-type]
                          l1_strengths=cfg.l1_strengths, gradual_every=cfg.gradual_every,
                          bn=cfg.bn, cache=cfg.cache,  # type: ignore[arg-type]
                          workers=cfg.loader_workers, device=cfg.device, bf16=cfg.bf16,
                          channels_last=cfg.channels_last, pin_memory=cfg.pin_memory,
                          grid_batch=cfg.grid_batch)


def _online_config(cfg: BenchmarkConfig, tuned: str) -> OnlineConfig | None:
    if cfg.objective == "supervised":
        return None
    return OnlineConfig(objective=cfg.objective, tuned=tuned,  # type: ignore[arg-type]
                        **dict(cfg.online))


def _location(cfg: BenchmarkConfig) -> DataLocation:
    return DataLocation(data_root=cfg.data_root, breeds_info=cfg.breeds_info, preset=cfg.preset)


def build_units(cfg: BenchmarkConfig, plans: Sequence[TaskPlan], *,
                progress: Progress = "off") -> list[RunUnit]:
    """The grid: task x variant x seed x (tuned options + single-run methods)."""
    units = []
    threads, data = _threads(cfg), _location(cfg)
    for plan in plans:
        for variant in plan.variants:
            for seed in cfg.seeds:
                for t, method in plan.options:
                    units.append(RunUnit(
                        task=plan.task, variant=variant, seed=seed, protocol=plan.protocol,
                        finetune=_finetune_config(cfg, t, method), data=data,
                        checkpoint=plan.checkpoint,
                        data_fingerprint=plan.fingerprints[(variant, seed)],
                        reader_version=plan.reader_version, task_modules=cfg.task_modules,
                        threads=threads, progress=progress,
                        backbone_kwargs=tuple(sorted(cfg.backbone_kwargs.items())),
                        online=_online_config(cfg, t), model_transform=plan.model_transform))
    return units


def _request(task: str, protocol: Protocol, data: DataLocation, variant: str | None,
             seed: int) -> LoadRequest:
    extra: dict[str, Any] = {"preset": data.preset}
    if data.breeds_info:
        extra["breeds_info"] = Path(data.breeds_info)
    return LoadRequest(data_root=Path(data.data_root), variant=variant, severity=protocol.severity,
                       train_n=protocol.train_n, seed=seed, image_size=protocol.image_size,
                       val_per_class=protocol.val_per_class,
                       test_per_class=protocol.test_per_class, extra=_HashableDict(extra))


@functools.lru_cache(maxsize=2)
def _load(task: str, request: LoadRequest) -> TargetSplits:
    return _read(get_task(task), request)


def _read(spec: TaskSpec, request: LoadRequest) -> TargetSplits:
    """Call the task's reader; an error other than a ValueError becomes a one-line ValueError
    naming the task, variant and seed (a ValueError, e.g. a layout error, passes unchanged)."""
    try:
        return spec.load(request)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"task {spec.name}: its reader failed on variant {request.variant}, "
                         f"seed {request.seed}: {type(exc).__name__}: {exc}") from exc


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


def _record(unit: RunUnit, spec: TaskSpec, splits: TargetSplits, block_map: Mapping[str, Any],
            res: FinetuneResult, wall_s: float, error: str | None = None,
            transform_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return RunRecord(
        id=unit.id, settings=unit.settings, task=unit.task, variant=unit.variant,
        tuned=unit.tuned, method=unit.method, seed=unit.seed,
        protocol=to_jsonable(unit.protocol), bn=unit.bn,
        checkpoint=os.path.basename(unit.checkpoint.path),
        checkpoint_sha256=unit.checkpoint.sha256, data_fingerprint=unit.data_fingerprint,
        package_version=package_version(), extra_id=unit.extra_id(),
        level=spec.level_of(unit.variant), backbone=spec.backbone, blocks=list(block_map),
        metric=spec.metric, status="failed" if error else res.status, error=error or res.error,
        tuned_blocks=list(res.tuned_blocks), best_lr=res.best_lr, best_epoch=res.best_epoch,
        epochs=res.epochs, val_metric=res.val_metric, test_metric=res.test_metric,
        test_accuracy=res.test_accuracy, start_val_metric=res.start_val_metric,
        start_test_metric=res.start_test_metric, start_test_accuracy=res.start_test_accuracy,
        lr_at_grid_edge=res.lr_at_grid_edge, best_epoch_last=res.best_epoch_last,
        cached=res.cached, n_trainable=res.n_trainable, grid=to_jsonable(res.grid),
        train_seconds=res.train_seconds,
        wall_s=wall_s, threads=unit.threads,
        lr_errors={_trace_key(t): t.error for t in res.traces if t.error},
        val_curves={_trace_key(t): t.val_metric for t in res.traces},
        objective=unit.objective, online=unit.online_fields(), best_l1=res.best_l1,
        rgn_block_weights=_rgn_block_weights(res),
        data_info=to_jsonable(dict(splits.info)), n_train=len(splits.train),  # type: ignore[arg-type]
        num_classes_data=splits.num_classes, head_size=spec.num_classes,
        transform_info=None if transform_info is None else dict(transform_info),
    ).to_json()


def _trace_key(t: LrTrace) -> str:
    """``"%g"`` of the lr; ``"<lr>,l1=<strength>"`` for an ``l1`` run's ``(lr, strength)``."""
    return f"{t.lr:g}" if t.l1 is None else f"{t.lr:g},l1={t.l1:g}"


def _rgn_block_weights(res: FinetuneResult) -> dict[str, float] | None:
    """Auto-RGN: per block, the mean over epochs of the selected lr's block multipliers."""
    trace = next((t for t in res.traces if t.lr == res.best_lr and t.rgn_blocks), None)
    if trace is None:
        return None
    return {b: sum(e[b] for e in trace.rgn_blocks) / len(trace.rgn_blocks)
            for b in trace.rgn_blocks[0]}


def _online_result(res: OnlineResult, lrs: Sequence[float]) -> FinetuneResult:
    """An online run's outcome in the supervised result's terms: one validation score per lr
    (``val_curves``), no epochs (``best_epoch`` 0), no untuned metrics (``start_*`` NaN)."""
    tried = lrs if res.tuned_blocks else lrs[:1]
    traces = [LrTrace(lr=lr, val_metric=[res.val_by_lr[f"{lr:g}"]]) if f"{lr:g}" in res.val_by_lr
              else LrTrace(lr=lr, error="non-finite loss on the validation stream")
              for lr in tried]
    return FinetuneResult(res.status, res.tuned_blocks, res.best_lr, 0, res.val_metric,
                          res.test_metric, res.test_accuracy, traces, False, res.n_trainable,
                          res.seconds, error=res.error, epochs=0, lrs=tuple(lrs))


def run_unit(unit: RunUnit) -> list[dict[str, Any]]:
    """Run one unit and return its record (a list of one dict, for ``sims.infra.run_units``).

    Sets torch's threads to ``unit.threads`` and imports ``unit.task_modules`` first (so a user's
    task resolves in any executor's worker). Data that differ from the planned fingerprint (a
    reader that is not deterministic) give a ``failed`` record instead of a run.
    """
    torch.set_num_threads(unit.threads)
    if unit.task_modules:
        load_task_modules(unit.task_modules)
    t0 = time.perf_counter()
    spec = get_task(unit.task)
    splits = _load(unit.task, _request(unit.task, unit.protocol, unit.data, unit.variant,
                                       unit.seed))
    check_head(spec, splits)
    model = _build(spec, dict(unit.backbone_kwargs))
    load_checkpoint(model, unit.checkpoint.path)
    transform_info = (to_jsonable(dict(spec.model_transform(model, _request(
        unit.task, unit.protocol, unit.data, unit.variant, unit.seed))))
        if spec.model_transform is not None else None)
    block_map = model.block_map()
    mismatch = _data_mismatch(unit, spec, splits, block_map, t0, transform_info)
    if mismatch is not None:
        return [mismatch]
    if unit.online is not None:
        model.to(unit.finetune.device)
        online = adapt_online(model, block_map, splits.val, splits.test, config=unit.online,
                              seed=unit.seed, metric=spec.metric)
        return [_record(unit, spec, splits, block_map, _online_result(online, unit.online.lrs),
                        time.perf_counter() - t0, transform_info=transform_info)]
    desc = f"{unit.task}/{unit.variant or '-'} {unit.tuned}/{unit.method} seed {unit.seed}"
    res = finetune(model, block_map, splits.train, splits.val, splits.test,
                   protocol=unit.protocol, seed=unit.seed, metric=spec.metric,
                   config=unit.finetune, progress=unit.progress, desc=desc)
    return [_record(unit, spec, splits, block_map, res, time.perf_counter() - t0,
                    transform_info=transform_info)]


def _data_mismatch(unit: RunUnit, spec: TaskSpec, splits: TargetSplits,
                   block_map: Mapping[str, Any], t0: float,
                   transform_info: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """A ``failed`` record when the data differ from the planned fingerprint (else ``None``)."""
    found = splits_fingerprint(splits, spec.reader_version)
    if found == unit.data_fingerprint:
        return None
    res = FinetuneResult("failed", (), None, 0, math.nan, math.nan, math.nan, [], False, 0, 0.0)
    return _record(unit, spec, splits, block_map, res, time.perf_counter() - t0, error=(
        f"the reader returned other data ({found}) than when the run was planned "
        f"({unit.data_fingerprint}); readers must be deterministic in the request"),
        transform_info=transform_info)


def group_units(units: Sequence[RunUnit], batch_targets: int) -> list[tuple[RunUnit, ...]]:
    """The units in groups that train as one batched model (:func:`run_group`), each at most
    ``batch_targets`` units, in the order of ``units``.

    Units share a group when they differ only in seed, variant and data: supervised, method
    ``fixed``, batched grid on, and a task without a model transform (its source model is then
    the same for every seed). Every other unit is a group of one.
    """
    groups: list[list[RunUnit]] = []
    open_groups: dict[tuple[Any, ...], list[RunUnit]] = {}
    for u in units:
        shareable = (batch_targets > 1 and u.online is None and u.method == "fixed"
                     and u.finetune.grid_batch and get_task(u.task).model_transform is None)
        if not shareable:
            groups.append([u])
            continue
        key = (u.task, u.settings, repr(u.finetune), repr(u.checkpoint),
               repr(u.backbone_kwargs), u.threads)
        group = open_groups.get(key)
        if group is None or len(group) >= batch_targets:
            group = open_groups[key] = []
            groups.append(group)
        group.append(u)
    return [tuple(g) for g in groups]


def run_group(group: Sequence[RunUnit]) -> list[dict[str, Any]]:
    """Run the units of a group (:func:`group_units`) as one batched model
    (:func:`realdata.train.finetune_many`) and return their records; a group of one is
    :func:`run_unit`. Each record's ``wall_s`` is its share (group wall time / units)."""
    if len(group) == 1:
        return run_unit(group[0])
    first = group[0]
    torch.set_num_threads(first.threads)
    if first.task_modules:
        load_task_modules(first.task_modules)
    t0 = time.perf_counter()
    spec = get_task(first.task)
    model = _build(spec, dict(first.backbone_kwargs))
    load_checkpoint(model, first.checkpoint.path)
    block_map = model.block_map()
    records: list[dict[str, Any]] = []
    runs: list[tuple[RunUnit, TargetSplits]] = []
    for u in group:
        splits = _read(spec, _request(u.task, u.protocol, u.data, u.variant, u.seed))
        check_head(spec, splits)
        mismatch = _data_mismatch(u, spec, splits, block_map, t0)
        if mismatch is not None:
            records.append(mismatch)
        else:
            runs.append((u, splits))
    if runs:
        desc = f"{first.task} {first.tuned}/{first.method} x{len(runs)} targets"
        results = finetune_many(model, block_map,
                                [(sp.train, sp.val, sp.test, u.seed) for u, sp in runs],
                                protocol=first.protocol, config=first.finetune,
                                metric=spec.metric, progress=first.progress, desc=desc)
        wall = (time.perf_counter() - t0) / len(group)
        records += [_record(u, spec, sp, block_map, res, wall)
                    for (u, sp), res in zip(runs, results)]
    return records


def _checkpoint(cfg: BenchmarkConfig, spec: TaskSpec, proto: Protocol, out: Path,
                progress: Progress) -> SourceCheckpoint:
    """The task's source model: ``--checkpoint`` (per task or ``*``), else the task's built-in
    source model (cached under ``OUT/checkpoints``); hashed by content."""
    given = cfg.checkpoints.get(spec.name, cfg.checkpoints.get("*"))
    if given:
        if not Path(given).is_file():
            raise ValueError(f"checkpoint file not found for task {spec.name}: {given}")
        path = Path(given).resolve()
        # fail fast (before any run) on a checkpoint for another architecture
        load_checkpoint(_build(spec, cfg.backbone_kwargs), path)
    elif spec.prepare_source is not None:
        if cfg.backbone_kwargs:
            raise ValueError(f"--backbone-kwargs needs --checkpoint for task {spec.name} (its "
                             "built-in source model has the task's own backbone)")
        flips = spec.source_flips if cfg.source_flips == "task" else cfg.source_flips == "on"
        req = LoadRequest(data_root=Path(cfg.data_root), image_size=proto.image_size,
                          extra={"preset": cfg.preset, "source_flips": flips,
                                 "progress": progress})
        path = Path(spec.prepare_source(req, out / "checkpoints")).resolve()
    else:
        raise ValueError(f"task {spec.name} ({spec.backbone}) needs --checkpoint PATH (or "
                         "TASK=PATH) with a pretrained source state_dict")
    return SourceCheckpoint(str(path), file_sha256(path, out / "checkpoints" / ".sha256.json"))


def plan_task(cfg: BenchmarkConfig, name: str, out: Path, *, progress: Progress = "off"
              ) -> TaskPlan:
    """Resolve task ``name`` once: protocol and variants, validated options, every target split
    read once (head size checked, data fingerprinted), then the source model.

    Raises:
        ValueError: unknown block/variant, a wrong data root, a reader that fails, a missing or
            mismatched checkpoint.
    """
    from realdata.surgery import resolve_tuned

    spec = get_task(name)
    proto, variants = _protocol(spec, cfg)
    blocks = _blocks(spec, cfg.backbone_kwargs)
    tuned = cfg.tuned or ("none", *blocks, "all")
    for t in tuned:
        resolve_tuned(t, blocks)  # validate early: unknown block -> ValueError
    options = tuple((t, "fixed") for t in tuned) + tuple(("all", m) for m in cfg.methods)
    if spec.needs_data and not Path(cfg.data_root).is_dir():
        raise ValueError(f"--data-root {cfg.data_root} is not a folder; task {name} expects:"
                         f"\n{spec.layout}")
    data = _location(cfg)
    fingerprints = {}
    vs: tuple[str | None, ...] = tuple(variants) or (None,)
    for variant in vs:
        for seed in cfg.seeds:
            splits = _read(spec, _request(name, proto, data, variant, seed))
            check_head(spec, splits)
            fingerprints[(variant, seed)] = splits_fingerprint(splits, spec.reader_version)
    ckpt = _checkpoint(cfg, spec, proto, out, progress)
    return TaskPlan(task=name, protocol=proto, variants=vs, blocks=blocks, options=options,
                    checkpoint=ckpt, fingerprints=fingerprints,
                    reader_version=spec.reader_version,
                    model_transform=_transform_id(spec))


def _transform_id(spec: TaskSpec) -> tuple[tuple[str, Any], ...]:
    """What the task's model transform contributes to the run id (its ``run_id`` mapping, e.g.
    the noise level); ``()`` without a transform."""
    if spec.model_transform is None:
        return ()
    run_id = getattr(spec.model_transform, "run_id", None)
    if run_id is None:
        raise ValueError(f"task {spec.name}: its model_transform needs a run_id mapping (what "
                         "changes its result, e.g. a noise level) to enter the run ids")
    return tuple(sorted(dict(run_id).items()))


_WHAT = {"checkpoint_sha256": "checkpoint content", "protocol": "protocol", "bn": "--bn",
         "package_version": "package version", "data_fingerprint": "data",
         "extra_id": "method/precision/backbone/model-transform options", "objective": "--objective",
         "online": "online settings"}


def check_folder(out: Path, units: Sequence[RunUnit], *, force: bool = False) -> None:
    """Refuse a folder holding records of the same tasks made with other settings.

    Other settings: another record schema, or for a task of this invocation another checkpoint
    content, protocol, BN mode, package version, reader version, or other data for a run of the
    same coordinates. ``force`` (``--force-new-settings``) accepts them: old records stay and the
    summaries use this invocation's settings only.

    Raises:
        ValueError: one line naming what differs, ``--out`` and ``--force-new-settings``.
    """
    if force or not (out / "runs.jsonl").exists():
        return
    current, other = load_records(out)
    tasks = {u.task for u in units}
    if any(r.get("task") in tasks for r in other):
        raise ValueError(f"{out} holds records of an older record schema for task(s) "
                         f"{sorted(tasks & {r.get('task') for r in other})}; use a new --out or "
                         "pass --force-new-settings to add new runs next to them")
    settings = {u.task: u for u in units}
    slots = {(u.task, u.variant, u.tuned, u.method, u.seed): u for u in units}
    differs: set[str] = set()
    for r in current:
        unit = settings.get(r["task"])
        if unit is None:
            continue
        same_slot = slots.get((r["task"], r["variant"], r["tuned"], r["method"], r["seed"]))
        if r["settings"] == unit.settings and (same_slot is None or same_slot.id == r["id"]):
            continue
        ref = same_slot or unit
        now = {**to_jsonable(ref.id_fields()), "package_version": package_version()}
        changed = [label for k, label in _WHAT.items()
                   if k in r and to_jsonable(r[k]) != now.get(k)]
        differs.update(changed or ["reader version"])
    if differs:
        raise ValueError(f"{out} already holds runs of {sorted(tasks)} made with other settings "
                         f"({', '.join(sorted(differs))} changed); use a new --out or pass "
                         "--force-new-settings to add new runs next to them (summaries then use "
                         "the new settings only)")


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


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, *, progress: bool = True,
                  force_new_settings: bool = False) -> dict[str, Any]:
    """Run (or resume) the grid into ``out``; write summary files; return the report.

    Everything is validated (device, ``out``, the folder lock, data, checkpoints, the stored
    records and their settings, the executor) before ``config.json`` is written; ``out`` stays
    locked until the end. The report's ``verdicts`` and ``edge_warning`` cover this invocation's
    targets only; ``OUT/verdicts.json`` covers every target in the folder.
    """
    check_device(cfg.device)
    out = check_out_dir(out, files=OUT_FILES)
    with FolderLock(out):
        return _run_locked(cfg, out, progress, force_new_settings)


def _run_locked(cfg: BenchmarkConfig, out: Path, progress: bool, force_new_settings: bool
                ) -> dict[str, Any]:
    t0 = time.perf_counter()
    inner: Progress = "bar" if progress else "lines"
    plans = [plan_task(cfg, name, out, progress=inner) for name in cfg.tasks]
    units = build_units(cfg, plans, progress=inner)
    store = RunStore(out)
    store.done_ids()  # an unreadable runs.jsonl fails here, before config.json is written
    check_folder(out, units, force=force_new_settings)
    executor = make_executor(cfg.executor, workers=cfg.workers, scheduler=cfg.scheduler)
    groups = group_units(units, cfg.batch_targets)
    stored = store.done_ids()
    skipped = sum(u.id in stored for u in units)
    try:
        write_json_atomic(out / "config.json", {
            "config": to_jsonable(cfg), "package_version": package_version(),
            "checkpoints": {p.task: to_jsonable(p.checkpoint) for p in plans},
            "protocols": {p.task: to_jsonable(p.protocol) for p in plans},
            "threads": _threads(cfg), "n_units": len(units), "n_groups": len(groups),
            "settings": {u.task: u.settings for u in units}})
        report = run_units(groups, run_group, store, executor,
                           unit_ids=lambda g: [u.id for u in g], progress=progress,
                           desc="realdata")
    finally:
        executor.close()
    # summarize every record in the folder (several tasks may share one OUT, one call each);
    # this invocation's tasks with this invocation's settings
    records, _ = load_records(out)
    settings = {u.task: u.settings for u in units}
    rows = summarize(records, settings)
    write_text_atomic(out / "summary.csv", summary_csv(rows))
    v = verdicts(records, settings)
    write_json_atomic(out / "verdicts.json", v)
    tv = task_verdicts(cfg.tasks, [r for r in records if r.get("settings") == settings.get(r["task"])])
    if tv:
        write_json_atomic(out / "task_verdicts.json", tv)
    wanted = {u.id for u in units}
    mine = [r for r in records if r["id"] in wanted]
    targets = {(u.task, u.variant or "") for u in units}
    return {"units": len(units), "run": len(units) - skipped, "skipped": skipped,
            "groups_run": report.units_run,
            "failed": sum(r["status"] != "ok" for r in mine),
            "wall_s": time.perf_counter() - t0,
            "verdicts": [x for x in v if (x["task"], x["shift"]) in targets],
            "edge_warning": edge_warning(mine), "task_verdicts": tv}


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
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per run, set in every executor (default: cores / "
                        "concurrent runs; recorded)")
    p.add_argument("--task-module", action="append", default=[], metavar="MODULE",
                   help="import MODULE (here and in every worker) to register your own tasks; "
                        "repeatable (see README, 'Your own dataset')")
    p.add_argument("--force-new-settings", action="store_true",
                   help="add runs to an --out that holds runs of other settings (default: "
                        "refuse); summaries use the new settings only")
    p.add_argument("--select-with-start", action="store_true",
                   help="the untuned network (epoch 0) is a model-selection candidate too "
                        "(default: the official protocol, tuned snapshots only)")
    p.add_argument("--min-steps", type=int, default=None, metavar="N",
                   help="at least N optimizer steps per lr, adding epochs on small target sets "
                        "(default 0: the protocol's epochs)")
    p.add_argument("--source-flips", choices=("task", "on", "off"), default="task",
                   help="horizontal flips in built-in source pretraining (default: as the task "
                        "declares; recorded with the checkpoint)")
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
    p.add_argument("--grid-batch", choices=("auto", "on", "off"), default="auto",
                   help="train each lr grid as one batched model (on) or one lr at a time, the "
                        "reference loop (off); auto: batched on a CUDA device, the loop on CPU, "
                        "where the batched grid measured slower")
    p.add_argument("--no-grid-batch", action="store_true", help="the same as --grid-batch off")
    p.add_argument("--batch-targets", type=int, default=1, metavar="N",
                   help="train up to N runs of one task and tuned option (seeds x variants) as "
                        "one batched model (method fixed; same numbers; 57 = the CIFAR-10-C "
                        "protocol's 19 corruptions x 3 seeds; default 1: each run alone)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars: one line per (lr, epoch) and source epoch instead")
    return p


def _config_from_args(a: argparse.Namespace) -> BenchmarkConfig:
    task_modules = tuple(a.task_module)
    load_task_modules(task_modules)  # before any task name is resolved
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
                 "severity": a.severity, "min_steps": a.min_steps,
                 "select_with_start": True if a.select_with_start else None}
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
        backbone_kwargs=backbone_kwargs, threads=a.threads, task_modules=task_modules,
        source_flips=a.source_flips,
        l1_strengths=tuple(a.l1_strengths) if a.l1_strengths else DEFAULT_L1_STRENGTHS,
        gradual_every=a.gradual_every, objective=a.objective, online=online,
        grid_batch=grid_batch_enabled(a.grid_batch, a.no_grid_batch, a.device),
        batch_targets=a.batch_targets)


def grid_batch_enabled(mode: str, off: bool, device: str) -> bool:
    """Whether the lr grid trains as one batched model: ``--grid-batch on|off|auto``
    (``--no-grid-batch`` = off); auto is on for a CUDA device and off on CPU, where the batched grid
    ran 0.6-1.0x the per-lr loop (2 cores; README, lr-grid section).

    >>> grid_batch_enabled("auto", False, "cuda:0"), grid_batch_enabled("auto", False, "cpu")
    (True, False)
    """
    if off or mode == "off":
        return False
    return mode == "on" or str(device).startswith("cuda")


def _verdict_line(v: Mapping[str, Any]) -> str:
    """One printed line per target: the verdict, the paired differences, the diagnostics."""
    def pct(x: float) -> str:
        return "nan" if x is None or math.isnan(x) else f"{100 * x:+.1f}"

    head = f"  {v['task']}/{v['shift'] or '-'} ({v['level']}): {v['verdict']}"
    if v["verdict"] == "not judged":
        head += f" ({v['reason']})"
    else:
        comps = ", ".join(f"{v['expected_block']} - {o} = {pct(c['diff'])} ± {100 * c['se']:.1f}"
                          for o, c in v["comparisons"].items())
        head += f" [{comps} points, paired over seeds]"
    if v["winner"] is not None:
        head += (f"; winner {v['winner']} {100 * v['best_acc']:.1f} (beats every other single "
                 f"block by > {v['criterion']}, paired)")
    elif v["best_block"] is not None:
        head += (f"; no significant winner ({v['winner_label']}; highest mean {v['best_block']} "
                 f"{100 * v['best_acc']:.1f})")
    if v["vs_all"]:
        vs = ", ".join(f"{b} {pct(c['diff'])} ± {100 * c['se']:.1f}" for b, c in v["vs_all"].items())
        head += f"; all {100 * v['all_acc']:.1f}, top set - all: {vs} ({v['beats_all']})"
    (e, ne), (la, nl) = v["lr_edge_runs"], v["epoch_last_runs"]
    return head + f"; lr at grid edge {e}/{ne} runs, best epoch last {la}/{nl}"


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
            report = run_benchmark(cfg, args.out, progress=not args.no_progress,
                                   force_new_settings=args.force_new_settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.train_n_grid:
        print(f"{size['units']} runs ({size['run']} new, {size['skipped']} resumed, "
              f"{size['failed']} failed) in {size['wall_s']:.1f} s -> {args.out}")
        for v in size["verdicts"]:
            gaps = " ".join(f"{n}:{100 * g['diff']:+.1f}" for n, g in v["gaps"].items())
            print(f"  {v['task']}/{v['shift'] or '-'}: block {v['best_block']} ({v['choice']}); gap to all "
                  f"per class size [{gaps}] pts; shrinks: {v['verdict']} ({v['reason']})")
        return 0
    print(f"{report['units']} runs ({report['run']} new, {report['skipped']} resumed, "
          f"{report['failed']} failed) in {report['wall_s']:.1f} s -> {args.out}")
    for v in report["verdicts"]:
        print(_verdict_line(v))
    if report["edge_warning"]:
        print(report["edge_warning"])
    for v in report["task_verdicts"]:
        accs = " ".join(f"{b}={x:.3f}" for b, x in v.get("accs", {}).items())
        print(f"  {v['task']}/{v.get('perturbed', '-')}: {v['verdict']} ({v['reason']}) [{accs}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
