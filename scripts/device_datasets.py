"""GPU check for the datasets issue: CIFAR-10-C quick grid on generated data, images/s per tuned block.

Run by ``scripts/device_datasets.sh`` (writes ``$OUT/device_datasets.json``). Steps, all offline:

1. write a CIFAR-10-shaped test batch (10,000 class-coloured 32x32 images) in the published pickle
   layout, and generate ``CIFAR-10-C`` for a few corruptions with ``realdata.make_corrupted``
   (timed: images/s of the corruption generator on this machine's CPU);
2. for each corruption, read the target splits with the ``cifar10c`` reader (quick protocol sizes:
   ``train_n`` images) and fine-tune a full-size ResNet-26 on ``--device`` for ``block1``, ``head``
   and ``all`` (timed: training images/s = epochs * lrs * train_n / train_seconds).

``--smoke`` shrinks everything so the script itself can be tested on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch


def write_fake_cifar(root: Path, n: int, seed: int = 0) -> None:
    """``root/cifar-10-batches-py/test_batch`` with ``n`` class-coloured images."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    hue = np.stack([np.cos(2 * np.pi * labels / 10), np.sin(2 * np.pi * labels / 10),
                    np.cos(4 * np.pi * labels / 10)], axis=1)  # fmt: skip
    imgs = np.clip(128 + 80 * hue[:, :, None] + rng.normal(0, 40, (n, 3, 1024)), 0, 255)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": imgs.reshape(n, 3072).astype(np.uint8),
                     b"labels": labels.tolist()}, f)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from realdata.data.base import LoadRequest
    from realdata.make_corrupted import make_corrupted
    from realdata.models import build_backbone
    from realdata.tasks import get_task
    from realdata.train import FinetuneConfig, finetune

    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--corruptions", default="gaussian_noise,defocus_blur,contrast")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CPU test of this script)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "data"
    n_images = 500 if args.smoke else 10_000
    write_fake_cifar(work, n_images)
    names = args.corruptions.split(",")
    t0 = time.perf_counter()
    make_corrupted(work, corruptions=names, seed=0, chunk=1000, progress=False)
    gen_s = time.perf_counter() - t0
    spec = get_task("cifar10c")
    proto, _ = spec.preset(quick=True)
    if args.smoke:
        proto = proto.override(train_n=50, test_per_class=5, epochs=1, lrs=(1e-2,))
    result: dict = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "generator_images_per_s": len(names) * 5 * n_images / gen_s,
        "generator_seconds": gen_s,
        "protocol": {
            "train_n": proto.train_n,
            "epochs": proto.epochs,
            "lrs": list(proto.lrs),
            "batch_size": proto.batch_size,
        },
        "runs": [],
    }
    for name in names:
        req = LoadRequest(data_root=work, variant=name, severity=5, train_n=proto.train_n,
                          val_per_class=proto.val_per_class,
                          test_per_class=proto.test_per_class, seed=0)  # fmt: skip
        splits = spec.load(req)
        for tuned in ("block1", "head", "all"):
            torch.manual_seed(0)
            model = build_backbone("resnet26", 10, **({"depth": 8} if args.smoke else {}))
            res = finetune(model, model.block_map(), splits.train, splits.val, splits.test,
                           protocol=proto, config=FinetuneConfig(tuned=tuned, device=args.device),
                           seed=0)  # fmt: skip
            seen = proto.train_n * proto.epochs * len(proto.lrs)
            row = {"corruption": name, "tuned": tuned, "status": res.status,
                   "train_seconds": res.train_seconds, "images_per_s": seen / res.train_seconds,
                   "cached_prefix": res.cached, "test_accuracy": res.test_accuracy,
                   "source": splits.info.get("source")}  # fmt: skip
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
    (args.out / "device_datasets.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
