"""``python -m realdata.benchmark`` under faults: bad input (one line, exit 2), a finished folder's
config.json never rewritten by a failing run, files that respect the umask (results, the generated
CIFAR-10-C marker and arrays, the synthetic source model)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import realdata.benchmark as bench
import sims.infra.executors as executors
from realdata import pretrain
from realdata.data.base import LoadRequest
from realdata.make_corrupted import make_corrupted
from tests.infra.cli_faults import OUT_CASES, assert_refused_keeps_folder, one_line_error
from tests.realdata.data.fixtures import make_cifar10
from tests.realdata.test_benchmark import ARGS as _REGISTERS_TINYTASK  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--task", "tinytask", "--seeds", "0", "--no-progress", "--tuned", "none", "--methods"]


def _modes(folder: Path) -> dict[str, str]:
    return {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished benchmark folder, written under umask 022."""
    out = tmp_path_factory.mktemp("finished") / "out"
    old = os.umask(0o022)
    try:
        assert bench.main([*SMALL, "--out", str(out)]) == 0
    finally:
        os.umask(old)
    return out


def test_results_respect_the_umask(finished: Path) -> None:
    modes = _modes(finished)
    assert {"runs.jsonl", "config.json", "summary.csv", "verdicts.json", ".lock"} <= set(modes)
    assert set(modes.values()) == {"0o644"}, modes


def test_generated_cifar10c_and_synthetic_source_respect_the_umask(tmp_path: Path,
                                                                   monkeypatch) -> None:
    root = make_cifar10(tmp_path, per_class=1)
    monkeypatch.setitem(pretrain.SOURCE_PRESETS, "quick",
                        {"train_n": 40, "epochs": 1, "lr": 0.05, "batch_size": 20})
    old = os.umask(0o022)
    try:
        make_corrupted(root, corruptions=["contrast"], chunk=5, progress=False)
        model = pretrain.prepare_synthetic_source(LoadRequest(data_root=tmp_path, image_size=32),
                                                  tmp_path / "src")
    finally:
        os.umask(old)
    modes = _modes(root / "CIFAR-10-C")
    assert set(modes) == {"GENERATED.json", "labels.npy", "contrast.npy"}
    assert set(modes.values()) == {"0o644"}, modes
    assert model.is_file() and set(_modes(model.parent).values()) == {"0o644"}


# ------------------------------------------------------------------ bad input, config.json kept




def _bad_line(out: Path, raw: bytes) -> list[str]:
    with (out / "runs.jsonl").open("ab") as fh:
        fh.write(raw)
    return []


def _checkpoint(tmp: Path, content: bytes | None) -> list[str]:
    path = tmp / "source.pt"
    if content is None:  # a pickle holding a Python object besides tensors
        torch.save({"args": argparse.Namespace(lr=1)}, path)
    else:
        path.write_bytes(content)
    return ["--checkpoint", str(path)]


def _unlink_mkdir(path: Path) -> list[str]:
    path.unlink()
    path.mkdir()
    return []


#: case -> (prepare(out, tmp) -> extra argv, what the one-line error must say, what it must not).
CASES: dict[str, tuple[Callable[[Path, Path], list[str]], str]] = {
    "runs.jsonl not UTF-8": (lambda o, t: _bad_line(o, b'{"id": "\xff"}\n'),
                             r"runs\.jsonl:{n}: not UTF-8"),
    "runs.jsonl not JSON": (lambda o, t: _bad_line(o, b"{oops\n"), r"runs\.jsonl:{n}: not a JSON"),
    "runs.jsonl is a folder": (lambda o, t: _unlink_mkdir(o / "runs.jsonl"),
                               r"runs\.jsonl is not a regular file"),
    "unreachable scheduler": (lambda o, t: ["--executor", "dask", "--scheduler",
                                            "tcp://127.0.0.1:9"], "cannot reach the dask scheduler"),
    "device nonsense": (lambda o, t: ["--device", "nonsense"], "'nonsense' is not a torch device"),
    "device cuda without CUDA": (lambda o, t: ["--device", "cuda"], "no CUDA device"),
    "corrupt checkpoint": (lambda o, t: _checkpoint(t, b"garbage" * 10),
                           r"cannot read checkpoint .*source\.pt: not a complete torch\.save"),
    "truncated checkpoint": (lambda o, t: _checkpoint(t, b"PK\x03\x04" + b"\0" * 40),
                             r"cannot read checkpoint .*source\.pt: not a complete torch\.save"),
    "checkpoint with objects": (lambda o, t: _checkpoint(t, None),
                                r"source\.pt: it holds Python objects besides tensors"),
    "seed and seeds": (lambda o, t: ["--seed", "1"], "give --seed or --seeds"),
    "folder in use": (lambda o, t: [], "in use by another run"),
}





@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_keeps_the_finished_folder(
        case: str, finished: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    if case == "device cuda without CUDA" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setattr(executors, "SCHEDULER_TIMEOUT_S", 1.0)
    assert_refused_keeps_folder(lambda a: bench.main([*SMALL, *a]), case, CASES, finished,
                                tmp_path, capsys)


@pytest.mark.parametrize("case", list(OUT_CASES))
def test_unusable_out_is_one_line(case: str, tmp_path: Path, capsys) -> None:
    make, match = OUT_CASES[case]
    assert bench.main([*SMALL, "--out", str(make(tmp_path))]) == 2
    one_line_error(capsys, match)


def test_bad_input_from_the_command_line_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "realdata.benchmark", "--task", "synthetic",
                           "--device", "nonsense", "--out", str(tmp_path / "o")],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1, proc.stderr
