# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Paper 03 · Efficiency: selection and prefill time per question
# The paper's efficiency table (`efficiency` block: ratio, benchmark, items, repeats, methods): per question the
# median time of the method's selection and of the LLM prefill with the kept tokens and with every token (CUDA
# synchronised on every device).

# %% tags=["parameters"]
params = {}  # the validated paper/params.yaml; {} = read it
model = "llava_onevision_7b"
benchmark = ""  # the efficiency block names its own
policy_dir = ""  # read; "" = models/paper/<model>/policy
efficiency_file = ""  # written; "" = reports/paper/efficiency/<model>.csv

# %%
from cacovid_lib.io_utils import save_csv
from cacovid_lib.paper.efficiency_stage import efficiency_table
from cacovid_lib.paper.params import read_gpu_params

params = params or read_gpu_params("paper/params.yaml")
policy_dir = policy_dir or f"models/paper/{model}/policy"
efficiency_file = efficiency_file or f"reports/paper/efficiency/{model}.csv"
table = efficiency_table(params, model, policy_dir)
save_csv(table, efficiency_file)
table

