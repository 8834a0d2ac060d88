# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 08 · The policy network's supervised upper bound
# Can the policy network find what the question asks about at all? The same network as CaCoVID's policy (a copy of
# the LLM's first layer run bidirectionally, the same token and frame heads, the same inputs) is trained by plain
# supervision (`cacovid_lib/method/supervised.py`) to score the tokens the world's ground truth names: the asked
# objects' tokens, or every object's tokens. Both are then selected with CaCoVID's any-ratio rule (docs/method.md §5),
# the release's and the one stage evaluate_policy chose on validation, and scored on the test split beside the
# RL-trained policies: accuracy with its 95% interval and the object coverage of the kept tokens. A supervised policy
# that finds the object where RL's does not says the RL loop, not the network, is the limit; an object both lose at the
# same step of the rule says the rule is. This is a diagnosis of the kit, not a part of the method.
#
# Run by hand (JupyterLab), it reads the pipeline's world, model, filtered items and policies and writes under
# `scratch/`; `dvc repro` passes the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {}
policy_upper_bound = {"targets": ["asked"], "steps": 10, "items_per_step": 2,  # hand run: one target,
                      "retention_ratios": [0.25, 0.1]}                         # 10 steps
world_dir = "data/world"                        # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"                  # read
filtered_file = "data/filtered/train.json"      # read
policy_dir = "models/policy"                    # read: the RL policies, one per seed in seed_<s>/
policy_metrics = "reports/metrics/policy.json"  # read: the selection rule chosen on validation by stage evaluate_policy
metrics_dir = "scratch/reports/metrics"         # written
tables_dir = "scratch/reports/tables"           # written
plots_dir = "scratch/reports/plots"             # written
figures_dir = "scratch/reports/figures"         # written

# %%
import pandas as pd

from cacovid_lib.compare.cacovid import chosen_rule, load_policies
from cacovid_lib.compare.selection_loss import selection_loss_figure, selection_loss_table
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import read_json, save_csv, save_figure, write_text_atomic
from cacovid_lib.method.selection import RELEASE_RULE
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.pipeline.metrics import upper_bound_metrics, write_metrics
from cacovid_lib.pipeline.params import PolicyUpperBoundParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path
from cacovid_lib.stages.policy_training import PolicyTask
from cacovid_lib.stages.policy_upper_bound import selection_table, train_upper_bound, upper_bound_figure, world_targets

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p = parse(PolicyUpperBoundParams, policy_upper_bound, "policy_upper_bound")
rules = {"release": RELEASE_RULE, "chosen": chosen_rule(read_json(input_path(policy_metrics)))}  # chosen on validation
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
for weight in vlm.model.parameters():
    weight.requires_grad_(False)
train = load_split(input_path(world_dir), "train", num_frames, items_file=input_path(filtered_file))
test = load_split(input_path(world_dir), "test", num_frames)
task = PolicyTask(vlm, train)

# %% [markdown]
# ## Supervised training, one policy per target

# %%
policies, losses = {}, []
for target in p.targets:
    policy, history = train_upper_bound(task, world_targets(train, target), p.steps, p.items_per_step, p.lr, p.seed)
    policies[f"supervised ({target})"] = policy
    losses.append(history.assign(target=target))
    print(f"{target}: loss {history['loss'].head(20).mean():.3f} (first 20 steps) -> {history['loss'].tail(20).mean():.3f} (last 20)")
policies |= {f"RL {name}": policy for name, policy in load_policies(input_path(policy_dir), vlm).items()}

# %% [markdown]
# ## Test split: each policy with the same selection rules (the release's, and the one chosen on validation)

# %%
test_embeds = encode_videos(vlm, test.frames)  # (V, N+1, D)
table = selection_table(vlm, policies, test, test_embeds, p.retention_ratios, rules, p.seed)
save_csv(table.round(4), f"{tables_dir}/policy_upper_bound.csv")
save_csv(pd.concat(losses), f"{plots_dir}/policy_upper_bound_loss.csv")
write_text_atomic(f"{tables_dir}/policy_upper_bound.md",
                  f"Test split; rules: release = {rules['release']}, chosen = {rules['chosen']}; accuracy with its 95% "
                  "bootstrap interval; `asked_objects_kept`: "
                  "share of questions whose kept tokens show every asked object that is on screen.\n\n"
                  + table.round(3).to_markdown(index=False) + "\n")
write_metrics(f"{metrics_dir}/policy_upper_bound.json", upper_bound_metrics(table, len(test)))
save_figure(upper_bound_figure(table), f"{figures_dir}/policy_upper_bound.png")
table.round(3)

# %% [markdown]
# ## Where is the asked object lost? (compare/selection_loss.py)
# Per question with an asked object on screen: kept by the policy's top tokens, kept only by the even fill, or lost
# at the frame allocation, the per-frame cap, or the token ranking.

# %%
loss = selection_loss_table(vlm, policies, test, test_embeds, p.retention_ratios, rules)
save_csv(loss.round(4), f"{tables_dir}/selection_loss.csv")
save_figure(selection_loss_figure(loss), f"{figures_dir}/selection_loss.png")
loss.round(3)
