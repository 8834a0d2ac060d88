# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 06 · Train the CaCoVID policy
# The combinatorial GRPO loop (`cacovid_lib/method/train_loop.py`, docs/method.md §3-4) on the blind-filtered training
# questions, rewarded by the frozen small video LLM's answers under every sampled token combination.
# The same training runs on several processes with
# `accelerate launch -m cacovid_lib.cli.launch_policy_training` (see the README).
#
# Run by hand (JupyterLab), it reads the pipeline's world, model and filtered items and writes under `scratch/`;
# `dvc repro` passes the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe (policy.train: {} = the method's defaults); a "hand run" override keeps Run All quick.
world = {}
policy = {"train": {"steps": 10, "items_per_step": 2, "num_generations": 8}}  # hand run: 10 steps, 8 rollouts
world_dir = "data/world"                    # read (scratch/... where the pipeline's is missing)
model_dir = "models/small_vlm"              # read
filtered_file = "data/filtered/train.json"  # read
policy_dir = "scratch/models/policy"        # written
plots_dir = "scratch/reports/plots"         # written
figures_dir = "scratch/reports/figures"     # written
seed = None                                 # the policy's seed (dvc repro: each of policy.seeds); None: the first

# %%
import time
from dataclasses import replace

import pandas as pd

from cacovid_lib.io_utils import KitInputError, save_csv, save_figure
from cacovid_lib.method.train_loop import PolicyTrainConfig
from cacovid_lib.pipeline.params import PolicyParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path
from cacovid_lib.stages.policy_training import policy_training_figure, train_policy_on_split

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p = parse(PolicyParams, policy, "policy")
if "seed" in p.train:
    raise KitInputError("policy.train.seed: not used; the policies' seeds are policy.seeds")
cfg = replace(parse(PolicyTrainConfig, p.train, "policy.train"), seed=p.seeds[0] if seed is None else seed)
out_dir = f"{policy_dir}/seed_{cfg.seed}"
start = time.time()
trained, state = train_policy_on_split(input_path(model_dir), input_path(world_dir), num_frames, cfg, out_dir,
                                       items_file=input_path(filtered_file), reward=p.reward)
print(f"{cfg.steps} steps in {time.time() - start:.0f} s; policy saved to {out_dir}")

# %% [markdown]
# Rewards are the mean answer accuracy of each mode's rollouts (content: density peaks, no policy;
# token: grouped rank-band samples of the policy; frame: the frame head's frames). The token-mode reward
# rises as the policy learns which tokens matter; the adaptive sample rate then lowers the budget. The other panels
# are the training's health: groups whose rollouts all score the same (no learning signal), clipped ratios,
# the policy's entropy and drift, the gradient norm.

# %%
history = pd.DataFrame(state.history)
save_csv(history, f"{plots_dir}/policy_training_seed_{cfg.seed}.csv")
save_figure(policy_training_figure(history), f"{figures_dir}/policy_training_seed_{cfg.seed}.png")
