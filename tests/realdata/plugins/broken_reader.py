"""A task whose reader raises (bad input: the error must surface as one line)."""

from __future__ import annotations

from realdata.data.base import LoadRequest, TargetSplits
from realdata.tasks import Protocol, TaskSpec


def load_broken(request: LoadRequest) -> TargetSplits:
    raise RuntimeError("cannot decode shard 3")


TASKS = [TaskSpec(name="brokenreader", shift_level="input", backbone="resnet26", num_classes=4,
                  load=load_broken, backbone_kwargs={"depth": 8}, needs_data=False,
                  protocol=Protocol(epochs=1, lrs=(1e-2,), train_n=8))]
