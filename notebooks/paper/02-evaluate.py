# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Paper 02 · One evaluation pass: one model, one benchmark, every method at every ratio
# Each video is read and encoded once; every (method, ratio) answers from the same embeddings with KV-cached greedy
# generation; answers are appended per run and rank, so a killed pass resumes (cacovid_lib/paper/evaluation_pass.py).
# With `run.processes` > 1 the items are sharded over `accelerate launch`ed processes, one per GPU.

# %% tags=["parameters"]
params_file = "paper/params.yaml"  # the stage's params file (read again by each launched process)
params = {}  # the validated params (the stage runner passes them); not needed here beyond the file
model = "llava_onevision_7b"
benchmark = "videomme"
policy_dir = ""  # read; "" = models/paper/<model>/policy
results_dir = ""  # written; "" = results/paper/<model>/<benchmark>
scores_file = ""  # written; "" = reports/paper/scores/<model>-<benchmark>.csv (and .left_out.json beside it)

# %%
from pathlib import Path

from cacovid_lib.io_utils import save_csv, write_json_atomic
from cacovid_lib.paper.evaluation_pass import run_evaluation_stage

policy_dir = policy_dir or f"models/paper/{model}/policy"
results_dir = results_dir or f"results/paper/{model}/{benchmark}"
scores_file = scores_file or f"reports/paper/scores/{model}-{benchmark}.csv"
scores = run_evaluation_stage(params_file, model, benchmark, policy_dir, results_dir)
save_csv(scores, scores_file)
write_json_atomic(Path(scores_file).with_suffix(".left_out.json"), scores.attrs["left_out"])  # the report lists them
print("left out:", scores.attrs["left_out"] or "none")
scores[["method", "retention", "score", "answered", "skipped", "unparseable", "mean_kept_tokens", "mean_select_ms"]]
