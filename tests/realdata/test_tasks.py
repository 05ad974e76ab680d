"""The task registry."""

import pytest

from realdata.data.base import LoadRequest
from realdata.tasks import Protocol, TaskSpec, get_task, register_task


def _load(req: LoadRequest):
    raise AssertionError("not called")


def test_unknown_task_lists_known():
    register_task(TaskSpec(name="dummy_task", shift_level="input", backbone="resnet26",
                           num_classes=3, load=_load))
    with pytest.raises(ValueError, match=r"unknown task 'nope'; known tasks: .*dummy_task"):
        get_task("nope")
    assert get_task("dummy_task").num_classes == 3


def test_spec_validation():
    with pytest.raises(ValueError, match="shift_level"):
        TaskSpec(name="x", shift_level="pixel", backbone="b", num_classes=2, load=_load)
    with pytest.raises(ValueError, match="lrs"):
        Protocol(lrs=())
    with pytest.raises(ValueError, match="quick_variants"):
        TaskSpec(name="x", shift_level="input", backbone="b", num_classes=2, load=_load,
                 variants=("a",), quick_variants=("b",))


def test_preset_and_override():
    spec = TaskSpec(name="y", shift_level="input", backbone="b", num_classes=2, load=_load,
                    variants=("a", "b"), quick_variants=("a",),
                    quick_protocol=Protocol(epochs=2))
    assert spec.preset(True) == (Protocol(epochs=2), ("a",))
    assert spec.preset(False) == (Protocol(), ("a", "b"))
    assert Protocol().override(epochs=3, lrs=None).epochs == 3
