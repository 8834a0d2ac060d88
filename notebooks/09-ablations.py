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
# # 09 · Ablations: one setting changed at a time
# Short policy trainings from the same seed, each differing from a base recipe in one setting (the paper's
# ablations: sampling modes, grouped rank-band vs independent Bernoulli sampling, group size, group probability
# cap, number of rollouts), scored on the **validation** split. The token-mode reward per step shows how fast
# each variant learns (the paper's convergence claim); `imp_ratio` is ablated at inference on the main policy.

# %% tags=["parameters"]
world = {"num_frames": 8}
ablations = {"train": {"steps": 10, "items_per_step": 2, "num_generations": 8, "num_iter_for_item": 5},
             "train_items": 40, "retention_ratios": [0.1], "imp_ratios": [0.5, 1.0],
             "variants": {"sampler": {"grouped": {}, "independent": {"sampler": "independent"}}}}
world_dir = "data/world"
model_dir = "models/small_vlm"
filtered_file = "data/filtered/train.json"
policy_dir = "models/policy"
policy_metrics = "reports/metrics/policy.json"
metrics_dir = "reports/metrics"
tables_dir = "reports/tables"
plots_dir = "reports/plots"
figures_dir = "reports/figures"

# %%
import json
import time

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display
from tqdm import tqdm

from cacovid_lib.pipeline.ablations import ablation_runs, run_name, train_variant, validation_accuracy
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.embedded.split import load_split
from cacovid_lib.compare.evaluation import encode_split_videos
from cacovid_lib.io_utils import save_csv, save_figure, write_json_atomic, write_text_atomic
from cacovid_lib.method.policy import load_policy
from cacovid_lib.pipeline.policy_training import PolicyTask
from cacovid_lib.method.train_loop import PolicyTrainConfig

vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=world["num_frames"])
for p in vlm.model.parameters():
    p.requires_grad_(False)
base = PolicyTrainConfig(**ablations["train"])
imp_ratio = json.load(open(policy_metrics))["imp_ratio"]  # chosen on validation by stage 06
train = load_split(world_dir, "train", world["num_frames"], limit=ablations["train_items"], items_file=filtered_file)
val = load_split(world_dir, "val", world["num_frames"])
val_embeds = encode_split_videos(vlm, val)
task = PolicyTask(vlm, train)
ratios = ablations["retention_ratios"]

# %% [markdown]
# ## Training: every distinct run once (the base recipe is shared by all ablations)

# %%
runs = ablation_runs(ablations["variants"])
results, histories = {}, []
for name, overrides in tqdm(runs.items(), desc="ablation runs", mininterval=5):
    start = time.time()
    policy, history = train_variant(task, base, overrides)
    accuracy = validation_accuracy(vlm, policy, val, val_embeds, ratios, imp_ratio)
    tail = history["reward_token"].tail(max(1, len(history) // 5)).mean()
    results[name] = {**{f"val_accuracy_at_{r:.2f}": round(a, 4) for r, a in accuracy.items()},
                     "final_token_reward": round(float(tail), 4), "train_s": round(time.time() - start, 1)}
    histories.append(history.assign(run=name)[["run", "step", "reward_token", "reward_frame", "reward_content", "loss"]])
    print(name, results[name])
save_csv(pd.concat(histories), f"{plots_dir}/ablations.csv")

# %% [markdown]
# ## One table per ablation

# %%
tables = {}
for ablation, variants in ablations["variants"].items():
    tables[ablation] = pd.DataFrame({variant: results[run_name(o)] for variant, o in variants.items()}).T.rename_axis(ablation)

# inference-time ablation: the share of the budget given to the policy's per-frame top-k (the rest: an even fill)
main_policy = load_policy(policy_dir, vlm.model.model.language_model).eval()
tables["imp_ratio"] = pd.DataFrame({imp: {f"val_accuracy_at_{r:.2f}": round(a, 4) for r, a in validation_accuracy(
    vlm, main_policy, val, val_embeds, ratios, imp).items()} for imp in ablations["imp_ratios"]}).T.rename_axis("imp_ratio")
text = [f"Validation accuracy of short policy runs ({base.steps} steps, G = {base.num_generations} unless varied, "
        f"{len(train)} training questions); `final_token_reward` = mean token-mode reward over the last fifth of training. "
        f"imp_ratio: the main policy at inference."]
for ablation, table in tables.items():
    text += ["", f"### {ablation}", "", table.to_markdown()]
write_text_atomic(f"{tables_dir}/ablations.md", "\n".join(text) + "\n")
write_json_atomic(f"{metrics_dir}/ablations.json", {a: t.to_dict(orient="index") for a, t in tables.items()})
for ablation, table in tables.items():
    display(table)

# %% [markdown]
# ## Convergence: token-mode reward per step, one panel per ablation

# %%
curves = pd.concat(histories)
fig, axes = plt.subplots(1, len(ablations["variants"]), figsize=(4 * len(ablations["variants"]), 3.2), squeeze=False)
for ax, (ablation, variants) in zip(axes[0], ablations["variants"].items()):
    for variant, overrides in variants.items():
        run = curves[curves["run"] == run_name(overrides)].set_index("step")["reward_token"]
        run.rolling(20, min_periods=1).mean().plot(ax=ax, label=str(variant))
    ax.set_title(ablation)
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
axes[0, 0].set_ylabel("token-mode reward (20-step mean)")
plt.tight_layout()
save_figure(fig, f"{figures_dir}/ablations.png")
