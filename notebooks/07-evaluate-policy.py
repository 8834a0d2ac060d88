# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 07 · Evaluate the CaCoVID policy at any retention ratio
# One trained policy, every retention ratio (docs/method.md §5). The selection rule that turns the policy's scores into
# a keep mask — `imp_ratio` (the share of the budget given to the policy's top tokens; the rest is an even fill), the
# per-frame cap, the frame floor, the frame scores' sharpness, per-frame or global allocation — is chosen on the
# **validation** split by coordinate search from the release's rule over the candidates in params.yaml; then the test
# split is scored once per ratio with the chosen rule, the release's rule and random selection. Each accuracy comes
# with a 95% bootstrap interval over the test questions. Where the policy was trained with several seeds
# (`policy_dir/seed_<s>/`), the rule is chosen on their mean and the table shows the mean over seeds, their standard
# deviation, and each seed's accuracy.
#
# Run by hand (JupyterLab), it reads the pipeline's world, model and policy and writes under `scratch/`;
# `dvc repro` passes the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {}
evaluate_policy = {"retention_ratios": [0.25, 0.1], "timing_repeats": 5,  # hand run: two ratios, two candidates each
                   "rule_candidates": {"imp_ratio": [0.5, 1.0], "cap_multiple": [1.5, None]}}
world_dir = "data/world"                    # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"              # read
policy_dir = "models/policy"                # read: one policy, or one per seed in seed_<s>/
metrics_dir = "scratch/reports/metrics"     # written
tables_dir = "scratch/reports/tables"       # written
figures_dir = "scratch/reports/figures"     # written

# %%
from dataclasses import asdict

from cacovid_lib.compare.cacovid import check_rule_candidates, load_policies, retention_table, rule_search, selection_cost
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import save_csv, save_figure, write_text_atomic
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.stages.figures import retention_figure
from cacovid_lib.pipeline.metrics import policy_metrics, write_metrics
from cacovid_lib.pipeline.params import EvaluatePolicyParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p = parse(EvaluatePolicyParams, evaluate_policy, "evaluate_policy")
check_rule_candidates(p.rule_candidates)
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
policies = load_policies(input_path(policy_dir), vlm)
val = load_split(input_path(world_dir), "val", num_frames)
test = load_split(input_path(world_dir), "test", num_frames)
val_embeds, test_embeds = encode_videos(vlm, val.frames), encode_videos(vlm, test.frames)  # (V, N+1, D), once per split

# %% [markdown]
# ## The selection rule, chosen on validation (mean accuracy over the retention ratios, and over seeds)
# One row per rule tried: the release's first, then one field changed at a time from the best so far.

# %%
rule, rules_tried = rule_search(vlm, policies, val, val_embeds, p.retention_ratios, p.rule_candidates)
save_csv(rules_tried.round(4), f"{tables_dir}/selection_rules.csv")
print(f"chosen on validation: {rule}")
rules_tried.round(3)

# %% [markdown]
# ## Test split: policy vs random selection at every ratio

# %%
table, full = retention_table(vlm, policies, test, test_embeds, p.retention_ratios, rule, p.seed)
table.round(3)

# %%
shown = [c for c in ("cacovid", "release_rule", "random") if c in table]
bands = {c: (table[f"{c}_ci_low"], table[f"{c}_ci_high"]) for c in shown}
fig = retention_figure(table[shown], full["accuracy"], "test accuracy vs retention", bands=bands, figsize=(5, 3.2))
save_figure(fig, f"{figures_dir}/policy_retention.png")

# %% [markdown]
# ## Selection cost for one video, against one LLM forward with every video token

# %%
cost = selection_cost(vlm, next(iter(policies.values())), test.items[0], test_embeds[test.video_of_item[0]], 0.1,
                      rule, repeats=p.timing_repeats)
print(f"selection {cost['selection_ms']:.2f} ms vs LLM forward {cost['llm_forward_all_tokens_ms']:.2f} ms "
      f"-> {cost['selection_share_of_forward']:.1%} of the forward")

# %%
metrics = write_metrics(f"{metrics_dir}/policy.json", policy_metrics(table, full, len(test), asdict(rule), cost))
save_csv(table.round(4).reset_index(), f"{tables_dir}/policy.csv")
write_text_atomic(f"{tables_dir}/policy.md", f"Test accuracy; `_ci_low`/`_ci_high`: 95% bootstrap interval over the "
                  f"test questions. `cacovid`: the rule chosen on validation ({rule}); `release_rule`: the release's.\n\n"
                  + table.round(3).to_markdown() + "\n")
metrics
