# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 07 · Evaluate the CaCoVID policy at any retention ratio
# One trained policy, every retention ratio (docs/method.md §5). `imp_ratio` (the share of the budget given to the
# policy's per-frame top-k; the rest is an even fill) is chosen on the **validation** split from the
# candidates in params.yaml, then the test split is scored once per ratio, against random selection.
# Each accuracy comes with a 95% bootstrap interval over the test questions. Where the policy was trained with
# several seeds (`policy_dir/seed_<s>/`), `imp_ratio` is chosen on their mean and the table shows the mean over
# seeds, their standard deviation, and each seed's accuracy.
#
# Run by hand (JupyterLab), it reads the pipeline's world, model and policy and writes under `scratch/`;
# `dvc repro` passes the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {}
evaluate_policy = {"retention_ratios": [0.25, 0.1], "imp_ratio_candidates": [0.5, 1.0], "timing_repeats": 5}  # hand run
world_dir = "data/world"                    # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"              # read
policy_dir = "models/policy"                # read: one policy, or one per seed in seed_<s>/
metrics_dir = "scratch/reports/metrics"     # written
tables_dir = "scratch/reports/tables"       # written
figures_dir = "scratch/reports/figures"     # written

# %%
from cacovid_lib.compare.cacovid import choose_imp_ratio, imp_ratio_table, load_policies, retention_table, selection_cost
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
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
policies = load_policies(input_path(policy_dir), vlm)
val = load_split(input_path(world_dir), "val", num_frames)
test = load_split(input_path(world_dir), "test", num_frames)
val_embeds, test_embeds = encode_videos(vlm, val.frames), encode_videos(vlm, test.frames)  # (V, N+1, D), once per split

# %% [markdown]
# ## imp_ratio, chosen on validation (mean accuracy over the retention ratios, and over seeds)

# %%
val_table = imp_ratio_table(vlm, policies, val, val_embeds, p.retention_ratios, p.imp_ratio_candidates)
imp_ratio = choose_imp_ratio(val_table)
print(f"imp_ratio = {imp_ratio} (validation accuracy by candidate: {val_table.mean().round(3).to_dict()})")

# %% [markdown]
# ## Test split: policy vs random selection at every ratio

# %%
table, full = retention_table(vlm, policies, test, test_embeds, p.retention_ratios, imp_ratio, p.seed)
table.round(3)

# %%
bands = {c: (table[f"{c}_ci_low"], table[f"{c}_ci_high"]) for c in ("cacovid", "random")}
fig = retention_figure(table[["cacovid", "random"]], full["accuracy"], "test accuracy vs retention", bands=bands,
                       figsize=(5, 3.2))
save_figure(fig, f"{figures_dir}/policy_retention.png")

# %% [markdown]
# ## Selection cost for one video, against one LLM forward with every video token

# %%
cost = selection_cost(vlm, next(iter(policies.values())), test.items[0], test_embeds[test.video_of_item[0]], 0.1,
                      imp_ratio, repeats=p.timing_repeats)
print(f"selection {cost['selection_ms']:.2f} ms vs LLM forward {cost['llm_forward_all_tokens_ms']:.2f} ms "
      f"-> {cost['selection_share_of_forward']:.1%} of the forward")

# %%
metrics = write_metrics(f"{metrics_dir}/policy.json", policy_metrics(table, full, len(test), imp_ratio, cost))
save_csv(table.round(4).reset_index(), f"{tables_dir}/policy.csv")
write_text_atomic(f"{tables_dir}/policy.md", "Test accuracy; `_ci_low`/`_ci_high`: 95% bootstrap interval over the "
                  "test questions.\n\n" + table.round(3).to_markdown() + "\n")
metrics
