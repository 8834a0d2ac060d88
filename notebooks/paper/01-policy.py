# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Paper 01 · CaCoVID's policy for one model
# Where the policy comes from is the params' `models.<key>.policy_source` (cacovid_lib/paper/policy_source.py): the
# authors' released checkpoint (only its policy tensors are read), a kit policy folder, `train` (blind filtering of
# Video-R1 through this model, then the training launcher on `policy.processes` processes, as on 8 GPUs; the health
# of every step is kept in the policy folder), `untrained` or `none` (CaCoVID is left out of this model's rows).

# %% tags=["parameters"]
params_file = "paper/params.yaml"  # the stage's params file (the training commands read it)
params = {}  # the validated params (the stage runner passes them); {} = read params_file
model = "llava_onevision_7b"
benchmark = ""  # not used here
policy_dir = ""  # written; "" = models/paper/<model>/policy

# %%
from cacovid_lib.cli import blind_filter, launch_policy_training  # what source `train` runs (DVC tracks their code)
from cacovid_lib.paper.evaluation_pass import load_stage_model
from cacovid_lib.paper.params import read_gpu_params
from cacovid_lib.paper.policy_source import prepare_policy

params = params or read_gpu_params(params_file)
policy_dir = policy_dir or f"models/paper/{model}/policy"
record = prepare_policy(params, model, policy_dir, lambda p, m: load_stage_model(p, m, "cpu"), params_file,
                        modules=(blind_filter.__name__, launch_policy_training.__name__))
record
