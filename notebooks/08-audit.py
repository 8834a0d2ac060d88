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
# # 08 · Contribution vs attention: which tokens actually answer the question?
# The paper's motivation (its Fig. 1): the tokens that receive attention are not the tokens that contribute to a
# correct answer. For sampled test items we measure each video token's contribution directly (drop it and see
# how much the probability of the correct option falls) and compare it with the scores methods rank by: the
# LLM's last-token attention (FastV), the vision encoder's attention (VisionZip), and the CaCoVID policy.

# %% tags=["parameters"]
world = {"num_frames": 8}
audit = {"num_items": 8, "fastv_layer": 1, "top_k": 12, "seed": 0}
world_dir = "data/world"
model_dir = "models/small_vlm"
policy_dir = "models/policy"
metrics_dir = "reports/metrics"
tables_dir = "reports/tables"
figures_dir = "reports/figures"

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.compare.audit import rank_agreement, token_score_maps
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import save_figure, write_json_atomic, write_text_atomic
from cacovid_lib.method.policy import load_policy

vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=world["num_frames"])
policy = load_policy(policy_dir, vlm.model.model.language_model).eval()
test = load_split(world_dir, "test", world["num_frames"])
idx = np.sort(np.random.default_rng(audit["seed"]).choice(len(test), audit["num_items"], replace=False))
items = [test.items[i] for i in idx]
pixels = torch.stack([vlm.preprocess(test.frames[v]) for v in test.video_of_item[idx]])  # (B, t, 3, S, S)
video_embeds = vlm.encode_video(pixels)  # (B, N+1, D)
target = torch.from_numpy(np.stack([test.object_labels[v].reshape(-1) == it["target_object"]
                                    for v, it in zip(test.video_of_item[idx], items)]))  # (B, N) tokens on the asked-about object

# %%
maps = token_score_maps(vlm, policy, items, test.answers[idx], video_embeds, pixels, audit["fastv_layer"])
maps["target_object"] = target.float()  # an oracle row: the generator's ground truth
table = rank_agreement(maps, target, audit["top_k"])
write_text_atomic(f"{tables_dir}/audit.md", f"{audit['num_items']} test items, {vlm.num_video_tokens} video tokens each; "
                  f"contribution = drop in log p(correct option) when the token is removed.\n\n" + table.round(3).to_markdown() + "\n")
write_json_atomic(f"{metrics_dir}/audit.json", {"num_items": audit["num_items"], **{
    f"{name}_{col}": round(float(v), 4) for name, row in table.iterrows() for col, v in row.items()}})
table.round(3)

# %% [markdown]
# ## One item, frame by frame: ground truth, contribution, and the three scores

# %%
t, h, w = vlm.grid
rows = ["target_object", "contribution", "policy", "llm_attention", "vision_attention"]
example = 0
fig, axes = plt.subplots(len(rows) + 1, t, figsize=(1.3 * t, 1.4 * (len(rows) + 1)))
for j in range(t):
    axes[0, j].imshow(test.frames[test.video_of_item[idx[example]]][j])
    axes[0, j].set_title(f"frame {j}", fontsize=7)
    for r, name in enumerate(rows, start=1):
        values = maps[name][example].view(t, h, w)
        axes[r, j].imshow(values[j], cmap="magma", vmin=float(values.min()), vmax=float(values.max()))
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
for r, name in enumerate(["video", *rows]):
    axes[r, 0].set_ylabel(name.replace("_", "\n"), fontsize=7)
fig.suptitle(f"{items[example]['problem']}  (answer {items[example]['solution']})", fontsize=8)
plt.tight_layout()
save_figure(fig, f"{figures_dir}/audit_heatmaps.png")
