"""Speed measurements: frozen-prefix caching (CPU) and tuning throughput (GPU script).

``python -m realdata.bench cache`` times :func:`realdata.train.finetune` tuning the head of a
full-size ResNet-26 on random 32x32 images with and without the prefix cache, in one process,
and prints the per-epoch times and their ratio (the cached time includes computing the prefix
once, amortized over the epochs and learning rates of the run).

``python -m realdata.bench throughput --device cuda`` measures training images/s when tuning
``block1``, ``head`` and ``all`` of a ResNet-26, with and without bf16 autocast + channels_last
(``scripts/device_realdata.sh`` runs it on a GPU and writes JSON under ``$OUT``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from realdata.data.base import TensorImages
from realdata.models import build_backbone
from realdata.surgery import configure_surgery
from realdata.tasks import Protocol
from realdata.train import FinetuneConfig, finetune

__all__ = ["cache_speedup", "main", "throughput"]


def _random_splits(n: int, k: int = 10, seed: int = 0) -> tuple[TensorImages, ...]:
    g = torch.Generator().manual_seed(seed)
    make = lambda m: TensorImages(torch.rand(m, 3, 32, 32, generator=g),  # noqa: E731
                                  torch.randint(0, k, (m,), generator=g))
    return make(n), make(max(k, n // 5)), make(max(k, n // 5))


def cache_speedup(n: int = 1000, epochs: int = 3, lrs: Sequence[float] = (1e-2, 1e-3),
                  depth: int = 26, seed: int = 0) -> dict[str, Any]:
    """Seconds per epoch of head tuning, cached vs uncached (same model, data and seed).

    Returns:
        ``{"uncached_s_per_epoch", "cached_s_per_epoch", "speedup", "same_result", ...}``; an
        "epoch" here is one pass over ``n`` training images plus the validation pass, for one lr.
    """
    splits = _random_splits(n, seed=seed)
    proto = Protocol(epochs=epochs, lrs=tuple(lrs))
    out: dict[str, Any] = {"n": n, "epochs": epochs, "lrs": list(lrs), "depth": depth,
                           "threads": torch.get_num_threads()}
    results = {}
    for cache in (False, True):
        torch.manual_seed(seed)
        model = build_backbone("resnet26", 10, depth=depth)
        t0 = time.perf_counter()
        res = finetune(model, model.block_map(), *splits, protocol=proto, seed=seed,
                       config=FinetuneConfig(tuned="head", cache=cache))
        dt = time.perf_counter() - t0
        results[cache] = res
        key = "cached" if cache else "uncached"
        out[f"{key}_s_per_epoch"] = dt / (epochs * len(lrs))
        out[f"{key}_total_s"] = dt
        if cache and not res.cached:
            raise RuntimeError("the cached run did not use the cache")
    out["speedup"] = out["uncached_s_per_epoch"] / out["cached_s_per_epoch"]
    out["same_result"] = (results[True].test_metric == results[False].test_metric
                          and results[True].best_lr == results[False].best_lr)
    return out


def throughput(device: str = "cuda", batch_size: int = 128, steps: int = 20,
               tuned: Sequence[str] = ("block1", "head", "all"), depth: int = 26
               ) -> list[dict[str, Any]]:
    """Training images/s (forward + backward + Adam step) per tuned option and precision setting.

    Every setting runs ``steps`` timed steps after 3 warm-up steps on random 32x32 images; BN in
    eval mode as in the protocol. ``fast`` = bf16 autocast + channels_last.
    """
    rows = []
    for fast in (False, True):
        for t in tuned:
            torch.manual_seed(0)
            model = build_backbone("resnet26", 10, depth=depth).to(device)
            x = torch.rand(batch_size, 3, 32, 32, device=device)
            y = torch.randint(0, 10, (batch_size,), device=device)
            if fast:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            blocks = model.block_map()
            tuned_blocks = tuple(blocks) if t == "all" else (t,)
            names = configure_surgery(model, blocks, tuned_blocks, "eval")
            params = dict(model.named_parameters())
            opt = torch.optim.Adam([params[n] for n in names], lr=1e-3)

            dev_type = torch.device(device).type
            t0 = time.perf_counter()
            for i in range(3 + steps):  # 3 warm-up steps, then the timed ones
                if i == 3:
                    if dev_type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                with torch.autocast(device_type=dev_type, dtype=torch.bfloat16, enabled=fast):
                    loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if dev_type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            rows.append({"tuned": t, "bf16_channels_last": fast, "batch_size": batch_size,
                         "images_per_s": batch_size * steps / dt, "device": device})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m realdata.bench", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("cache", help="cached vs uncached head tuning on ResNet-26 (CPU)")
    c.add_argument("--n", type=int, default=1000)
    c.add_argument("--epochs", type=int, default=3)
    c.add_argument("--out", default=None, help="write the result JSON here")
    t = sub.add_parser("throughput", help="images/s tuning block1/head/all (GPU)")
    t.add_argument("--device", default="cuda")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--out", default=None, help="write the result JSON here")
    a = p.parse_args(argv)
    if a.what == "cache":
        res: Any = cache_speedup(n=a.n, epochs=a.epochs)
        print(f"head tuning, ResNet-26, n={a.n}: uncached {res['uncached_s_per_epoch']:.3f} "
              f"s/epoch, cached {res['cached_s_per_epoch']:.3f} s/epoch, speedup "
              f"{res['speedup']:.1f}x, same result: {res['same_result']}")
    else:
        res = throughput(device=a.device, batch_size=a.batch_size, steps=a.steps)
        for r in res:
            print(f"{r['tuned']:>6}  bf16+channels_last={r['bf16_channels_last']!s:5}  "
                  f"{r['images_per_s']:.0f} images/s")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
