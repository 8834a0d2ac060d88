# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Paper 04 · The paper's tables, reproduced, beside the paper's numbers
# The main table in the paper's layout (LongVideoBench, MLVU dev and test, VideoMME short / medium / long / overall,
# their average and its share of the all-token average), each cell "kit (paper, kit - paper)"; the efficiency table;
# a retention-vs-accuracy figure per model; each method's selection memory at LLaVA-OneVision-7B's shape (32 x 196
# tokens, bf16): measured on CUDA where this stage runs on a GPU, else counted from the tensors it allocates on the meta
# device (no memory used). The paper's numbers: paper/reference/ (transcribed from the release).

# %% tags=["parameters"]
params = {}  # the validated paper/params.yaml; {} = read it
model = ""
benchmark = ""
scores_dir = "reports/paper/scores"  # read
efficiency_dir = "reports/paper/efficiency"  # read
reference_dir = "paper/reference"  # read
report_dir = "reports/paper"  # written

# %%
from pathlib import Path

from IPython.display import Image, Markdown, display

from cacovid_lib.io_utils import save_csv
from cacovid_lib.paper.efficiency_stage import selection_memory
from cacovid_lib.paper.params import read_gpu_params
from cacovid_lib.paper.report import markdown_cells, stage_outputs, write_report

params = params or read_gpu_params("paper/params.yaml")
run = params.get("run") or {}
scores, efficiency, left_out = stage_outputs(run, scores_dir, efficiency_dir)  # this run's, no stale file
table = write_report(scores, efficiency, reference_dir, report_dir, dry_run=run.get("dry_run", False), left_out=left_out)
display(Markdown(markdown_cells(table).to_markdown(index=False)))
for figure in sorted(Path(report_dir, "figures").glob("retention_*.png")):
    display(Image(str(figure)))

# %%
memory = selection_memory(params)
save_csv(memory, Path(report_dir, "selection_memory.csv"))
memory
