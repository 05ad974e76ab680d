"""GPU check for the datasets issue: CIFAR-10-C quick grid on generated data, images/s per tuned block.

Run by ``scripts/device_datasets.sh`` (writes ``$OUT/device_datasets.json``). Steps, all offline:

1. write a CIFAR-10-shaped test batch (10,000 class-coloured 32x32 images) in the published pickle
   layout, and generate ``CIFAR-10-C`` for a few corruptions with ``realdata.make_corrupted``
   (timed: images/s of the corruption generator on this machine's CPU);
2. run the ``cifar10c`` quick grid through ``python -m realdata.benchmark`` (tuned ``block1``,
   ``head``, ``all``; a seeded random full-size ResNet-26 as the source checkpoint) on
   ``--device`` and report training images/s = n_train * epochs * lrs / train_seconds per run;
3. rerun the first corruption with ``--no-bf16 --no-channels-last --no-pin-memory`` (fp32, the
   accelerations off) and report its images/s next to the default (accelerated on CUDA) ones.

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
    def grid_run(folder: str, variants: list[str], extra: list[str]) -> tuple[int, float, list]:
        cli = ["--task", "cifar10c", "--quick", "--data-root", str(work), "--checkpoint",
               str(ckpt), "--variants", *variants, "--tuned", "block1", "head", "all",
               "--methods", "--seed", "0", "--device", args.device, "--out",
               str(args.out / folder), "--no-progress", *extra]  # fmt: skip
        if args.smoke:
            cli += ["--train-n", "50", "--epochs", "1", "--lrs", "1e-2"]
        t1 = time.perf_counter()
        rc = benchmark.main(cli)
        seconds = time.perf_counter() - t1
        if rc != 0:
            return rc, seconds, []
        recs = [json.loads(ln) for ln in (args.out / folder / "runs.jsonl").read_text().splitlines()
                if ln]  # fmt: skip
        runs = []
        for r in recs:
            p_ = r["protocol"]
            seen = r["n_train"] * r["epochs"] * len(p_["lrs"])
            runs.append({"corruption": r["variant"], "tuned": r["tuned"], "status": r["status"],
                         "train_seconds": r["train_seconds"],
                         "images_per_s": seen / r["train_seconds"], "cached_prefix": r["cached"],
                         "test_accuracy": r["test_accuracy"], "source": r["data_info"]["source"],
                         "precision": r["extra_id"].get("precision", "fp32")})  # fmt: skip
            print(json.dumps(runs[-1]), flush=True)
        return 0, seconds, runs

    def mean_by_tuned(runs: list) -> dict[str, float]:
        by = {t: [x["images_per_s"] for x in runs if x["tuned"] == t] for t in ("block1", "head", "all")}
        return {t: sum(v) / len(v) for t, v in by.items() if v}

    rc, grid_s, runs = grid_run("grid", names, [])
    if rc != 0:
        return rc
    proto, _ = get_task("cifar10c").preset(quick=True)
    result = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
        "generator_images_per_s": len(names) * 5 * n_images / gen_s,
        "generator_seconds": gen_s,
        "grid_seconds": grid_s,
        "quick_protocol": {"train_n": proto.train_n, "epochs": proto.epochs, "lrs": list(proto.lrs)},
        "mean_images_per_s": mean_by_tuned(runs),
        "note": "images/s = n_train * epochs * lrs / train_seconds (includes per-epoch validation "
        "and the frozen-prefix cache)",
        "runs": runs,
    }
    out_json = args.out / "device_datasets.json"
    out_json.write_text(json.dumps(result, indent=2))  # kept if the fp32 pass runs out of time
    off = ["--no-bf16", "--no-channels-last", "--no-pin-memory"]
    rc, fp32_s, fp32_runs = grid_run("grid_fp32", names[:1], off)
    if rc != 0:
        return rc
    result["accelerations_off"] = {
        "corruption": names[0], "seconds": fp32_s, "mean_images_per_s": mean_by_tuned(fp32_runs),
        "accelerated_same_corruption": mean_by_tuned([x for x in runs
                                                      if x["corruption"] == names[0]]),
    }
    result["runs_accelerations_off"] = fp32_runs
    out_json.write_text(json.dumps(result, indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
