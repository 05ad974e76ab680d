"""realdata: surgical fine-tuning of CNN backbones on shifted targets (PyTorch).

Entry point: ``python -m realdata.benchmark`` (``--quick`` runs the built-in synthetic task on a
CPU). Public modules (importing ``realdata`` itself imports nothing, not even torch):

* :mod:`realdata.tasks`: the task registry (``TaskSpec``, ``Protocol``, ``get_task``,
  ``all_tasks``, ``--task-module``); :mod:`realdata.task_table`: every built-in task.
* :mod:`realdata.data`: the dataset interface (``LoadRequest`` -> ``TargetSplits``) and the pure
  readers of the published layouts (CIFAR-10-C, ImageNet-C, BREEDS, WILDS, FMoW), the synthetic
  task, corruptions.
* :mod:`realdata.models`: backbones whose ``state_dict`` keys match the public checkpoints, their
  block maps, checkpoint loading.
* :mod:`realdata.surgery`: which blocks train (``configure_surgery``; Auto-RGN, Auto-SNR).
* :mod:`realdata.train`: the fine-tuning protocol (``FinetuneConfig``, ``finetune``, ``evaluate``);
  :mod:`realdata.feeding` (batches, prefix caching), :mod:`realdata.metrics`,
  :mod:`realdata.pretrain` (source pretraining).
* :mod:`realdata.baselines`: the single-run baselines (L1-regularize, gradual unfreezing).
* :mod:`realdata.online`: unsupervised online adaptation (MEMO, TENT); :mod:`realdata.augmix`: its
  AugMix views in torch.
* :mod:`realdata.benchmark`: config, run units, the CLI; :mod:`realdata.records`: the run record;
  :mod:`realdata.fingerprint`: data and checkpoint fingerprints; :mod:`realdata.summary`: summary and
  verdicts; :mod:`realdata.ranks`: average rank of the single-run methods
  (``python -m realdata.ranks``); :mod:`realdata.bench`: speed measurements;
  :mod:`realdata.make_corrupted`: builds corrupted copies of a data set.

Runs are stored and executed through :mod:`sims.infra` (science-free; no jax).
"""

__all__ = ["augmix", "baselines", "bench", "benchmark", "data", "feeding", "fingerprint",
           "make_corrupted", "metrics", "models", "online", "pretrain", "ranks", "records",
           "summary", "surgery", "task_table", "tasks", "train"]
