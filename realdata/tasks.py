"""Task registry: what each benchmark task reads, which backbone it tunes, and its protocol.

A task is a :class:`TaskSpec`; dataset modules register theirs with :func:`register_task` at import
time and the benchmark looks them up with :func:`get_task`. The benchmark only ever calls
``spec.load(LoadRequest(...))`` (see :mod:`realdata.data.base`), so a new dataset plugs in by
registration only::

    from realdata.tasks import Protocol, TaskSpec, register_task

    register_task(TaskSpec(
        name="cifar10c", shift_level="input", backbone="resnet26", num_classes=10,
        load=load_cifar10c, variants=CORRUPTIONS, protocol=Protocol(epochs=15),
        layout="CIFAR-10-C/<corruption>.npy ...",
    ))

Modules that register tasks are listed in :data:`TASK_MODULES`; :func:`all_tasks` and
:func:`get_task` import them on first use (a module that is absent or fails to import is skipped
and reported by :func:`import_errors`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from realdata.data.base import LoadRequest, TargetSplits

__all__ = [
    "DEFAULT_LRS",
    "TASK_MODULES",
    "Protocol",
    "TaskSpec",
    "all_tasks",
    "get_task",
    "import_errors",
    "register_task",
]

ShiftLevel = Literal["input", "feature", "output", "natural"]
Metric = Literal["accuracy", "worst_group"]

#: The official learning-rate grid (Adam).
DEFAULT_LRS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)

#: Modules imported (once) to populate the registry; each calls :func:`register_task`.
TASK_MODULES: tuple[str, ...] = (
    "realdata.data.synthetic",
    "realdata.data.synthetic_vit",
    "realdata.data.cifar",
    "realdata.data.imagenet_c",
    "realdata.data.breeds",
    "realdata.data.wilds",
    "realdata.data.fmow",
    "realdata.experiments.noise_in_block",
)


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

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1; got {self.epochs}")
        if not self.lrs or any(not (lr > 0) for lr in self.lrs):
            raise ValueError(f"lrs must be a non-empty tuple of positive floats; got {self.lrs}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {self.weight_decay}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        object.__setattr__(self, "lrs", tuple(float(x) for x in self.lrs))

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
            without it require ``--checkpoint``.
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
_IMPORT_ERRORS: dict[str, str] = {}
_loaded = False


def register_task(spec: TaskSpec, *, replace_existing: bool = False) -> TaskSpec:
    """Add ``spec`` to the registry and return it.

    Raises:
        ValueError: if a different task with the same name is already registered (re-registering
            the identical spec, as happens on module reload, is allowed).
    """
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


def _load_task_modules() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in TASK_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name == mod:  # the module itself is absent (not yet written): skip quietly
                continue
            _IMPORT_ERRORS[mod] = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a broken reader must not take the other tasks down
            _IMPORT_ERRORS[mod] = f"{type(exc).__name__}: {exc}"


def all_tasks() -> dict[str, TaskSpec]:
    """All registered tasks, by name (sorted)."""
    _load_task_modules()
    return {k: _REGISTRY[k] for k in sorted(_REGISTRY)}


def get_task(name: str) -> TaskSpec:
    """The task called ``name``.

    Raises:
        ValueError: unknown name; the message lists the known tasks.
    """
    tasks = all_tasks()
    if name not in tasks:
        known = ", ".join(tasks) or "(none)"
        hint = "".join(f"\n  {m} failed to import: {e}" for m, e in _IMPORT_ERRORS.items())
        raise ValueError(f"unknown task {name!r}; known tasks: {known}{hint}")
    return tasks[name]


def import_errors() -> dict[str, str]:
    """Task modules that failed to import, with the error (module -> message)."""
    _load_task_modules()
    return dict(_IMPORT_ERRORS)
