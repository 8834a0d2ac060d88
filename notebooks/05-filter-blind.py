# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 05 · Blind filtering of the training set
# Drops the training questions the frozen video LLM answers correctly with no video at all (docs/method.md §4):
# they say nothing about which tokens matter. Writes the kept items in the Video-R1 JSON format.
#
# Run by hand (JupyterLab), it reads the pipeline's world and model and writes under `scratch/`; `dvc repro` passes
# the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {}
world_dir = "data/world"                            # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"                      # read (scratch/models/small_vlm where the pipeline's is missing)
filtered_file = "scratch/data/filtered/train.json"  # written
metrics_dir = "scratch/reports/metrics"             # written

# %%
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import write_json_atomic
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.cli.blind_filter import blind_filter, blind_filter_metrics
from cacovid_lib.pipeline.metrics import write_metrics
from cacovid_lib.pipeline.params import WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
train = load_split(input_path(world_dir), "train", num_frames)
kept = blind_filter(vlm, train)
write_json_atomic(filtered_file, kept)
metrics = blind_filter_metrics(len(train), len(kept))
write_metrics(f"{metrics_dir}/blind_filter.json", metrics)
metrics
