"""Every registered real-data task, end to end through the engine's API on its fixture:
reader -> tiny backbone -> surgical fine-tuning -> metric."""

from __future__ import annotations

import math

import pytest

from realdata.data.base import LoadRequest
from realdata.models import build_backbone
from realdata.tasks import get_task
from realdata.train import FinetuneConfig, finetune
from tests.realdata.data.fixtures import FIXTURE_PROTOCOL, TINY_BACKBONE, build_task_fixture

TASKS = ["cifar10c", "cifarflip", "imagenetc", "living17", "entity30", "waterbirds", "celeba",
         "camelyon17"]  # fmt: skip


@pytest.mark.parametrize("task", TASKS)
def test_task_runs_end_to_end_on_fixture(task, tmp_path):
    spec = get_task(task)
    fx = build_task_fixture(task, tmp_path)
    knobs = FIXTURE_PROTOCOL[task]
    req = LoadRequest(data_root=fx["data_root"], variant=fx["variant"], severity=5, seed=0,
                      extra=fx["extra"], **knobs)  # fmt: skip
    splits = spec.load(req)
    assert splits.num_classes <= spec.num_classes
    if spec.metric == "worst_group":
        assert splits.num_groups == 4
    model = build_backbone(spec.backbone, spec.num_classes, **TINY_BACKBONE[spec.backbone])
    protocol = spec.protocol.override(epochs=1, lrs=(1e-2,), batch_size=8, eval_batch_size=16,
                                      image_size=knobs["image_size"])  # fmt: skip
    for tuned in ("head", model.block_names[0]):
        res = finetune(model, model.block_map(), splits.train, splits.val, splits.test,
                       protocol=protocol, config=FinetuneConfig(tuned=tuned), seed=0,
                       metric=spec.metric)  # fmt: skip
        assert res.status == "ok", res.error
        assert 0.0 <= res.test_metric <= 1.0 and not math.isnan(res.val_metric)
        assert res.n_trainable > 0
