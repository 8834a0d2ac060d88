# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Paper 05 · One training ablation: a policy trained with some settings changed, evaluated on one benchmark
# `ablations.runs.<name>` of the params names the `policy.train` settings it changes (the same switches as the
# embedded ablations); the policy is trained as the policy stage's `train` source does (blind filtering, then the
# launcher), and CaCoVID is evaluated at every retention ratio (cacovid_lib/paper/ablation.py).

# %% tags=["parameters"]
params = {}  # the validated paper/params.yaml; {} = read it
model = ""
benchmark = ""
ablation = ""  # a key of ablations.runs
work_dir = ""  # written; "" = models/paper/ablations/<ablation>
table_file = ""  # written; "" = reports/paper/ablations/<ablation>.csv

# %%
from cacovid_lib.cli import blind_filter, launch_policy_training  # what source `train` runs (DVC tracks their code)
from cacovid_lib.io_utils import save_csv
from cacovid_lib.paper.ablation import run_ablation
from cacovid_lib.paper.params import read_gpu_params

params = params or read_gpu_params("paper/params.yaml")
work_dir = work_dir or f"models/paper/ablations/{ablation}"
table_file = table_file or f"reports/paper/ablations/{ablation}.csv"
scores = run_ablation(params, ablation, work_dir, modules=(blind_filter.__name__, launch_policy_training.__name__))
save_csv(scores, table_file)
scores[["ablation", "settings", "method", "retention", "score", "answered", "unparseable"]]
