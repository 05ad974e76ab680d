"""``python -m realdata.bench grid``: JSON fields, FLOP count, peak fraction and projection."""

from __future__ import annotations

import json

import pytest

from realdata import bench


def test_head_flops_are_the_fc_forward_and_weight_gradient():
    # depth-8 ResNet-26: 64 features -> 10 classes; forward 2*64*10, weight gradient 2*64*10
    assert bench.flops_per_image("head", depth=8, batch_size=4) == 2 * 2 * 64 * 10
    assert bench.flops_per_image("all", depth=8, batch_size=4) > bench.flops_per_image(
        "block3", depth=8, batch_size=4)


def test_grid_json_projection_and_peak_fraction(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "_peak", lambda device, bf16: ("fake", 1e12))
    monkeypatch.setattr(bench, "measured_peak", lambda *a, **k: {"matmul": 1e9, "conv": 1e9})
    assert bench.main(["grid", "--options", "head", "--n", "16", "--val", "8", "--test", "8",
                       "--depth", "8", "--out", str(tmp_path / "g.json")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d == json.loads((tmp_path / "g.json").read_text())
    (row,) = d["rows"]
    assert row["same_selection"] and row["grid"]["batched"] and row["grid"]["groups"] == [5]
    for key in ("loop", "batched"):
        ips = row[f"{key}_images_per_s"]
        assert ips == pytest.approx(16 * 5 / row[f"{key}_s"][0])
        assert row[f"{key}_peak_fraction"] == pytest.approx(ips * row["flops_per_image"] / 1e12)
        want = 19 * 3 * 1000 * 15 * 5 / ips
        assert d["projection"][f"{key}_s"] == pytest.approx(want)
    assert row["ratio_batched_over_loop"] == pytest.approx(row["loop_s"][0] / row["batched_s"][0])
    mem = row["memory"]
    assert mem["members"] == 5 and d["member_layout"] and "memory_builtin_layout" not in row
    for key in ("saved", "peak"):
        assert mem[f"{key}_ratio"] == pytest.approx(
            mem[f"batched_{key}_bytes"] / (5 * mem[f"loop_{key}_bytes"]))


def test_grid_bad_sizes_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["grid", "--n", "0"])
    assert exc.value.code == 2 and "--n, --val" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench.main(["grid", "--targets", "0"])
    assert exc.value.code == 2 and "--targets must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        bench.main(["grid", "--memory-members", "-1"])
    assert exc.value.code == 2 and "--memory-members must be >= 0" in capsys.readouterr().err


def test_grid_memory_accounting_compares_the_layouts(monkeypatch, capsys):
    """The JSON's accounting: within loop x members with the member layout, above it with
    ``vmap``'s built-in rules (``--compare-layout``); ``--builtin-layout`` runs them."""
    monkeypatch.setattr(bench, "measured_peak", lambda *a, **k: {"matmul": 1e9, "conv": 1e9})
    args = ["grid", "--options", "block1", "--n", "16", "--val", "8", "--test", "8", "--depth",
            "8", "--memory-members", "3"]
    assert bench.main([*args, "--compare-layout"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    ours, builtin = row["memory"], row["memory_builtin_layout"]
    assert ours["members"] == builtin["members"] == 3
    assert ours["saved_ratio"] <= 1 and ours["peak_ratio"] <= 1
    assert builtin["saved_ratio"] > 1.2 and builtin["loop_saved_bytes"] == ours["loop_saved_bytes"]
    assert bench.main([*args, "--builtin-layout", "--no-memory"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert not d["member_layout"] and "memory" not in d["rows"][0] and d["rows"][0]["same_selection"]
    assert bench.grid_batch.MEMBER_LAYOUT  # restored


def test_grid_with_targets_counts_every_member(monkeypatch, capsys):
    monkeypatch.setattr(bench, "measured_peak", lambda *a, **k: {"matmul": 1e9, "conv": 1e9})
    assert bench.main(["grid", "--options", "block3", "--n", "16", "--val", "8", "--test", "8",
                       "--depth", "8", "--targets", "2"]) == 0
    d = json.loads(capsys.readouterr().out)
    (row,) = d["rows"]
    assert d["members"] == 10 and row["grid"]["targets"] == 2 and row["grid"]["groups"] == [10]
    assert row["batched_images_per_s"] == pytest.approx(16 * 5 * 2 / row["batched_s"][0])
    assert row["loop_images_per_s"] == pytest.approx(16 * 5 / row["loop_s"][0])
    assert row["ratio_batched_over_loop"] == pytest.approx(
        row["batched_images_per_s"] / row["loop_images_per_s"])
    assert row["batched_conv_ceiling_fraction"] == pytest.approx(
        row["batched_images_per_s"] * row["flops_per_image"] / 1e9)
    assert row["same_selection"] and row["selected_loop"] == row["selected_batched"]


def test_measured_peak_is_positive_and_counts_the_convolutions():
    peak = bench.measured_peak("cpu", batch_size=2, reps=1)
    assert set(peak) == {"matmul", "conv"} and min(peak.values()) > 0
