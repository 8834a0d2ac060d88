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
# # 05 · Train the CaCoVID policy
# The combinatorial GRPO loop (`cacovid_lib/train_policy.py`, METHOD §3-4) on the blind-filtered training
# questions, rewarded by the frozen small video LLM's answers under every sampled token combination.
# The same training runs on several processes with
# `accelerate launch -m cacovid_lib.launch_policy_training` (see the README).

# %% tags=["parameters"]
world = {"num_frames": 8}
policy = {"train": {"steps": 10, "items_per_step": 2, "num_generations": 8, "num_iter_for_item": 5}, "reward": "multiple_choice"}
world_dir = "data/world"
model_dir = "models/small_vlm"
filtered_file = "data/filtered/train.json"
policy_dir = "models/policy"
plots_dir = "reports/plots"
figures_dir = "reports/figures"

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd

from cacovid_lib.io_utils import save_csv, save_figure
from cacovid_lib.pipeline.policy_training import train_policy_on_split
from cacovid_lib.method.train_loop import PolicyTrainConfig

cfg = PolicyTrainConfig(**policy["train"])
start = time.time()
trained, state = train_policy_on_split(model_dir, world_dir, world["num_frames"], cfg, policy_dir, items_file=filtered_file,
                                       reward=policy["reward"])
print(f"{cfg.steps} steps in {time.time() - start:.0f} s; policy saved to {policy_dir}")

# %% [markdown]
# Rewards are the mean answer accuracy of each mode's rollouts (content: density peaks, no policy;
# token: grouped rank-band samples of the policy; frame: the frame head's frames). The token-mode reward
# rises as the policy learns which tokens matter; the adaptive sample rate then lowers the budget.

# %%
history = pd.DataFrame(state.history)
save_csv(history, f"{plots_dir}/policy_training.csv")
smooth = history.set_index("step").rolling(25, min_periods=1).mean()
fig, (ax_r, ax_l) = plt.subplots(1, 2, figsize=(10, 3.2))
smooth[["reward_token", "reward_frame", "reward_content"]].plot(ax=ax_r, title="reward per mode (25-step mean)")
ax_r.set_ylabel("answer accuracy")
ax_s = ax_r.twinx()
smooth["sample_rate"].plot(ax=ax_s, color="grey", ls=":", label="sample rate r")
ax_s.set_ylabel("sample rate r")
smooth["loss"].plot(ax=ax_l, title="policy loss (25-step mean)")
ax_l.set_ylabel("loss")
plt.tight_layout()
save_figure(fig, f"{figures_dir}/policy_training.png")
