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
# # 06 · Evaluate the CaCoVID policy at any retention ratio
# One trained policy, every retention ratio (METHOD §5). `imp_ratio` (the share of the budget given to the
# policy's per-frame top-k; the rest is an even fill) is chosen on the **validation** split from the
# candidates in params.yaml, then the test split is scored once per ratio, against random selection.

# %% tags=["parameters"]
world = {"num_frames": 8}
evaluate_policy = {"retention_ratios": [0.25, 0.1], "imp_ratio_candidates": [0.5, 1.0], "seed": 0, "timing_repeats": 5}
world_dir = "data/world"
model_dir = "models/small_vlm"
policy_dir = "models/policy"
metrics_dir = "reports/metrics"
tables_dir = "reports/tables"
figures_dir = "reports/figures"

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.embedded.split import load_split
from cacovid_lib.compare.evaluation import encode_split_videos, predict
from cacovid_lib.compare.keep import keep_all, random_keep_rule
from cacovid_lib.io_utils import save_figure, write_json_atomic, write_text_atomic
from cacovid_lib.method.policy import load_policy
from cacovid_lib.compare.cacovid import policy_keep_rule, selection_cost

vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=world["num_frames"])
policy = load_policy(policy_dir, vlm.model.model.language_model).eval()
val = load_split(world_dir, "val", world["num_frames"])
test = load_split(world_dir, "test", world["num_frames"])
ratios = evaluate_policy["retention_ratios"]
val_embeds, test_embeds = encode_split_videos(vlm, val), encode_split_videos(vlm, test)  # (V, N+1, D), once per split


def accuracy(split, embeds, rule, desc):
    return float(np.mean(predict(vlm, split, rule, desc=desc, video_embeds=embeds)[0] == split.answers))


# %% [markdown]
# ## imp_ratio, chosen on validation (mean accuracy over the retention ratios)

# %%
val_table = pd.DataFrame({imp: [accuracy(val, val_embeds, policy_keep_rule(vlm, policy, val.items, r, imp), f"val {imp} {r}") for r in ratios]
                          for imp in evaluate_policy["imp_ratio_candidates"]}, index=ratios)
imp_ratio = float(val_table.mean().idxmax())
print(f"imp_ratio = {imp_ratio} (validation accuracy by candidate: {val_table.mean().round(3).to_dict()})")

# %% [markdown]
# ## Test split: policy vs random selection at every ratio

# %%
full = accuracy(test, test_embeds, keep_all, "all tokens")
rows = []
for r in ratios:
    rows.append({"retention": r,
                 "cacovid": accuracy(test, test_embeds, policy_keep_rule(vlm, policy, test.items, r, imp_ratio), f"policy {r}"),
                 "random": accuracy(test, test_embeds, random_keep_rule(r, evaluate_policy["seed"]), f"random {r}")})
table = pd.DataFrame(rows).set_index("retention")
table["cacovid_share_of_full"] = table["cacovid"] / full
table.round(3)

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
table[["cacovid", "random"]].plot(ax=ax, marker="o", title="test accuracy vs retention")
ax.axhline(full, color="grey", ls=":", label="all tokens")
ax.set_xlabel("retention ratio")
ax.set_ylabel("accuracy")
ax.legend()
plt.tight_layout()
save_figure(fig, f"{figures_dir}/policy_retention.png")

# %% [markdown]
# ## Selection cost for one video, against one LLM forward with every video token

# %%
cost = selection_cost(vlm, policy, test.items[0], test_embeds[test.video_of_item[0]], 0.1, imp_ratio,
                      repeats=evaluate_policy["timing_repeats"])
print(f"selection {cost['selection_ms']:.2f} ms vs LLM forward {cost['llm_forward_all_tokens_ms']:.2f} ms "
      f"-> {cost['selection_share_of_forward']:.1%} of the forward")

# %%
metrics = {"accuracy_full": round(full, 4), "num_test": len(test), "imp_ratio": imp_ratio, **cost}
for r, row in table.iterrows():
    metrics[f"accuracy_at_{r:.2f}"] = round(float(row["cacovid"]), 4)
    metrics[f"random_accuracy_at_{r:.2f}"] = round(float(row["random"]), 4)
write_json_atomic(f"{metrics_dir}/policy.json", metrics)
write_text_atomic(f"{tables_dir}/policy.md", table.round(3).to_markdown() + "\n")
metrics
