# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 11 · Ablations: one setting changed at a time
# Short policy trainings from the same seed, each differing from a base recipe (the main policy's, `policy.train`,
# with `ablations.steps` steps) in one setting (the paper's ablations: sampling modes, grouped rank-band vs
# independent Bernoulli sampling, group size, group probability cap, number of rollouts), scored on the
# **validation** split with 95% bootstrap intervals over its questions. The token-mode reward per step shows how
# fast each variant learns (the paper's convergence claim). Every run is selected with the rule stage evaluate_policy
# chose on validation.
#
# Run by hand (JupyterLab), it reads the pipeline's world, model, filtered items and policy metrics and
# writes under `scratch/`; `dvc repro` passes the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe (policy.train: {} = the method's defaults); a "hand run" override keeps Run All quick.
world = {}
policy = {"train": {"items_per_step": 2, "num_generations": 8}}  # hand run: 8 rollouts (steps: ablations.steps)
ablations = {"steps": 10, "train_items": 40, "retention_ratios": [0.1],  # hand run: one
             "variants": {"sampler": {"grouped": {}, "independent": {"sampler": "independent"}}}}  # ablation, 10 steps
world_dir = "data/world"                        # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"                  # read
filtered_file = "data/filtered/train.json"      # read
policy_metrics = "reports/metrics/policy.json"  # read: the selection rule chosen on validation by stage evaluate_policy
metrics_dir = "scratch/reports/metrics"         # written
tables_dir = "scratch/reports/tables"           # written
plots_dir = "scratch/reports/plots"             # written
figures_dir = "scratch/reports/figures"         # written

# %%
from IPython.display import display

from cacovid_lib.compare.cacovid import chosen_rule
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import read_json, save_csv, save_figure, write_text_atomic
from cacovid_lib.method.train_loop import PolicyTrainConfig
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.stages.ablations import ablation_curves_figure, ablation_tables, ablations_markdown, base_recipe, run_ablations
from cacovid_lib.pipeline.metrics import ablation_metrics, write_metrics
from cacovid_lib.pipeline.params import AblationsParams, PolicyParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path
from cacovid_lib.stages.policy_training import PolicyTask

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p = parse(AblationsParams, ablations, "ablations")
pp = parse(PolicyParams, policy, "policy")
base = base_recipe(parse(PolicyTrainConfig, pp.train, "policy.train"), p.steps)
rule = chosen_rule(read_json(input_path(policy_metrics)))  # chosen on validation by stage evaluate_policy
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
for weight in vlm.model.parameters():
    weight.requires_grad_(False)
train = load_split(input_path(world_dir), "train", num_frames, limit=p.train_items, items_file=input_path(filtered_file))
val = load_split(input_path(world_dir), "val", num_frames)
val_embeds = encode_videos(vlm, val.frames)

# %% [markdown]
# ## Training: every distinct run once (the base recipe is shared by all ablations)

# %%
results, histories = run_ablations(PolicyTask(vlm, train, reward=pp.reward, max_new_tokens=base.reward_max_new_tokens), base, p.variants, val, val_embeds, p.retention_ratios, rule)
save_csv(histories, f"{plots_dir}/ablations.csv")

# %% [markdown]
# ## One table per ablation (the selection rule's own ablation, on validation: stage evaluate_policy's selection_rules.csv)

# %%
tables = ablation_tables(p.variants, results)
write_text_atomic(f"{tables_dir}/ablations.md", ablations_markdown(tables, base, len(train)))
write_metrics(f"{metrics_dir}/ablations.json", ablation_metrics(tables))
for ablation, table in tables.items():
    display(table)

# %% [markdown]
# ## Convergence: token-mode reward per step, one panel per ablation

# %%
save_figure(ablation_curves_figure(histories, p.variants), f"{figures_dir}/ablations.png")
