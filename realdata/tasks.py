"""Task registry: what each benchmark task reads, which backbone it tunes, and its protocol.

A task is a :class:`TaskSpec`. The built-in tasks live in one explicit table,
:mod:`realdata.task_table`, imported on first use (an error inside a reader module surfaces as that
error). A user's tasks come from

* ``--task-module my_pkg.tasks`` (:func:`load_task_modules`): the module is imported in the parent
  and in every executor worker before tasks are resolved; it calls :func:`register_task` at import
  time or defines ``TASKS``, an iterable of :class:`TaskSpec`;
* the entry-point group ``surgical_finetuning.tasks`` of installed packages: each entry point names
  such a module (or a callable returning :class:`TaskSpec` objects)::

      [project.entry-points."surgical_finetuning.tasks"]
      digits = "my_pkg.tasks"

The benchmark only ever calls ``spec.load(LoadRequest(...))`` (see :mod:`realdata.data.base`)::

    from realdata.tasks import Protocol, TaskSpec, register_task

    register_task(TaskSpec(
        name="digits", shift_level="feature", backbone="resnet26", num_classes=10,
        load=load_digits, protocol=Protocol(epochs=15), needs_data=False,
    ))
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from realdata.data.base import LoadRequest, TargetSplits

__all__ = [
    "DEFAULT_LRS",
    "ENTRY_POINT_GROUP",
    "Protocol",
    "TaskSpec",
    "all_tasks",
    "get_task",
    "load_task_modules",
    "register_task",
]

ShiftLevel = Literal["input", "feature", "output", "natural"]
Metric = Literal["accuracy", "worst_group"]

#: The official learning-rate grid (Adam).
DEFAULT_LRS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)

#: Entry-point group of installed packages that provide tasks.
ENTRY_POINT_GROUP = "surgical_finetuning.tasks"


@dataclass(frozen=True)
class Protocol:
    """Fine-tuning protocol of a task (the official code's, every knob overridable).

    Attributes:
        epochs: passes over the target training set (CIFAR 15, ImageNet 10).
        lrs: Adam learning-rate grid; model selection is over (lr, epoch).
        weight_decay: Adam weight decay (L2 added to the gradient, as ``torch.optim.Adam``).
        batch_size: minibatch size.
        train_n: labelled target training examples in total.
        val_per_class: validation examples per class.
        test_per_class: test examples per class (``None``: the reader's full test split).
        severity: corruption severity for corruption tasks.
        image_size: image side in pixels.
        eval_batch_size: batch size for evaluation and for computing cached features.
        select_with_start: the untuned network (epoch 0) is a selection candidate too (default
            ``False``: the official protocol selects among tuned snapshots only).
        min_steps: run at least this many optimizer steps per learning rate, adding epochs when
            ``epochs`` passes over a small target set give fewer (default 0: the official
            protocol's epochs, whatever the set size).
    """

    epochs: int = 15
    lrs: tuple[float, ...] = DEFAULT_LRS
    weight_decay: float = 1e-4
    batch_size: int = 64
    train_n: int = 1000
    val_per_class: int = 10
    test_per_class: int | None = 90
    severity: int = 5
    image_size: int = 32
    eval_batch_size: int = 256
    select_with_start: bool = False
    min_steps: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {self.epochs}")
        if not self.lrs or any(not (lr > 0) for lr in self.lrs):
            raise ValueError(f"lrs must be a non-empty tuple of positive floats; got {self.lrs}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.min_steps < 0:
            raise ValueError(f"min_steps must be >= 0; got {self.min_steps}")
        object.__setattr__(self, "lrs", tuple(float(x) for x in self.lrs))

    def epochs_for(self, n_train: int) -> int:
        """Epochs each lr runs on ``n_train`` examples: ``epochs``, or more when ``min_steps``
        needs them (``ceil(min_steps / steps per epoch)``)."""
        steps_per_epoch = max(1, math.ceil(n_train / self.batch_size))
        return max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))

    def override(self, **changes: Any) -> Protocol:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task.

    Attributes:
        name: registry key, e.g. ``"cifar10c"`` (the ``--task`` value).
        shift_level: ``"input" | "feature" | "output" | "natural"`` (the paper's taxonomy).
        backbone: backbone name in :mod:`realdata.models` (e.g. ``"resnet26"``, ``"resnet50"``).
        num_classes: number of classes of the target task.
        load: the reader, ``LoadRequest -> TargetSplits``.
        variants: target variants (corruption names, shift names); ``()`` for a single target.
        protocol: the full (paper) protocol.
        quick_protocol: the ``--quick`` preset (default: ``protocol``).
        quick_variants: variants run by ``--quick`` (default: all of ``variants``).
        metric: ``"accuracy"`` or ``"worst_group"`` (minimum accuracy over groups).
        layout: expected folder tree under ``--data-root``, printed when data are missing.
        backbone_kwargs: keyword arguments for the backbone constructor (e.g. width knobs).
        needs_data: ``False`` for built-in tasks that generate their data (no ``--data-root``).
        description: one line shown by ``--help``/errors.
        variant_levels: shift level per variant when variants differ (the synthetic task);
            variants not listed have ``shift_level``.
        prepare_source: for built-in tasks, ``(request, folder) -> checkpoint path``: builds the
            source model once (cached in ``folder``) when no ``--checkpoint`` is given. Tasks
            without it require ``--checkpoint``. ``request.extra`` carries ``preset``,
            ``source_flips`` and ``progress``.
        source_flips: whether random horizontal flips suit this task's source pretraining
            (``False`` for digits, text, orientation-coded images); the default of
            ``--source-flips``.
        reader_version: bump when the reader's output changes; it enters every run id, so a
            changed reader never resumes old records.
        model_transform: ``(model, request) -> info``: changes the loaded source model before
            fine-tuning (noise in one block); ``info`` (JSON-able) is stored in the record.
        task_verdicts: ``records -> list of verdict dicts``: the task's own verdicts, written to
            ``OUT/task_verdicts.json`` (each dict has ``task``, ``verdict`` and ``reason``).
    """

    name: str
    shift_level: ShiftLevel
    backbone: str
    num_classes: int
    load: Callable[[LoadRequest], TargetSplits]
    variants: tuple[str, ...] = ()
    protocol: Protocol = field(default_factory=Protocol)
    quick_protocol: Protocol | None = None
    quick_variants: tuple[str, ...] | None = None
    metric: Metric = "accuracy"
    layout: str = ""
    backbone_kwargs: Mapping[str, Any] = field(default_factory=dict)
    needs_data: bool = True
    description: str = ""
    variant_levels: Mapping[str, ShiftLevel] = field(default_factory=dict)
    prepare_source: Callable[[LoadRequest, Path], Path] | None = None
    source_flips: bool = True
    reader_version: str = "1"
    model_transform: Callable[[Any, LoadRequest], Mapping[str, Any]] | None = None
    task_verdicts: Callable[[Any], list[dict[str, Any]]] | None = None

    def level_of(self, variant: str | None) -> ShiftLevel:
        """The shift level of ``variant`` (``shift_level`` unless ``variant_levels`` says)."""
        return self.variant_levels.get(variant or "", self.shift_level)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"task name must be a non-empty identifier; got {self.name!r}")
        if self.shift_level not in ("input", "feature", "output", "natural"):
            raise ValueError(
                f"shift_level must be input|feature|output|natural; got {self.shift_level!r}"
            )
        if self.metric not in ("accuracy", "worst_group"):
            raise ValueError(f"metric must be accuracy|worst_group; got {self.metric!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2; got {self.num_classes}")
        if not callable(self.load):
            raise ValueError("load must be callable: LoadRequest -> TargetSplits")
        if self.quick_variants is not None:
            unknown = set(self.quick_variants) - set(self.variants)
            if unknown:
                raise ValueError(f"quick_variants {sorted(unknown)} are not in variants")

    def preset(self, quick: bool) -> tuple[Protocol, tuple[str, ...]]:
        """``(protocol, variants)`` for ``--quick`` (``quick=True``) or ``--full``."""
        if quick:
            proto = self.quick_protocol or self.protocol
            variants = self.variants if self.quick_variants is None else self.quick_variants
            return proto, variants
        return self.protocol, self.variants


_REGISTRY: dict[str, TaskSpec] = {}
_loaded = False
_MODULE_TASKS: dict[str, tuple[str, ...]] = {}


def register_task(spec: TaskSpec, *, replace_existing: bool = False) -> TaskSpec:
    """Add ``spec`` to the registry and return it.

    Raises:
        ValueError: if a different task with the same name is already registered (re-registering
            the identical spec, as happens on module reload, is allowed).
    """
    if not isinstance(spec, TaskSpec):
        raise ValueError(f"register_task needs a TaskSpec; got {type(spec).__name__}")
    old = _REGISTRY.get(spec.name)
    if old is not None and not replace_existing and old != spec:
        same_origin = (
            getattr(old.load, "__module__", None) == getattr(spec.load, "__module__", None)
            and getattr(old.load, "__qualname__", None) == getattr(spec.load, "__qualname__", None)
        )
        if not same_origin:
            raise ValueError(f"task {spec.name!r} is already registered by another module")
    _REGISTRY[spec.name] = spec
    return spec


def _load_builtin() -> None:
    """Register the built-in table and the installed entry points (once)."""
    global _loaded
    if _loaded:
        return
    from realdata.task_table import BUILTIN_TASKS  # errors inside a reader propagate as they are

    for spec in BUILTIN_TASKS:
        register_task(spec)
    _loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _register_from(ep.value, ep.load, f"entry point {ep.name} ({ep.value})")


def _register_from(name: str, load: Callable[[], Any], what: str) -> tuple[str, ...]:
    """Import/call ``load`` and register what it provides; the task names it added."""
    before = dict(_REGISTRY)
    try:
        obj = load()
    except Exception as exc:
        raise ValueError(f"{what} failed to import: {type(exc).__name__}: {exc}") from exc
    provided = getattr(obj, "TASKS", None) if not callable(obj) else obj()
    for spec in provided or ():
        register_task(spec)
    return tuple(k for k, spec in _REGISTRY.items() if before.get(k) is not spec
                 or getattr(spec.load, "__module__", None) == name)


def load_task_modules(modules: tuple[str, ...] | list[str]) -> dict[str, tuple[str, ...]]:
    """Import each task module (``--task-module``) once; module -> the tasks it registered.

    A module registers tasks at import time (:func:`register_task`) or defines ``TASKS``.

    Raises:
        ValueError: the module cannot be imported (the message carries the original error, e.g.
            a reader's own import failing) or it registers no task.
    """
    _load_builtin()
    for mod in modules:
        if mod in _MODULE_TASKS:
            continue
        added = _register_from(mod, lambda m=mod: importlib.import_module(m),
                               f"--task-module {mod}")
        if not added:
            raise ValueError(f"--task-module {mod} registered no task: call "
                             "realdata.tasks.register_task(TaskSpec(...)) when it is imported, "
                             "or define TASKS = [TaskSpec(...)]")
        _MODULE_TASKS[mod] = added
    return {m: _MODULE_TASKS[m] for m in modules}


def all_tasks() -> dict[str, TaskSpec]:
    """All registered tasks, by name (sorted)."""
    _load_builtin()
    return {k: _REGISTRY[k] for k in sorted(_REGISTRY)}


def get_task(name: str) -> TaskSpec:
    """The task called ``name``.

    Raises:
        ValueError: unknown name; the message lists the known tasks.
    """
    tasks = all_tasks()
    if name not in tasks:
        known = ", ".join(tasks) or "(none)"
        raise ValueError(f"unknown task {name!r}; known tasks: {known} (a task of your own: "
                         "--task-module MODULE)")
    return tasks[name]
