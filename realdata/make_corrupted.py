"""Write a CIFAR-10-C-layout folder from CIFAR-10 when the published files are absent.

Usage::

    python -m realdata.make_corrupted --data-root R [--out DIR] [--corruptions all|a,b,...]
                                      [--seed 0] [--chunk 1000]

reads ``R/cifar-10-batches-py/test_batch`` and writes ``DIR`` (default ``R/CIFAR-10-C``) in the
published layout: ``<corruption>.npy`` of shape ``(5 * 10000, 32, 32, 3)`` uint8 (severities 1..5
in blocks of 10,000) and ``labels.npy``, using :mod:`realdata.data.corruptions` with the CIFAR-10-C
constants. A ``GENERATED.json`` marker records the configuration, so the benchmark reports that
it ran on generated (not published) data. Each file is written to a temporary name and renamed
when complete, so an interrupted run resumes where it stopped; a published CIFAR-10-C folder (no
marker) is never overwritten. The output is a pure function of the CIFAR-10 test batch and
``--seed`` (each chunk is seeded from ``(seed, corruption, severity, chunk)``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from realdata.data.base import DatasetLayoutError
from realdata.data.cifar import (
    CIFAR10C_DIR,
    GENERATED_MARKER,
    NUM_SEVERITIES,
    read_cifar10_test,
)
from realdata.data.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS_VERSION,
    corrupt_uint8,
    validate_corruption,
)
from sims.infra import atomic_path, package_version, write_json_atomic

__all__ = ["chunk_seed", "main", "make_corrupted", "parse_corruptions"]


def parse_corruptions(spec: str) -> tuple[str, ...]:
    """``"all"`` or a comma-separated list of corruption names (validated)."""
    if spec.strip() == "all":
        return ALL_CORRUPTIONS
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    if not names:
        raise ValueError("--corruptions is empty; give 'all' or names like gaussian_noise,fog")
    return tuple(validate_corruption(n) for n in names)


def chunk_seed(seed: int, corruption: str, severity: int, chunk: int) -> int:
    """Seed of one chunk: a hash of ``(seed, corruption index, severity, chunk index)``."""
    ss = np.random.SeedSequence([seed, ALL_CORRUPTIONS.index(corruption), severity, chunk])
    return int(ss.generate_state(1)[0])


def _write_one(out: Path, name: str, images: np.ndarray, seed: int, chunk: int, progress: bool) -> None:
    n = images.shape[0]
    with atomic_path(out / f"{name}.npy") as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(NUM_SEVERITIES * n, *images.shape[1:]))  # fmt: skip
        bar = tqdm(total=NUM_SEVERITIES * n, desc=name, disable=not progress, file=sys.stderr)
        for sev in range(1, NUM_SEVERITIES + 1):
            for k, start in enumerate(range(0, n, chunk)):
                x = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk]))
                y = corrupt_uint8(x.permute(0, 3, 1, 2), name, sev,
                                  seed=chunk_seed(seed, name, sev, k))
                u8 = y.permute(0, 2, 3, 1)
                row = (sev - 1) * n + start
                arr[row : row + u8.shape[0]] = u8.numpy()
                bar.update(u8.shape[0])
        bar.close()
        arr.flush()
        del arr


def make_corrupted(
    data_root: Path,
    out: Path | None = None,
    corruptions: Sequence[str] = ALL_CORRUPTIONS,
    *,
    seed: int = 0,
    chunk: int = 1000,
    progress: bool = True,
) -> dict[str, str]:
    """Generate the CIFAR-10-C layout; return ``{corruption: "written" | "kept"}``.

    Raises:
        ValueError: missing CIFAR-10 (the message prints the layout), a published folder at
            ``out``, a marker from a different configuration, or bad arguments.
    """
    if chunk < 1:
        raise ValueError(f"--chunk must be >= 1; got {chunk}")
    names = tuple(validate_corruption(c) for c in corruptions)
    images, labels = read_cifar10_test(Path(data_root))
    out = Path(out) if out is not None else Path(data_root) / CIFAR10C_DIR
    config = {
        "generator": "realdata.make_corrupted",
        "source": f"{Path(data_root).resolve()}/cifar-10-batches-py/test_batch",
        "num_images": int(images.shape[0]),
        "seed": int(seed),
        "chunk": int(chunk),
        "profile": "cifar",
        "corruptions_version": CORRUPTIONS_VERSION,
        "package_version": package_version(),
    }
    marker = out / GENERATED_MARKER
    if out.is_dir() and any(out.glob("*.npy")) and not marker.is_file():
        raise ValueError(f"{out} holds a CIFAR-10-C without {GENERATED_MARKER} (the published "
                         "files?); not overwriting it. Pass another --out.")  # fmt: skip
    if marker.is_file():
        old = json.loads(marker.read_text())
        keys = ("num_images", "seed", "chunk", "profile", "corruptions_version")
        if any(old.get(k) != config[k] for k in keys):
            raise ValueError(f"{marker} was written with {({k: old.get(k) for k in keys})}; this "
                             f"run has {({k: config[k] for k in keys})}. Use another --out.")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, config)
    labels_path = out / "labels.npy"
    if not labels_path.is_file():
        with atomic_path(labels_path) as tmp, open(tmp, "wb") as f:
            np.save(f, np.tile(labels.astype(np.uint8), NUM_SEVERITIES))
    status: dict[str, str] = {}
    for name in names:
        if (out / f"{name}.npy").is_file():
            status[name] = "kept"
            continue
        _write_one(out, name, images, seed, chunk, progress)
        status[name] = "written"
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input)."""
    p = argparse.ArgumentParser(
        prog="python -m realdata.make_corrupted",
        description="Write CIFAR-10-C (published layout) from CIFAR-10's test batch.",
    )
    p.add_argument(
        "--data-root",
        type=Path,
        required=True,
        help="folder holding cifar-10-batches-py/ (see the README's datasets section)",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default: <data-root>/CIFAR-10-C)")
    p.add_argument(
        "--corruptions",
        default="all",
        help="'all' (15 standard + 4 extra) or a comma-separated list of names",
    )
    p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    p.add_argument("--chunk", type=int, default=1000, help="images corrupted per batch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)  # fmt: skip
    try:
        status = make_corrupted(args.data_root, args.out, parse_corruptions(args.corruptions),
                                seed=args.seed, chunk=args.chunk,
                                progress=not args.no_progress)  # fmt: skip
    except (DatasetLayoutError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or args.data_root / CIFAR10C_DIR
    for name, what in status.items():
        print(f"{what:8s} {out / (name + '.npy')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
