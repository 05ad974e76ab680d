"""Vision transformer (ViT) in timm's or OpenAI CLIP's ``state_dict`` layout.

One architecture (pre-norm transformer on 16x16 patches plus a class token), two key layouts, so a
local checkpoint of either family loads by path (``--checkpoint PATH``):

``layout="timm"`` (``vit_base_patch16_224``; LayerNorm eps 1e-6, GELU)::

    cls_token (1, 1, D)   pos_embed (1, 1 + N, D)   patch_embed.proj.{weight (D, 3, P, P), bias}
    blocks.{i}.norm1.*    blocks.{i}.attn.qkv.{weight (3D, D), bias}   blocks.{i}.attn.proj.*
    blocks.{i}.norm2.*    blocks.{i}.mlp.fc1.{weight (4D, D), bias}    blocks.{i}.mlp.fc2.*
    norm.*                head.{weight (K, D), bias}

``layout="clip"`` (the ``visual.`` tower of OpenAI CLIP ViT-B/16; LayerNorm eps 1e-5, QuickGELU)::

    class_embedding (D,)  positional_embedding (1 + N, D)  conv1.weight (D, 3, P, P) (no bias)
    ln_pre.*   transformer.resblocks.{i}.ln_1.*  ...attn.in_proj_weight (3D, D), in_proj_bias (3D,)
    ...attn.out_proj.*    ...ln_2.*  ...mlp.c_fc.{weight (4D, D), bias}  ...mlp.c_proj.*
    ln_post.*  proj (D, E)  head.{weight (K, E), bias}

CLIP has no classification head: ``head`` is ours (a linear layer on the ``E = 512`` image
embedding). Loading a CLIP file (:meth:`VisionTransformer.adapt_state_dict`, called by
:func:`realdata.models.load_checkpoint`) keeps only the ``visual.`` keys (the text tower shares key
names such as ``transformer.resblocks.*`` and is dropped) and, when the file has no ``head.*``,
sets the head to zeros (every class equally likely until tuned; deterministic). A checkpoint whose
position embedding has another grid (pretrained at 224 px, used at 96 px) is resampled bicubically;
a checkpoint for another patch size is refused with a one-line error naming the fix.

Blocks (the paper's ViT options are ranges of them): ``embed`` (patch projection, class token,
position embedding, and CLIP's ``ln_pre``), ``block0 .. block{depth-1}`` (one transformer layer
each), ``head`` (final LayerNorm, CLIP's ``proj``, the classifier). The paper's options "embedding",
"first 3 blocks", "last 3 blocks", "last layer" are ``embed``, ``block0-block2``,
``block9-block11`` and ``head`` (:data:`PAPER_VIT_OPTIONS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from realdata.models.base import Backbone, Normalize, Stage
from realdata.models.blocks import BlockMap
from realdata.models.checkpoint import CheckpointMismatchError

__all__ = ["CLIP_MEAN", "CLIP_STD", "PAPER_VIT_OPTIONS", "VisionTransformer"]

#: OpenAI CLIP's input normalization.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: timm's ``vit_base_patch16_224`` (augreg) normalization.
TIMM_MEAN = (0.5, 0.5, 0.5)
TIMM_STD = (0.5, 0.5, 0.5)

#: The paper's tuned options for ViT-B/16 (depth 12), plus ``none`` and ``all``.
PAPER_VIT_OPTIONS = ("none", "embed", "block0-block2", "block9-block11", "head", "all")

Layout = Literal["timm", "clip"]


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _attention(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head self-attention before the output projection: ``(B, T, D) -> (B, T, D)``;
    ``w (3D, D)``, ``b (3D,)`` stack the query, key and value projections (both layouts)."""
    bsz, t, d = x.shape
    qkv = F.linear(x, w, b).view(bsz, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    return out.transpose(1, 2).reshape(bsz, t, d)


class _TimmAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(_attention(x, self.qkv.weight, self.qkv.bias, self.heads))


class _ClipAttention(nn.Module):
    """Parameters named as ``nn.MultiheadAttention`` (CLIP's), computed like the timm one."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(_attention(x, self.in_proj_weight, self.in_proj_bias, self.heads))


class _TimmBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _TimmAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _ClipBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = _ClipAttention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(dim, hidden))
        self.mlp.add_module("gelu", _QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(Backbone):
    """ViT on ``image_size`` images in ``patch_size`` patches (see module docstring).

    Args:
        layout: ``"timm"`` or ``"clip"`` (parameter names and the small differences above).
        image_size: input side in pixels (a multiple of ``patch_size``).
        patch_size: patch side (16 for ViT-B/16).
        embed_dim: token width ``D`` (768 for ViT-B).
        depth: transformer layers (12 for ViT-B).
        heads: attention heads (``embed_dim`` must be divisible by it; 12 for ViT-B).
        mlp_ratio: MLP hidden width / ``D`` (4).
        output_dim: CLIP's image-embedding width ``E`` (512 for ViT-B/16; ignored for timm).
        num_classes: outputs of the classifier ``head``.
        mean, std: input normalization (default: the layout's).

    Tiny test version: ``image_size=32, patch_size=8, embed_dim=16, depth=4, heads=2``.
    """

    def __init__(
        self,
        layout: Layout = "timm",
        image_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        output_dim: int = 512,
        num_classes: int = 1000,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if layout not in ("timm", "clip"):
            raise ValueError(f"layout must be 'timm' or 'clip'; got {layout!r}")
        if patch_size < 1 or image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be a multiple of patch_size "
                             f"({patch_size})")
        if depth < 1 or heads < 1 or embed_dim % heads:
            raise ValueError(f"need depth >= 1 and embed_dim ({embed_dim}) divisible by heads "
                             f"({heads})")
        self.layout, self.patch_size, self.image_size = layout, patch_size, image_size
        self.depth = depth
        grid = image_size // patch_size
        d = embed_dim
        if mean is None and std is None:
            mean, std = (TIMM_MEAN, TIMM_STD) if layout == "timm" else (CLIP_MEAN, CLIP_STD)
        self.normalize = Normalize(mean, std)
        if layout == "timm":
            self.patch_embed = nn.Module()
            self.patch_embed.proj = nn.Conv2d(3, d, patch_size, stride=patch_size)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
            self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 1 + grid * grid, d))
            self.blocks = nn.ModuleList(_TimmBlock(d, heads, mlp_ratio) for _ in range(depth))
            self.norm = nn.LayerNorm(d, eps=1e-6)
            self.head = nn.Linear(d, num_classes)
        else:
            scale = d ** -0.5
            self.conv1 = nn.Conv2d(3, d, patch_size, stride=patch_size, bias=False)
            self.class_embedding = nn.Parameter(scale * torch.randn(d))
            self.positional_embedding = nn.Parameter(scale * torch.randn(1 + grid * grid, d))
            self.ln_pre = nn.LayerNorm(d)
            self.transformer = nn.Module()
            self.transformer.resblocks = nn.ModuleList(
                _ClipBlock(d, heads, mlp_ratio) for _ in range(depth))
            self.ln_post = nn.LayerNorm(d)
            self.proj = nn.Parameter(scale * torch.randn(d, output_dim))
            self.head = nn.Linear(output_dim, num_classes)

    # ------------------------------------------------------------------ forward as stages

    def _layers(self) -> nn.ModuleList:
        return self.blocks if self.layout == "timm" else self.transformer.resblocks

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [0, 1] -> tokens ``(B, 1 + N, D)``."""
        x = self.normalize(x)
        if self.layout == "timm":
            t = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
            cls = self.cls_token.expand(t.shape[0], -1, -1)
            return torch.cat([cls, t], 1) + self.pos_embed
        t = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(t.dtype).expand(t.shape[0], 1, -1)
        return self.ln_pre(torch.cat([cls, t], 1) + self.positional_embedding)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, 1 + N, D)`` -> logits ``(B, K)`` (class token)."""
        if self.layout == "timm":
            return self.head(self.norm(x)[:, 0])
        return self.head(self.ln_post(x[:, 0]) @ self.proj)

    def stages(self) -> list[Stage]:
        layers = self._layers()
        return [("embed", self._embed),
                *((f"block{i}", layers[i]) for i in range(self.depth)),
                ("head", self._head)]

    def block_map(self) -> BlockMap:
        if self.layout == "timm":
            embed: tuple[str, ...] = ("patch_embed", "cls_token", "pos_embed")
            head: tuple[str, ...] = ("norm", "head")
            prefix = "blocks"
        else:
            embed = ("conv1", "class_embedding", "positional_embedding", "ln_pre")
            head = ("ln_post", "proj", "head")
            prefix = "transformer.resblocks"
        return {"embed": embed, **{f"block{i}": (f"{prefix}.{i}",) for i in range(self.depth)},
                "head": head}

    # ------------------------------------------------------------------ checkpoints

    def adapt_state_dict(self, sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fit a loaded ``state_dict`` of this layout to this model (see module docstring).

        Raises:
            CheckpointMismatchError: patch size differs (one line naming the fix).
        """
        sd = dict(sd)
        if self.layout == "clip" and any(k.startswith("visual.") for k in sd):
            sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
        pkey = "patch_embed.proj.weight" if self.layout == "timm" else "conv1.weight"
        if pkey in sd and sd[pkey].ndim == 4 and sd[pkey].shape[-1] != self.patch_size:
            got = sd[pkey].shape[-1]
            raise CheckpointMismatchError(
                f"checkpoint is a ViT with patch size {got} but the model has patch size "
                f"{self.patch_size}; build it with --backbone-kwargs '{{\"patch_size\": {got}}}'")
        pos = "pos_embed" if self.layout == "timm" else "positional_embedding"
        mine = getattr(self, pos)
        if pos in sd and sd[pos].shape != mine.shape and sd[pos].shape[-1] == mine.shape[-1]:
            sd[pos] = _resample_positions(sd[pos], mine.shape)
        if self.layout == "clip" and not any(k.startswith("head.") for k in sd):
            sd["head.weight"] = torch.zeros_like(self.head.weight)
            sd["head.bias"] = torch.zeros_like(self.head.bias)
        return sd


def _resample_positions(pos: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Resample a ``(.., 1 + n*n, D)`` position table to ``shape`` (class token kept; the patch
    grid resized bicubically)."""
    flat = pos.reshape(-1, pos.shape[-1])
    n_old, n_new = flat.shape[0] - 1, math.prod(shape) // shape[-1] - 1
    g_old, g_new = math.isqrt(n_old), math.isqrt(n_new)
    if g_old * g_old != n_old or g_new * g_new != n_new:
        raise CheckpointMismatchError(
            f"position embedding of {n_old} patches is not a square grid; cannot resample to "
            f"{n_new}")
    grid = flat[1:].reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(g_new, g_new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(g_new * g_new, -1).to(pos.dtype)
    return torch.cat([flat[:1], grid]).reshape(shape)
