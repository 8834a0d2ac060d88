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
# # 07 · Benchmark: CaCoVID against five baselines at every retention ratio, and their cost
# Every method selects exactly `floor(ρ·N)` video tokens from the same inputs (cacovid_lib/baselines.py names
# each method's paper and simplifications). The test split is scored once per method and ratio; no method is
# tuned on it (CaCoVID's `imp_ratio` was chosen on validation by stage 06; the baselines use their papers'
# defaults). Then the cost of each method for one video: selection time, LLM prefill time, peak memory,
# and an analytic prefill-FLOPs model for LLaVA-OneVision-7B at 32 frames.

# %% tags=["parameters"]
world = {"num_frames": 8}
benchmark = {"retention_ratios": [0.25, 0.1], "fastv_layer": 1, "temporal_merge_threshold": 0.9,
             "visionzip_dominant_share": 0.84375, "seed": 0, "efficiency_ratio": 0.1, "timing_repeats": 5,
             "flops_frames": 32, "flops_tokens_per_frame": 196, "flops_text_tokens": 128}
world_dir = "data/world"
model_dir = "models/small_vlm"
policy_dir = "models/policy"
policy_metrics = "reports/metrics/policy.json"
metrics_dir = "reports/metrics"
tables_dir = "reports/tables"
plots_dir = "reports/plots"
figures_dir = "reports/figures"

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare import baselines
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.embedded.split import load_split
from cacovid_lib.compare.efficiency import QWEN2_7B, flops_table, median_ms, peak_memory_mb
from cacovid_lib.compare.keep import Selection, keep_all, random_keep_rule
from cacovid_lib.compare.evaluation import accuracy_table, encode_split_videos, predict
from cacovid_lib.io_utils import save_csv, save_figure, write_json_atomic, write_text_atomic
from cacovid_lib.method.policy import load_policy
from cacovid_lib.compare.cacovid import policy_keep_rule

torch.manual_seed(benchmark["seed"])
vlm = LlavaOneVisionVideoLLM.from_pretrained(model_dir, num_frames=world["num_frames"])
policy = load_policy(policy_dir, vlm.model.model.language_model).eval()
imp_ratio = json.load(open(policy_metrics))["imp_ratio"]  # chosen on the validation split by stage 06
test = load_split(world_dir, "test", world["num_frames"])
test_embeds = encode_split_videos(vlm, test)  # (V, N+1, D), once for every method
ratios = benchmark["retention_ratios"]
layer = benchmark["fastv_layer"]

def make_methods(llm_attention=None, vision_attention=None):
    """name -> retention ratio -> keep rule over the test split; the attention-based baselines compute their scores
    per call unless given shared ones."""
    return {
        "CaCoVID": lambda r: policy_keep_rule(vlm, policy, test.items, r, imp_ratio),
        "Random": lambda r: random_keep_rule(r, benchmark["seed"]),
        "Uniform": lambda r: baselines.uniform_rule(vlm, r),
        "FastV": lambda r: baselines.fastv_rule(vlm, test.items, r, layer, inside_llm=True, scores=llm_attention),
        "FastV (input)": lambda r: baselines.fastv_rule(vlm, test.items, r, layer, inside_llm=False, scores=llm_attention),
        "VisionZip": lambda r: baselines.visionzip_rule(vlm, test, r, benchmark["visionzip_dominant_share"],
                                                        scores=vision_attention),
        "DivPrune": lambda r: baselines.divprune_rule(r),
        "Temporal merge": lambda r: baselines.temporal_merge_rule(vlm, test.items, r, benchmark["temporal_merge_threshold"],
                                                                 layer, scores=llm_attention),
    }


# the sweep: the scores a baseline ranks by do not depend on the ratio, so each batch's are computed once
METHODS = make_methods(baselines.remembered(baselines.last_token_scores(vlm, test.items, layer)),
                       baselines.remembered(baselines.vision_scores(vlm, test)))

# %% [markdown]
# ## The sweep: every method × retention ratio on the test split

# %%
def scored(rule, desc):
    preds, _ = predict(vlm, test, rule, desc=desc, video_embeds=test_embeds)
    return accuracy_table(test, preds)["accuracy"]


upper = scored(keep_all, "all tokens")
rows = [{"method": "All tokens", "retention": 1.0, **upper.to_dict()}]
for name, make_rule in METHODS.items():
    for r in ratios:
        rows.append({"method": name, "retention": r, **scored(make_rule(r), f"{name} {r}").to_dict()})
sweep = pd.DataFrame(rows)
sweep["share_of_upper_bound"] = sweep["overall"] / upper["overall"]
types = [c for c in upper.index if c != "overall"]

# %%
main = sweep.rename(columns={"overall": "average"})[["retention", "method", *types, "average", "share_of_upper_bound"]]
main = main.sort_values(["retention", "average"], ascending=[False, False], kind="stable").reset_index(drop=True)
save_csv(main.round(4), f"{tables_dir}/main.csv")
shown = main.assign(**{c: (main[c] * 100).round(1) for c in [*types, "average", "share_of_upper_bound"]})
write_text_atomic(f"{tables_dir}/main.md", "Test accuracy (%) by question type; `share_of_upper_bound` = average / all-token "
                  "average (%).\n\n" + shown.to_markdown(index=False) + "\n")
shown

# %%
curve = sweep[sweep["method"] != "All tokens"].pivot(index="retention", columns="method", values="overall")
save_csv(curve.reset_index(), f"{plots_dir}/benchmark.csv")
fig, ax = plt.subplots(figsize=(6.5, 4))
for name in METHODS:
    ax.plot(curve.index, curve[name], marker="o", lw=2.5 if name == "CaCoVID" else 1.2, label=name)
ax.axhline(upper["overall"], color="grey", ls=":", label="all tokens")
ax.set_xlabel("retention ratio")
ax.set_ylabel("test accuracy")
ax.set_title("accuracy vs retention, test split")
ax.legend(fontsize=8, ncol=2)
plt.tight_layout()
save_figure(fig, f"{figures_dir}/benchmark_retention.png")

# %%
metrics = {"accuracy_all_tokens": round(float(upper["overall"]), 4), "num_test": len(test), "methods": {}}
for name in METHODS:
    part = sweep[sweep["method"] == name]
    metrics["methods"][name] = {f"{r:.2f}": {"accuracy": round(float(a), 4), "share_of_upper_bound": round(float(s), 4)}
                                for r, a, s in zip(part["retention"], part["overall"], part["share_of_upper_bound"])}
for r in (0.10, 0.05):
    key = f"{r:.2f}"
    if key in metrics["methods"]["CaCoVID"]:
        best_other = max((m[key]["accuracy"], name) for name, m in metrics["methods"].items() if name != "CaCoVID")
        metrics[f"cacovid_margin_at_{key}"] = round(metrics["methods"]["CaCoVID"][key]["accuracy"] - best_other[0], 4)
        metrics[f"best_baseline_at_{key}"] = best_other[1]
write_json_atomic(f"{metrics_dir}/benchmark.json", metrics)
{k: v for k, v in metrics.items() if k != "methods"}

# %% [markdown]
# ## Efficiency for one video at `efficiency_ratio`: selection time, LLM prefill, peak memory
# Medians over `timing_repeats` after warm-up, one process on this machine. The prefill is one forward over the
# prompt with the kept tokens (FastV: every token through its first layers, then the kept ones).
# Our FastV and temporal merge re-run the whole LLM (eager attention) for their attention scores, and VisionZip re-runs the
# vision encoder; fused implementations get these from the forward they are part of.

# %%
r = benchmark["efficiency_ratio"]
item_idx = np.array([0])
embeds = test_embeds[test.video_of_item[item_idx]]  # (1, N+1, D)
prompt = vlm.prompt(test.items[0])


def prefill(selection):
    sel = selection if isinstance(selection, Selection) else Selection(selection)
    video = embeds if sel.video_embeds is None else sel.video_embeds
    if sel.prune_after_layer is not None:
        return vlm.forward_pruned_inside([vlm.assemble(prompt, video[0], torch.ones_like(sel.keeps[0]))],
                                         [len(prompt.prefix_ids)], sel.keeps, sel.prune_after_layer)
    return vlm.forward_sequences([vlm.assemble(prompt, video[0], sel.keeps[0])])


with torch.no_grad():
    full_ms = median_ms(lambda: prefill(keep_all(item_idx, embeds)), benchmark["timing_repeats"])
    rows = [{"method": "All tokens", "selection_ms": 0.0, "prefill_ms": full_ms,
             "peak_memory_mb": peak_memory_mb(lambda: prefill(keep_all(item_idx, embeds)), vlm.device)}]
    for name, make_rule in make_methods().items():  # nothing shared: every timed call computes its scores
        rule = make_rule(r)
        selection = rule(item_idx, embeds)
        rows.append({"method": name, "selection_ms": median_ms(lambda: rule(item_idx, embeds), benchmark["timing_repeats"]),
                     "prefill_ms": median_ms(lambda: prefill(selection), benchmark["timing_repeats"]),
                     "peak_memory_mb": peak_memory_mb(lambda: prefill(rule(item_idx, embeds)), vlm.device)})
efficiency = pd.DataFrame(rows)
efficiency["total_ms"] = efficiency["selection_ms"] + efficiency["prefill_ms"]
efficiency["selection_share_of_full_prefill"] = efficiency["selection_ms"] / full_ms
efficiency = efficiency.round(3)
efficiency

# %% [markdown]
# ## Analytic prefill FLOPs: LLaVA-OneVision-7B (Qwen2-7B) at 32 frames
# FastV's FLOPs count adapted to grouped-query attention and SwiGLU (cacovid_lib/efficiency.py). "with policy"
# adds CaCoVID's one policy layer over the full prompt.

# %%
video_tokens = benchmark["flops_frames"] * benchmark["flops_tokens_per_frame"]
flops = pd.DataFrame(flops_table(QWEN2_7B, video_tokens, benchmark["flops_text_tokens"], ratios)).round(3)
flops

# %%
save_csv(efficiency, f"{tables_dir}/efficiency.csv")
save_csv(flops, f"{tables_dir}/flops_llava_ov_7b.csv")
write_text_atomic(f"{tables_dir}/efficiency.md",
                  f"One test video at retention {r}, this machine ({vlm.device}), medians of {benchmark['timing_repeats']} runs.\n\n"
                  + efficiency.to_markdown(index=False)
                  + f"\n\nAnalytic prefill FLOPs, LLaVA-OneVision-7B, {benchmark['flops_frames']} frames x "
                  f"{benchmark['flops_tokens_per_frame']} tokens + {benchmark['flops_text_tokens']} text tokens:\n\n"
                  + flops.to_markdown(index=False) + "\n")
by_method = efficiency.set_index("method")
write_json_atomic(f"{metrics_dir}/efficiency.json", {
    "retention": r, "full_prefill_ms": round(full_ms, 3),
    "selection_ms": by_method["selection_ms"].drop("All tokens").to_dict(),
    "cacovid_selection_share_of_full_prefill": float(by_method.loc["CaCoVID", "selection_share_of_full_prefill"]),
    "cacovid_faster_than_divprune": bool(by_method.loc["CaCoVID", "selection_ms"] < by_method.loc["DivPrune", "selection_ms"]),
    "llava_ov_7b_speedup_at_0.10": float(flops.set_index("retention").loc[0.1, "speedup_with_policy"]) if 0.1 in ratios else None,
})
