"""The ViT backbone: timm's and OpenAI CLIP's ViT-B/16 key layouts (names and shapes, written out
here from the published models), loading by path, attention equal to ``nn.MultiheadAttention``,
the block map, and the one-line patch-size error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from realdata.models import CheckpointMismatchError, build_backbone, load_checkpoint
from realdata.models.vit import PAPER_VIT_OPTIONS
from realdata.surgery import resolve_tuned
from tests.realdata.conftest import TINY, tiny

pytestmark = pytest.mark.usefixtures("one_thread")

D, P, T, H = 768, 16, 197, 3072  # ViT-B/16 at 224 px: width, patch, tokens, MLP width


def timm_vit_b16_shapes(k: int = 1000, D: int = D, T: int = T, H: int = H, P: int = P
                        ) -> dict[str, tuple[int, ...]]:
    """``timm.create_model('vit_base_patch16_224').state_dict()`` names and shapes (the defaults;
    other sizes keep the names)."""
    out = {"cls_token": (1, 1, D), "pos_embed": (1, T, D),
           "patch_embed.proj.weight": (D, 3, P, P), "patch_embed.proj.bias": (D,)}
    for i in range(12):
        b = f"blocks.{i}."
        out.update({b + "norm1.weight": (D,), b + "norm1.bias": (D,),
                    b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                    b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
                    b + "norm2.weight": (D,), b + "norm2.bias": (D,),
                    b + "mlp.fc1.weight": (H, D), b + "mlp.fc1.bias": (H,),
                    b + "mlp.fc2.weight": (D, H), b + "mlp.fc2.bias": (D,)})
    out.update({"norm.weight": (D,), "norm.bias": (D,), "head.weight": (k, D), "head.bias": (k,)})
    return out


def clip_vit_b16_visual_shapes(D: int = D, T: int = T, H: int = H, P: int = P,
                               E: int = 512) -> dict[str, tuple[int, ...]]:
    """The ``visual.*`` entries of OpenAI CLIP ``ViT-B/16`` (prefix removed; the defaults)."""
    out = {"class_embedding": (D,), "positional_embedding": (T, D), "proj": (D, E),
           "conv1.weight": (D, 3, P, P), "ln_pre.weight": (D,), "ln_pre.bias": (D,),
           "ln_post.weight": (D,), "ln_post.bias": (D,)}
    for i in range(12):
        b = f"transformer.resblocks.{i}."
        out.update({b + "attn.in_proj_weight": (3 * D, D), b + "attn.in_proj_bias": (3 * D,),
                    b + "attn.out_proj.weight": (D, D), b + "attn.out_proj.bias": (D,),
                    b + "ln_1.weight": (D,), b + "ln_1.bias": (D,),
                    b + "mlp.c_fc.weight": (H, D), b + "mlp.c_fc.bias": (H,),
                    b + "mlp.c_proj.weight": (D, H), b + "mlp.c_proj.bias": (D,),
                    b + "ln_2.weight": (D,), b + "ln_2.bias": (D,)})
    return out


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_timm_vit_b16_keys_shapes_and_parameter_count():
    model = build_backbone("vit_b16", 1000)
    assert _shapes(model) == timm_vit_b16_shapes()
    assert sum(p.numel() for p in model.parameters()) == 86_567_656  # timm's count


def test_clip_vit_b16_keys_and_shapes():
    model = build_backbone("clip_vit_b16", 62)
    want = {**clip_vit_b16_visual_shapes(), "head.weight": (62, 512), "head.bias": (62,)}
    assert _shapes(model) == want


def _fake(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: 0.02 * torch.randn(s, generator=g) for k, s in shapes.items()}


SMALL = {"D": 16, "T": 17, "H": 64, "P": 8}  # the published names at the tiny test size


@pytest.mark.parametrize("size", [pytest.param("base", marks=pytest.mark.slow), "small"])
def test_published_layouts_load_by_path(size, tmp_path):
    """A file in each published layout loads by path; every tensor arrives (ViT-B/16 itself in
    the slow suite: two 86M-parameter files)."""
    dims = {} if size == "base" else SMALL
    kw = {} if size == "base" else {**TINY["vit_b16"][0], "depth": 12}
    timm_sd = _fake(timm_vit_b16_shapes(10, **dims))
    torch.save({"model": timm_sd}, tmp_path / "timm.pt")
    model = build_backbone("vit_b16", 10, **kw)
    assert load_checkpoint(model, tmp_path / "timm.pt") == []
    for k, v in model.state_dict().items():
        assert torch.equal(v, timm_sd[k]), k
    # OpenAI CLIP: the whole model (text tower with clashing names, logit_scale) in one file
    visual = _fake(clip_vit_b16_visual_shapes(**dims, **({} if size == "base" else {"E": 8})),
                   seed=1)
    full = {**{f"visual.{k}": v for k, v in visual.items()},
            "positional_embedding": torch.zeros(77, 512), "logit_scale": torch.tensor(4.6),
            "transformer.resblocks.0.attn.in_proj_weight": torch.zeros(1536, 512),
            "token_embedding.weight": torch.zeros(49408, 512), "text_projection": torch.zeros(512, 512)}
    torch.save(full, tmp_path / "clip.pt")
    clip = build_backbone("clip_vit_b16", 62, **({} if size == "base" else
                                                {**TINY["clip_vit_b16"][0], "depth": 12}))
    load_checkpoint(clip, tmp_path / "clip.pt")
    sd = clip.state_dict()
    for k, v in visual.items():
        assert torch.equal(sd[k], v), k
    assert not sd["head.weight"].any() and not sd["head.bias"].any()  # no head in CLIP: zeros


@pytest.mark.parametrize("name", ["vit_b16", "clip_vit_b16"])
def test_wrong_patch_size_is_one_line_error(name, tmp_path):
    kw = TINY[name][0]
    torch.save(tiny(name).state_dict(), tmp_path / "p8.pt")
    other = build_backbone(name, 4, **{**kw, "patch_size": 4})
    with pytest.raises(CheckpointMismatchError, match="patch size 8 but the model has patch "
                                                      "size 4") as e:
        load_checkpoint(other, tmp_path / "p8.pt")
    assert "\n" not in str(e.value) and '"patch_size": 8' in str(e.value)


@pytest.mark.parametrize("name", ["vit_b16", "clip_vit_b16"])
def test_position_grid_resampled_for_another_image_size(name, tmp_path):
    kw = TINY[name][0]
    src = tiny(name)
    torch.save(src.state_dict(), tmp_path / "s.pt")
    big = build_backbone(name, 4, **{**kw, "image_size": 64})
    load_checkpoint(big, tmp_path / "s.pt")
    pos = "pos_embed" if name == "vit_b16" else "positional_embedding"
    old, new = src.state_dict()[pos].reshape(-1, 16), big.state_dict()[pos].reshape(-1, 16)
    assert new.shape == (1 + 64, 16) and torch.equal(new[0], old[0])  # class token kept
    assert big(torch.rand(1, 3, 64, 64)).shape == (1, 4)


def test_attention_equals_torch_multihead_attention():
    """CLIP's block attention (``nn.MultiheadAttention`` weights) and the shared kernel agree."""
    model = tiny("clip_vit_b16").eval()
    attn = model.transformer.resblocks[0].attn
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    mha.load_state_dict({k: v for k, v in attn.state_dict().items()})
    x = torch.randn(3, 17, 16)
    ref, _ = mha(x, x, x, need_weights=False)
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)


def test_vit_blocks_and_paper_options():
    model = build_backbone("vit_b16", 10, image_size=32, patch_size=8, embed_dim=24, depth=12,
                           heads=2)
    blocks = model.block_names
    assert blocks == ("embed", *(f"block{i}" for i in range(12)), "head")
    opts = {o: resolve_tuned(o, blocks) for o in PAPER_VIT_OPTIONS}
    assert opts["block0-block2"] == ("block0", "block1", "block2")
    assert opts["block9-block11"] == ("block9", "block10", "block11")
    assert opts["embed"] == ("embed",) and opts["head"] == ("head",)


def test_synthetic_vit_task_end_to_end(tmp_path, capsys):
    """The tiny-ViT synthetic task through the benchmark CLI with the paper's option kinds."""
    import json

    from realdata import benchmark
    from realdata.data.synthetic_vit import TINY_VIT

    torch.manual_seed(0)
    ckpt = tmp_path / "vit.pt"
    torch.save(build_backbone("vit_b16", 10, **TINY_VIT).state_dict(), ckpt)
    out = tmp_path / "out"
    tuned = ["none", "embed", "block0-block2", "block3-block5", "head", "all"]
    rc = benchmark.main(["--task", "synthetic-vit", "--checkpoint", str(ckpt), "--seeds", "0",
                         "--variants", "input-channels", "--tuned", *tuned, "--methods",
                         "--epochs", "1", "--lrs", "1e-3", "--train-n", "20", "--val-per-class",
                         "2", "--test-per-class", "2", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    recs = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted(r["tuned"] for r in recs) == sorted(tuned)
    assert all(r["status"] == "ok" and r["backbone"] == "vit_b16" for r in recs)
    by = {r["tuned"]: r for r in recs}
    assert by["block3-block5"]["cached"]  # the frozen prefix (embed, block0-2) computed once
    assert by["embed"]["n_trainable"] < by["all"]["n_trainable"]


def test_synthetic_vit_source_is_pretrained_through_realdata_pretrain(tmp_path, monkeypatch):
    """The task's built-in source model: a tiny ViT from realdata.pretrain's synthetic source
    preparation, cached under a name of its own (not the ResNet's) that loads into the task."""
    import json

    from realdata import pretrain
    from realdata.data.base import LoadRequest
    from realdata.data.synthetic_vit import TINY_VIT
    from realdata.tasks import get_task

    monkeypatch.setitem(pretrain.SOURCE_PRESETS, "quick",
                        {"train_n": 20, "epochs": 1, "lr": 0.05, "batch_size": 10})
    spec = get_task("synthetic-vit")
    req = LoadRequest(data_root=tmp_path, image_size=32)
    path = spec.prepare_source(req, tmp_path / "src")
    resnet = pretrain.prepare_synthetic_source(req, tmp_path / "src")
    assert path != resnet and path.is_file()
    assert json.loads(path.with_suffix(".json").read_text())["backbone_name"] == "vit_b16"
    load_checkpoint(build_backbone("vit_b16", spec.num_classes, **TINY_VIT), path)
    assert spec.prepare_source(req, tmp_path / "src") == path  # cached
