"""GPU check for the datasets issue: CIFAR-10-C quick grid on generated data, images/s per tuned block.

Run by ``scripts/device_datasets.sh`` (writes ``$OUT/device_datasets.json``). Steps, all offline:

1. write a CIFAR-10-shaped test batch (10,000 class-coloured 32x32 images) in the published pickle
   layout, and generate ``CIFAR-10-C`` for a few corruptions with ``realdata.make_corrupted``
   (timed: images/s of the corruption generator on this machine's CPU);
2. run the ``cifar10c`` quick grid through ``python -m realdata.benchmark`` (tuned ``block1``,
   ``head``, ``all``; a seeded random full-size ResNet-26 as the source checkpoint) on
   ``--device`` and report training images/s = n_train * epochs * lrs / train_seconds per run.

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
    from realdata import benchmark
    from realdata.make_corrupted import make_corrupted
    from realdata.models import build_backbone
    from realdata.tasks import get_task

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
    # no pretrained source model on the device machine: a seeded random ResNet-26 stands in
    # (throughput does not depend on the weights)
    torch.manual_seed(0)
    ckpt = args.out / "resnet26_random.pt"
    torch.save(build_backbone("resnet26", 10).state_dict(), ckpt)
    grid = args.out / "grid"
    cli = ["--task", "cifar10c", "--quick", "--data-root", str(work), "--checkpoint", str(ckpt),
           "--variants", *names, "--tuned", "block1", "head", "all", "--methods", "--seed", "0",
           "--device", args.device, "--out", str(grid), "--no-progress"]  # fmt: skip
    if args.smoke:
        cli += ["--train-n", "50", "--epochs", "1", "--lrs", "1e-2"]
    t1 = time.perf_counter()
    rc = benchmark.main(cli)
    grid_s = time.perf_counter() - t1
    if rc != 0:
        return rc
    proto, _ = get_task("cifar10c").preset(quick=True)
    recs = [json.loads(ln) for ln in (grid / "runs.jsonl").read_text().splitlines() if ln]
    runs = []
    for r in recs:
        p_ = r["protocol"]
        seen = r["n_train"] * p_["epochs"] * len(p_["lrs"])
        runs.append({"corruption": r["variant"], "tuned": r["tuned"], "status": r["status"],
                     "train_seconds": r["train_seconds"], "images_per_s": seen / r["train_seconds"],
                     "cached_prefix": r["cached"], "test_accuracy": r["test_accuracy"],
                     "source": r["data_info"]["source"]})  # fmt: skip
        print(json.dumps(runs[-1]), flush=True)
    by_tuned = {t: [x["images_per_s"] for x in runs if x["tuned"] == t] for t in ("block1", "head", "all")}
    result = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "generator_images_per_s": len(names) * 5 * n_images / gen_s,
        "generator_seconds": gen_s,
        "grid_seconds": grid_s,
        "quick_protocol": {"train_n": proto.train_n, "epochs": proto.epochs, "lrs": list(proto.lrs)},
        "mean_images_per_s": {t: sum(v) / len(v) for t, v in by_tuned.items() if v},
        "note": "images/s = n_train * epochs * lrs / train_seconds (includes per-epoch validation "
        "and the frozen-prefix cache)",
        "runs": runs,
    }
    (args.out / "device_datasets.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
