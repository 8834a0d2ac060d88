# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 03 · Evaluate the small video LLM
# Loads the trained model back with `from_pretrained` (the path a real checkpoint takes) and scores
# the test split with all video tokens, with none (blind), and with random token dropout.
#
# Run by hand (JupyterLab), it reads the pipeline's world and model and writes under `scratch/`; `dvc repro` passes
# the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {}
evaluate = {}
world_dir = "data/world"                    # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"              # read (scratch/models/small_vlm where the pipeline's is missing)
metrics_dir = "scratch/reports/metrics"     # written
tables_dir = "scratch/reports/tables"       # written

# %%
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import write_text_atomic
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.pipeline.metrics import write_metrics
from cacovid_lib.pipeline.params import EvaluateParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path
from cacovid_lib.stages.video_llm_evaluation import evaluate_video_llm, video_llm_metrics

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p = parse(EvaluateParams, evaluate, "evaluate")
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
test = load_split(input_path(world_dir), "test", num_frames)
table = evaluate_video_llm(vlm, test, p.random_keep_ratios, p.seed)
table.round(3)

# %%
metrics = video_llm_metrics(table, len(test), p.random_keep_ratios)
write_metrics(f"{metrics_dir}/vlm.json", metrics)
write_text_atomic(f"{tables_dir}/vlm.md", table.round(3).to_markdown() + "\n")
metrics
