"""Speed measurements: frozen-prefix caching (CPU) and tuning throughput (GPU script).

``python -m realdata.bench cache`` times :func:`realdata.train.finetune` tuning the head of a
full-size ResNet-26 on random 32x32 images with and without the prefix cache, in one process,
and prints the per-epoch times and their ratio (the cached time includes computing the prefix
once, amortized over the epochs and learning rates of the run).

``python -m realdata.bench throughput --device cuda`` measures training images/s when tuning
``block1``, ``head`` and ``all`` of a ResNet-26, with and without bf16 autocast + channels_last
(``scripts/device_realdata.sh`` runs it on a GPU and writes JSON under ``$OUT``).

``python -m realdata.bench grid`` times whole fine-tuning runs (every lr of the grid) per tuned
option, the per-lr loop against the batched grid (:mod:`realdata.grid_batch`), interleaved in one
process, and prints JSON: images/s of each (training images of all lrs / wall seconds of the
run, validation and test passes included), their ratio, the training FLOPs per image counted
with ``torch.utils.flop_counter.FlopCounterMode``, the fraction of the device's peak FLOP rate
reached (``images_per_s * flops_per_image / peak_flops``; the peak is known for H100/H200), and
the projected wall time of the full CIFAR-10-C protocol (19 corruptions x 6 options x 5 lrs x
15 epochs x 3 seeds on 1,000 training images) from the measured throughput, and per option the
training memory of one step, loop x members vs batched (:mod:`realdata.grid_memory`; on any
device) (``scripts/device_grid2.sh`` runs it on a GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from realdata import grid_batch
from realdata.data.base import TensorImages
from realdata.grid_memory import grid_step_memory
from realdata.models import build_backbone
from realdata.surgery import configure_surgery, resolve_tuned
from realdata.tasks import Protocol
from realdata.train import FinetuneConfig, accelerations, finetune, finetune_many
from sims.infra import write_json_atomic

__all__ = ["PEAK_FLOPS", "cache_speedup", "flops_per_image", "grid_speed", "main",
           "measured_peak", "throughput"]


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


#: Dense peak FLOP/s by device-name fragment (NVIDIA datasheets, no sparsity):
#: ``(bf16 tensor core, fp32 non-tensor)``. H200 has the H100 SXM's compute.
PEAK_FLOPS: dict[str, tuple[float, float]] = {
    "H100 PCIe": (756e12, 51e12),
    "H100": (989e12, 67e12),
    "H200": (989e12, 67e12),
}

#: The full CIFAR-10-C protocol: corruptions, tuned options (none, 4 blocks, all), lrs, epochs,
#: seeds, training images.
CIFAR10C_PROTOCOL = {"corruptions": 19, "options": 6, "lrs": 5, "epochs": 15, "seeds": 3,
                     "train_n": 1000}


def flops_per_image(tuned: str, depth: int = 26, batch_size: int = 64, device: str = "cpu",
                    start: int | None = None) -> float:
    """FLOPs of one training step (forward + backward) per image, tuning ``tuned`` of a
    ResNet-26 with BN in eval mode, counted by ``FlopCounterMode``.

    The forward starts at stage ``start`` (default: the first tuned block when it is not the
    first, as with the prefix cache; the cached prefix is computed once per run and not counted).
    """
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = build_backbone("resnet26", 10, depth=depth).to(device)
    blocks = tuple(model.block_map())
    tb = resolve_tuned(tuned, blocks)
    configure_surgery(model, model.block_map(), tb, "eval")
    s = blocks.index(tb[0]) if start is None else start
    x = torch.rand(batch_size, 3, 32, 32, device=device)
    with torch.no_grad():
        h = model(x, start=0, stop=s)
    y = torch.randint(0, 10, (batch_size,), device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(h, start=s), y).backward()
    return counter.get_total_flops() / batch_size


def _peak(device: str, bf16: bool) -> tuple[str, float | None]:
    if torch.device(device).type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, (pb, pf) in PEAK_FLOPS.items():
        if key in name:
            return name, pb if bf16 else pf
    return name, None


def _protocol_splits(n: int, val: int, test: int, k: int = 10, seed: int = 0
                     ) -> tuple[TensorImages, ...]:
    """Learnable random 32x32 images: class ``c`` is a fixed random template (the same for every
    seed) at half intensity plus uniform noise; labels and noise drawn from ``seed``. With
    learnable labels the validation scores are not a sea of near-ties, so whether two training
    paths select the same (lr, epoch) means something."""
    templates = torch.rand(k, 3, 32, 32, generator=torch.Generator().manual_seed(12345))
    g = torch.Generator().manual_seed(seed)

    def make(m: int) -> TensorImages:
        y = torch.randint(0, k, (m,), generator=g)
        return TensorImages(0.5 * templates[y] + 0.5 * torch.rand(m, 3, 32, 32, generator=g), y)

    return tuple(make(m) for m in (n, val, test))


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _flop_rate(fn: Callable[[], Any], flops: float, device: str, reps: int) -> float:
    """FLOP/s of ``fn`` (``flops`` per call): best of ``reps`` timed calls after one warm-up."""
    fn()
    best = math.inf
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return flops / best


def measured_peak(device: str = "cpu", bf16: bool = False, batch_size: int = 64,
                  reps: int = 3) -> dict[str, float]:
    """FLOP/s this process reaches on dense work, as the same-process ceiling for training:

    * ``matmul``: a square matrix product (2048 on CUDA, 512 on CPU);
    * ``conv``: forward + backward (input and weight gradients) of the ResNet-26's 3x3
      convolutions at ``batch_size`` (16 channels at 32x32, 32 at 16x16, 64 at 8x8), the layers
      that hold nearly all of a training step's FLOPs; FLOPs counted by ``FlopCounterMode``.

    In bf16 when ``bf16`` (autocast), else fp32.
    """
    from torch.utils.flop_counter import FlopCounterMode

    dtype = torch.bfloat16 if bf16 else torch.float32
    side = 2048 if torch.device(device).type == "cuda" else 512
    a = torch.rand(side, side, device=device, dtype=dtype)
    out = {"matmul": _flop_rate(lambda: a @ a, 2 * side ** 3, device, reps)}
    convs = []
    for c, hw in ((16, 32), (32, 16), (64, 8)):
        x = torch.rand(batch_size, c, hw, hw, device=device, dtype=dtype, requires_grad=True)
        w = torch.rand(c, c, 3, 3, device=device, dtype=dtype, requires_grad=True)
        convs.append((x, w))

    def step() -> None:
        for x, w in convs:
            F.conv2d(x, w, padding=1).sum().backward()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    out["conv"] = _flop_rate(step, counter.get_total_flops(), device, reps)
    return out


def grid_speed(options: Sequence[str] = ("block1", "block2", "block3", "head", "all"),
               n: int = 1000, val: int = 100, test: int = 900, epochs: int = 1,
               lrs: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5), batch_size: int = 64,
               depth: int = 26, reps: int = 1, device: str = "cpu", seed: int = 0,
               grid_group: int = 0, targets: int = 1, bf16: bool = True,
               memory: bool = True, memory_members: int = 0, builtin_layout: bool = False,
               compare_layout: bool = False,
               on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Per-lr loop vs batched grid, interleaved (loop, batched, loop, ...) in this process.

    Each timing is whole fine-tuning runs on learnable random 32x32 images (class template +
    noise; ``n`` training, ``val``
    validation, ``test`` test images, batch ``batch_size``, ``epochs`` epochs, every lr of
    ``lrs``). The batched grid trains ``targets`` targets at once
    (:func:`realdata.train.finetune_many`; each target its own images and seed, standing for the
    seeds x corruptions of the protocol), so ``len(lrs) * targets`` members; the loop runs
    :func:`realdata.train.finetune` on the first target (its images/s do not depend on how many
    targets follow one another). images/s = member-images trained / wall seconds (validation and
    test passes included). Ratios are paired within a repetition (batched images/s / loop
    images/s); their median is reported. ``same_selection``: the first target's selected
    (lr, epoch) agree. The projection uses each option's median images/s for the 5 trained
    options (``none`` trains nothing). ``bf16=False`` runs fp32 with TF32 off (CUDA), for an
    exact comparison.

    Returns:
        JSON-able dict: ``rows`` (one per option), ``projection``, ``measured_peak_flops``, settings
        and the formulas.
    """
    proto = Protocol(epochs=epochs, lrs=tuple(lrs), batch_size=batch_size)
    data = [_protocol_splits(n, val, test, seed=seed + i) for i in range(targets)]
    cfg0 = FinetuneConfig(device=device, bf16=bf16)
    bf16 = accelerations(cfg0).bf16
    cuda = torch.device(device).type == "cuda"
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if cuda and not bf16:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    settings = {
        "what": "per-lr loop vs batched grid (lrs x targets), whole fine-tuning runs (random "
                "images: a class template plus noise)",
        "device": device, "bf16_autocast": bf16, "fp32_tf32_off": cuda and not bf16,
        "threads": torch.get_num_threads(), "depth": depth, "n": n, "val": val, "test": test,
        "epochs": epochs, "lrs": list(lrs), "targets": targets,
        "members": len(lrs) * targets, "batch_size": batch_size, "reps": reps,
        "grid_group": grid_group, "member_layout": not builtin_layout,
        "peak_fraction_formula": "images_per_s * flops_per_image / peak_flops",
        "flops_per_image_counts": "one training step (forward from the first tuned stage + "
                                  "backward) per image, FlopCounterMode (matmul/conv only)"}
    rows: list[dict[str, Any]] = []
    k = len(lrs) * targets
    mem_k = min(memory_members or k, k)

    def step_memory(opt: str) -> dict[str, Any]:
        return _step_memory(opt, data[0][0], batch_size, device, depth, seed, mem_k, targets == 1,
                            bf16)

    try:
        with grid_batch.member_layout(not builtin_layout):
            dev_name, peak = _peak(device, bf16)
            ceiling = measured_peak(device, bf16, batch_size)
            settings.update(device_name=dev_name, peak_flops=peak, measured_peak_flops=ceiling)
            for opt in options:
                rows.append(_grid_row(opt, data, proto, device, depth, seed, grid_group, bf16,
                                      reps, batch_size, peak, ceiling))
                if memory:
                    rows[-1]["memory"] = step_memory(opt)
                if memory and compare_layout:
                    with grid_batch.member_layout(builtin_layout):
                        rows[-1]["memory_builtin_layout"] = step_memory(opt)
                if on_row is not None:
                    on_row(_grid_result(settings, rows))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return _grid_result(settings, rows)


def _grid_result(settings: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON of :func:`grid_speed` for the options measured so far."""
    p = CIFAR10C_PROTOCOL
    per_run_images = p["train_n"] * p["epochs"] * p["lrs"]
    runs = p["corruptions"] * p["seeds"]
    projection = {
        key: runs * sum(per_run_images / r[f"{key}_images_per_s"] for r in rows)
        for key in ("loop", "batched")}
    return {
        **settings,
        "rows": list(rows),
        "projection": {
            "protocol": p,
            "formula": "corruptions * seeds * sum over the trained options of "
                       "train_n * epochs * lrs / images_per_s(option) (none: no training)",
            "options_measured": [r["tuned"] for r in rows],
            "loop_s": projection["loop"], "batched_s": projection["batched"],
            "loop_min": projection["loop"] / 60, "batched_min": projection["batched"] / 60,
        },
    }


def _grid_row(opt: str, data: Sequence[tuple[TensorImages, ...]], proto: Protocol, device: str,
              depth: int, seed: int, grid_group: int, bf16: bool, reps: int, batch_size: int,
              peak: float | None, ceiling: dict[str, float]) -> dict[str, Any]:
    """One option of :func:`grid_speed`."""
    cuda = torch.device(device).type == "cuda"
    times: dict[bool, list[float]] = {False: [], True: []}
    mem: dict[bool, int] = {}
    same = True
    info: dict[str, Any] = {}
    targets = [(*d, seed + i) for i, d in enumerate(data)]
    for _ in range(reps):
        res = {}
        for batched in (False, True):
            torch.manual_seed(seed)
            model = build_backbone("resnet26", 10, depth=depth)
            cfg = FinetuneConfig(tuned=opt, device=device, grid_batch=batched,
                                 grid_group=grid_group, bf16=bf16)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            if batched:
                res[True] = finetune_many(model, model.block_map(), targets, protocol=proto,
                                          config=cfg)[0]
            else:
                res[False] = finetune(model, model.block_map(), *data[0], protocol=proto,
                                      config=cfg, seed=seed)
            if cuda:
                torch.cuda.synchronize()
                mem[batched] = torch.cuda.max_memory_allocated()
            times[batched].append(time.perf_counter() - t0)
        same &= (res[True].best_lr, res[True].best_epoch) == (res[False].best_lr,
                                                              res[False].best_epoch)
        info = {"grid": res[True].grid, "cached": res[True].cached,
                "lr_errors_loop": sum(t.error is not None for t in res[False].traces),
                "lr_errors_batched": sum(t.error is not None for t in res[True].traces),
                "selected_loop": [res[False].best_lr, res[False].best_epoch],
                "selected_batched": [res[True].best_lr, res[True].best_epoch]}
    imgs = len(data[0][0]) * proto.epochs * len(proto.lrs)
    members = len(data)
    loop_ips = imgs / _median(times[False])
    batched_ips = imgs * members / _median(times[True])
    ratios = sorted(imgs * members / b / (imgs / a) for a, b in zip(times[False], times[True]))
    fpi = flops_per_image(opt, depth=depth, batch_size=batch_size, device=device)
    row = {"tuned": opt, "loop_s": times[False], "batched_s": times[True],
           "loop_images_per_s": loop_ips, "batched_images_per_s": batched_ips,
           "ratio_batched_over_loop": ratios[len(ratios) // 2], "ratios": ratios,
           "same_selection": same, "flops_per_image": fpi, **info}
    for key, ips in (("loop", loop_ips), ("batched", batched_ips)):
        row[f"{key}_gflop_per_s"] = ips * fpi / 1e9
        row[f"{key}_peak_fraction"] = ips * fpi / peak if peak else None
        row[f"{key}_conv_ceiling_fraction"] = ips * fpi / ceiling["conv"]
    if mem:
        row["loop_peak_bytes"], row["batched_peak_bytes"] = mem[False], mem[True]
        row["batched_peak_over_loop_peak_times_members"] = mem[True] / (
            mem[False] * members * len(proto.lrs))
    return row


def _step_memory(opt: str, train: TensorImages, batch_size: int, device: str, depth: int,
                 seed: int, members: int, shared: bool, bf16: bool) -> dict[str, Any]:
    """:func:`realdata.grid_memory.grid_step_memory` of option ``opt`` on the first
    ``batch_size`` training images (BN in eval mode, as the runs)."""
    torch.manual_seed(seed)
    model = build_backbone("resnet26", 10, depth=depth).to(device)
    idx = torch.arange(min(batch_size, len(train)))
    x, y, _ = train.batch(idx)
    tuned = resolve_tuned(opt, tuple(model.block_map()))
    out = grid_step_memory(model, model.block_map(), tuned, "eval", x.to(device), y.to(device),
                           members, shared, bf16)
    out["layout"] = "member axis after the examples" if grid_batch.MEMBER_LAYOUT else \
        "vmap built-in rules"
    return out


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])


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
    gr = sub.add_parser("grid", help="per-lr loop vs batched lr grid, images/s per option (JSON)")
    gr.add_argument("--device", default="cpu")
    gr.add_argument("--options", nargs="+", default=["block1", "block2", "block3", "head", "all"])
    gr.add_argument("--n", type=int, default=1000, help="training images (protocol: 1000)")
    gr.add_argument("--val", type=int, default=100)
    gr.add_argument("--test", type=int, default=900)
    gr.add_argument("--epochs", type=int, default=1)
    gr.add_argument("--depth", type=int, default=26)
    gr.add_argument("--reps", type=int, default=1)
    gr.add_argument("--grid-group", type=int, default=0)
    gr.add_argument("--targets", type=int, default=1,
                    help="targets trained at once by the batched grid (members = lrs x targets; "
                         "the protocol has 19 corruptions x 3 seeds = 57)")
    gr.add_argument("--fp32", action="store_true",
                    help="fp32 without TF32 on CUDA (exact comparison) instead of bf16 autocast")
    gr.add_argument("--no-memory", action="store_true",
                    help="skip the per-option training-memory accounting (one step each)")
    gr.add_argument("--memory-members", type=int, default=0,
                    help="members in the memory accounting (default 0: all of the run's)")
    gr.add_argument("--compare-layout", action="store_true",
                    help="also account memory with vmap's built-in layout rules")
    gr.add_argument("--builtin-layout", action="store_true",
                    help="run the batched grid with vmap's built-in layout rules (before/after)")
    gr.add_argument("--quick", action="store_true",
                    help="tiny smoke settings (depth 8, 128 images, block1 head all)")
    gr.add_argument("--out", default=None, help="write the result JSON here")
    a = p.parse_args(argv)
    if a.what == "grid":
        kw: dict[str, Any] = {"options": a.options, "n": a.n, "val": a.val, "test": a.test,
                              "epochs": a.epochs, "depth": a.depth, "reps": a.reps,
                              "device": a.device, "grid_group": a.grid_group,
                              "targets": a.targets, "bf16": not a.fp32,
                              "memory": not a.no_memory, "memory_members": a.memory_members,
                              "builtin_layout": a.builtin_layout,
                              "compare_layout": a.compare_layout}
        if a.quick:
            kw.update(options=["block1", "head", "all"], n=128, val=40, test=40, depth=8)
        if min(kw["n"], kw["val"], kw["test"], kw["epochs"], kw["reps"], kw["targets"]) < 1:
            p.error("--n, --val, --test, --epochs, --reps and --targets must be >= 1")
        if a.memory_members < 0:
            p.error("--memory-members must be >= 0 (0: all members)")
        if a.out:
            kw["on_row"] = lambda partial: _write(a.out, partial)
        res = grid_speed(**kw)
        print(json.dumps(res, indent=2))
    elif a.what == "cache":
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
        _write(a.out, res)
    return 0


def _write(out: str, res: Any) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(out), res)


if __name__ == "__main__":
    raise SystemExit(main())
