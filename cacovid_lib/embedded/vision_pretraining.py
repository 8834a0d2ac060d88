"""Pretrain the small video LLM's vision tower (a `SiglipVisionModel`) on the world's frames with a task-agnostic
objective, before the projector and the LLM are trained on it frozen (issue 21).

Why: a tower trained on this task's answers alone learns only what the questions ask (the objects) and folds the
background and the clutter into one narrow cone (stage token_geometry); a real video LLM's encoder (SigLIP) is
pretrained on everything and keeps background regions, textures and clutter apart. Two objectives, both blind to
the questions and to the generator's labels:

- `contrastive`: dense instance discrimination at the video-token level. Two views of each frame (each hides a
  random share of its patches and adds pixel noise); the tower's features are pooled 2 x 2, as the video LLM pools its
  tokens, passed through a small head and matched across views by InfoNCE: a cell's positive is the same cell in the
  other view, its negatives every other cell of every frame in the batch. Its pressure towards uniformity on the
  sphere is what keeps unrelated cells apart (as SigLIP's image-text contrast does for images).
- `masked_patches`: masked-patch reconstruction (SimMIM / MAE style): a random share of the patches is hidden and a
  linear decoder predicts their pixels (each patch normalised, as MAE does) from the tower's features.

Which one the pipeline uses is chosen on validation (docs/recipe-findings.md, issue 21).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cacovid_lib.embedded.small_vlm import SmallVLMConfig, vision_config


@dataclass
class VisionPretrainConfig:
    """Recipe of the vision tower's pretraining."""

    objective: Literal["contrastive", "masked_patches"] = "contrastive"  # see the module docstring
    steps: int = 1500  # optimiser steps
    frames_per_step: int = 64  # frames per batch (the contrastive objective sees each in two views)
    lr: float = 1e-3  # peak learning rate (AdamW), linear warm-up then cosine decay to 10%
    warmup_steps: int = 100
    weight_decay: float = 0.05
    mask_ratio: float = 0.25  # share of each view's patches hidden (masked_patches: the patches to reconstruct)
    noise_std: float = 0.05  # std of the Gaussian pixel noise added to each view (pixels in [-1, 1])
    temperature: float = 0.1  # contrastive: InfoNCE temperature
    head_hidden: int = 128  # contrastive: hidden size of the projection head (dropped after pretraining); 0: no head,
    # the InfoNCE acts on the pooled features themselves (what the video LLM reads is then what was spread)
    seed: int = 0  # seeds init, batches, masks and noise
    threads: int | None = None  # torch CPU threads while training (None: torch's default)

    def __post_init__(self):
        if self.objective not in ("contrastive", "masked_patches"):
            raise ValueError(f"objective: {self.objective!r} is not valid; valid: contrastive, masked_patches")
        if not 0 <= self.mask_ratio < 1:
            raise ValueError(f"mask_ratio: {self.mask_ratio} must be in [0, 1)")


def patch_grid_side(tower) -> int:
    """Patches per side of the tower's input: image_size / patch_size."""
    cfg = tower.config
    return cfg.image_size // cfg.patch_size


def random_patch_mask(gen: torch.Generator, frames: int, patches: int, ratio: float) -> torch.Tensor:
    """(frames, patches) bool: `round(ratio * patches)` hidden patches per frame, drawn independently per frame."""
    k = int(round(ratio * patches))
    order = torch.rand(frames, patches, generator=gen).argsort(dim=1)[:, :k]  # (F, k)
    mask = torch.zeros(frames, patches, dtype=torch.bool)
    return mask.scatter_(1, order, True)


def hide_patches(pixels: torch.Tensor, mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Set the hidden patches of pixels (F, 3, S, S) to 0 (mid-grey after SigLIP's normalisation); mask (F, P) with
    P = (S / patch)^2 patches in row-major order."""
    side = pixels.shape[-1] // patch
    keep = (~mask).view(-1, 1, side, 1, side, 1).float()  # (F, 1, side, 1, side, 1)
    tiled = pixels.view(pixels.shape[0], 3, side, patch, side, patch)
    return (tiled * keep).view_as(pixels)


def patch_pixels(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """(F, 3, S, S) -> (F, P, patch*patch*3) each patch's pixels, row-major patches."""
    f, c, s, _ = pixels.shape
    side = s // patch
    tiled = pixels.view(f, c, side, patch, side, patch).permute(0, 2, 4, 3, 5, 1)  # (F, side, side, p, p, 3)
    return tiled.reshape(f, side * side, patch * patch * c)


def pool_cells(features: torch.Tensor, side: int) -> torch.Tensor:
    """Mean over 2 x 2 patches, as the video LLM pools its tokens: (F, side*side, C) -> (F, (side/2)^2, C)."""
    f, _, c = features.shape
    grid = features.view(f, side // 2, 2, side // 2, 2, c)
    return grid.mean(dim=(2, 4)).reshape(f, -1, c)


def tower_features(tower, pixels: torch.Tensor) -> torch.Tensor:
    """The features the video LLM reads (its vision_feature_layer -1: the last encoder layer's hidden states, before
    the post-layernorm): (F, 3, S, S) -> (F, P, C)."""
    return tower(pixels, output_hidden_states=True).hidden_states[-1]


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE between two views: a, b (M, E) embeddings of the same M cells; row i of a is positive with row
    i of b and negative with every other row. Returns the mean of both directions' cross-entropy."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature  # (M, M)
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def masked_patch_loss(predicted: torch.Tensor, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the hidden patches' pixels, each patch normalised to zero mean and unit variance (MAE's
    target): predicted and pixels (F, P, p*p*3), mask (F, P) bool (no hidden patch at all gives 0)."""
    mean, var = pixels.mean(-1, keepdim=True), pixels.var(-1, keepdim=True)
    target = (pixels - mean) / (var + 1e-6).sqrt()
    per_patch = ((predicted - target) ** 2).mean(-1)  # (F, P)
    return (per_patch * mask).sum() / mask.sum().clamp(min=1)


def _lr_at(step: int, cfg: VisionPretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain_vision_tower(tower, pixels: torch.Tensor, cfg: VisionPretrainConfig) -> list[dict]:
    """Train `tower` (a SiglipVisionModel) in place on frames `pixels` (F, 3, S, S), SigLIP-normalised. The heads
    (projection head or pixel decoder) are dropped afterwards. Returns the loss history, one row per step."""
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or threads)
    try:
        return _pretrain(tower, pixels, cfg)
    finally:
        torch.set_num_threads(threads)


def _pretrain(tower, pixels: torch.Tensor, cfg: VisionPretrainConfig) -> list[dict]:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    patch, side = tower.config.patch_size, patch_grid_side(tower)
    hidden = tower.config.hidden_size
    if cfg.objective == "contrastive" and cfg.head_hidden == 0:
        head = torch.nn.Identity()
    elif cfg.objective == "contrastive":
        head = torch.nn.Sequential(torch.nn.Linear(hidden, cfg.head_hidden), torch.nn.GELU(),
                                   torch.nn.Linear(cfg.head_hidden, cfg.head_hidden))
    else:
        head = torch.nn.Linear(hidden, patch * patch * 3)  # pixel decoder
    params = list(tower.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    tower.train()
    history = []
    bar = tqdm(range(cfg.steps), desc=f"pretrain vision tower ({cfg.objective})", mininterval=5)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        # batch: random frames of random videos
        batch = pixels[torch.from_numpy(rng.choice(len(pixels), cfg.frames_per_step, replace=False))]  # (F, 3, S, S)
        n, patches = len(batch), side * side
        if cfg.objective == "contrastive":
            # two views: different hidden patches, different noise; matched cell by cell
            views = [hide_patches(batch, random_patch_mask(gen, n, patches, cfg.mask_ratio), patch)
                     + cfg.noise_std * torch.randn(batch.shape, generator=gen) for _ in range(2)]
            cells = pool_cells(tower_features(tower, torch.cat(views)), side)  # (2F, cells, C)
            embedded = head(cells).flatten(0, 1)  # (2F*cells, E)
            a, b = embedded.chunk(2)
            loss = info_nce(a, b, cfg.temperature)
        else:
            # hide patches, predict their pixels from the features
            mask = random_patch_mask(gen, n, patches, cfg.mask_ratio)  # (F, P)
            view = hide_patches(batch, mask, patch) + cfg.noise_std * torch.randn(batch.shape, generator=gen)
            loss = masked_patch_loss(head(tower_features(tower, view)), patch_pixels(batch, patch), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        history.append({"step": step, "loss": loss.item(), "lr": _lr_at(step, cfg)})
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    tower.eval()
    return history


@torch.no_grad()
def cell_features(tower, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The tower's features pooled to video-token cells: (F, 3, S, S) -> (F, cells, C)."""
    side = patch_grid_side(tower)
    return torch.cat([pool_cells(tower_features(tower, pixels[i:i + batch_size]), side)
                      for i in range(0, len(pixels), batch_size)])


def build_vision_tower(model_cfg: SmallVLMConfig, seed: int = 0):
    """A randomly initialised SiglipVisionModel of the small video LLM's vision config (the same tower
    small_vlm.build_small_vlm builds inside LlavaOnevision)."""
    from transformers import SiglipVisionModel

    torch.manual_seed(seed)
    return SiglipVisionModel(vision_config(model_cfg))


def config_dict(cfg: VisionPretrainConfig) -> dict:
    return asdict(cfg)
