"""The vision tower's pretraining as one library call (14-pretrain-vision-tower): a fresh SiglipVisionModel of the
small video LLM's vision config, pretrained on the train split's frames with a task-agnostic objective
(embedded/vision_pretraining.py), saved with save_pretrained for train_vlm to load frozen; and its pooled features'
geometry on the validation split, where the objective was chosen."""
from __future__ import annotations

import time

import pandas as pd
import torch

from cacovid_lib.compare.token_geometry import token_geometry
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, save_model_folder
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.vision_pretraining import (
    VisionPretrainConfig, build_vision_tower, cell_features, config_dict, pretrain_vision_tower
)
from cacovid_lib.models.preprocess import llava_onevision_pixels


def split_pixels(split, image_size: int) -> torch.Tensor:
    """Every frame of every video of `split`, as the video LLM preprocesses it: (V*t, 3, S, S)."""
    return torch.cat([llava_onevision_pixels(frames, image_size) for frames in split.frames])


def pretrain_tower(world_dir, num_frames: int, model_cfg: SmallVLMConfig, cfg: VisionPretrainConfig,
                   tower_dir) -> tuple[pd.DataFrame, dict]:
    """Pretrain a fresh vision tower (seeded by cfg.seed) on the train split's frames, save it to `tower_dir`
    (save_pretrained, with the resolved configs) and measure its features pooled to video-token cells on the
    validation split (compare/token_geometry.py's three pair cosines). Returns the loss history and the metrics."""
    train = load_split(world_dir, "train", num_frames)
    pixels = split_pixels(train, model_cfg.image_size)  # (V*t, 3, S, S)
    tower = build_vision_tower(model_cfg, seed=cfg.seed)
    print(f"{sum(p.numel() for p in tower.parameters()) / 1e6:.3f} M parameters, {len(pixels)} training frames")
    start = time.time()
    history = pd.DataFrame(pretrain_vision_tower(tower, pixels, cfg))
    seconds = time.time() - start
    save_model_folder(tower, None, tower_dir, {"model": model_cfg.__dict__, "pretrain": config_dict(cfg)})
    val = load_split(world_dir, "val", num_frames)
    cells = cell_features(tower, split_pixels(val, model_cfg.image_size))  # (V*t, cells, C)
    geometry = token_geometry(cells.view(len(val.frames), -1, cells.shape[-1]), val.object_labels.reshape(len(val.frames), -1))
    metrics = {"objective": cfg.objective, "final_loss": float(history["loss"].tail(50).mean()),
               "train_seconds": round(seconds), **{f"val_{k}": v for k, v in geometry.items()}}
    return history, metrics


def pretraining_figure(history: pd.DataFrame, objective: str, window: int = 20):
    """The pretraining loss as a `window`-step rolling mean. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    ax = history.set_index("step")["loss"].rolling(window, min_periods=1).mean().plot(
        figsize=(6, 3.2), title=f"vision tower pretraining, {objective} ({window}-step mean)")
    ax.set_ylabel("loss")
    plt.tight_layout()
    return ax.figure
