"""The small video LLM's training as one library call (02-train-video-llm): a fresh model trained on the world's
train split and saved with save_pretrained. (Its evaluation is video_llm_evaluation.py, so that this stage runs no
comparison code.)"""
from __future__ import annotations

import time

import pandas as pd

from cacovid_lib.embedded.small_vlm import (
    SmallVLMConfig, VLMTrainConfig, build_small_vlm, check_matches_world, config_dict, save_model_folder, train_small_vlm
)
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.tokenizer import build_tokenizer
from cacovid_lib.embedded.world import read_world_spec
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM


def train_video_llm(world_dir, num_frames: int, model_cfg: SmallVLMConfig, train_cfg: VLMTrainConfig,
                    model_dir) -> pd.DataFrame:
    """Build a fresh small video LLM (seeded by train_cfg.seed), train it on the world's train split and save it to
    `model_dir` (save_pretrained, with the resolved configs). Returns the loss history, one row per step."""
    spec = read_world_spec(world_dir)
    check_matches_world(model_cfg, spec)  # one line if not
    train = load_split(world_dir, "train", num_frames)
    tokenizer = build_tokenizer()
    model = build_small_vlm(tokenizer, model_cfg, seed=train_cfg.seed)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {len(train)} training questions")
    start = time.time()
    history = pd.DataFrame(train_small_vlm(LlavaOneVisionVideoLLM(model, tokenizer, num_frames), train, train_cfg))
    print(f"trained {train_cfg.steps} steps in {time.time() - start:.0f} s")
    save_model_folder(model, tokenizer, model_dir, {**config_dict(model_cfg, train_cfg), "num_frames": num_frames})
    return history


def vlm_training_figure(history: pd.DataFrame, curriculum_steps: int, vision_steps: int | None, window: int = 20):
    """The small video LLM's losses (embedded.small_vlm.train_small_vlm's history, one row per step) as `window`-step
    rolling means on a log scale, with the end of the token curriculum and the step the vision tower froze marked.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    smooth = history.set_index("step")[["answer_loss", "aux_loss"]].rolling(window, min_periods=1).mean()
    ax = smooth.plot(figsize=(6, 3.2), logy=True, title=f"small video LLM training ({window}-step mean)")
    ax.set_ylabel("loss")
    ax.axvline(curriculum_steps, color="grey", ls=":", lw=1, label="curriculum ends")
    if vision_steps is not None:
        ax.axvline(vision_steps, color="black", ls="--", lw=1, label="vision tower frozen")
    ax.legend(fontsize=8)
    plt.tight_layout()
    return ax.figure
