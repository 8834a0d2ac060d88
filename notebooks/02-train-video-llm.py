# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Train the small video LLM
# A real `LlavaOnevisionForConditionalGeneration` (small SigLIP + small Qwen2) with a word-level
# tokenizer, trained from scratch on the world's train split, saved with `save_pretrained`.
# The recipe (projector alignment to word embeddings, option-text answers, token dropout) is
# documented in `cacovid_lib/small_vlm.py`.

# %% tags=["parameters"]
world = {"num_frames": 8}
vlm = {"model": {}, "train": {"steps": 20, "batch_size": 8}}
world_dir = "data/world"
model_dir = "models/small_vlm"
plots_dir = "reports/plots"
figures_dir = "reports/figures"

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd

from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import save_csv, save_figure
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig, build_small_vlm, config_dict, save_model_folder, train_small_vlm
from cacovid_lib.embedded.tokenizer import build_tokenizer

model_cfg, train_cfg = SmallVLMConfig(**vlm["model"]), VLMTrainConfig(**vlm["train"])
train = load_split(world_dir, "train", world["num_frames"])
tokenizer = build_tokenizer()
model = build_small_vlm(tokenizer, model_cfg, seed=train_cfg.seed)
print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {len(train)} training questions")

# %%
start = time.time()
history = pd.DataFrame(train_small_vlm(LlavaOneVisionVideoLLM(model, tokenizer, world["num_frames"]), train, train_cfg))
print(f"trained {train_cfg.steps} steps in {time.time() - start:.0f} s")
save_model_folder(model, tokenizer, model_dir, {**config_dict(model_cfg, train_cfg), "num_frames": world["num_frames"]})

# %%
save_csv(history, f"{plots_dir}/vlm_training.csv")
smooth = history.set_index("step")[["answer_loss", "aux_loss"]].rolling(20, min_periods=1).mean()
ax = smooth.plot(figsize=(6, 3.2), logy=True, title="small video LLM training (20-step mean)")
ax.set_ylabel("loss")
ax.axvline(train_cfg.curriculum_steps, color="grey", ls=":", lw=1, label="curriculum ends")
if train_cfg.vision_steps is not None:
    ax.axvline(train_cfg.vision_steps, color="black", ls="--", lw=1, label="vision tower frozen")
ax.legend(fontsize=8)
plt.tight_layout()
save_figure(ax.figure, f"{figures_dir}/vlm_training.png")
