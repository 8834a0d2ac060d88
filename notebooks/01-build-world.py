# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 01 · Build the embedded video-QA world
# Renders the train / validation / test videos as MP4 files and writes Video-R1 style annotations
# (`<split>.json`) plus the generator's layouts (`<split>_layout.json`, per-token ground truth).
# Every question is about one object, so it needs only a few of the video tokens.
#
# Run by hand (JupyterLab), it writes under `scratch/`; `dvc repro` passes the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {"num_videos": {"train": 40, "val": 8, "test": 8}}  # hand run: 56 videos (the recipe: 2,725)
world_dir = "scratch/data/world"            # written
figures_dir = "scratch/reports/figures"     # written
metrics_dir = "scratch/reports/metrics"     # written

# %%
import pandas as pd

from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.world import WorldSpec, build_world
from cacovid_lib.embedded.world_stats import world_stats
from cacovid_lib.io_utils import save_figure
from cacovid_lib.pipeline.metrics import write_metrics
from cacovid_lib.pipeline.params import WorldParams, parse, to_dict
from cacovid_lib.pipeline.paths import at_project_root
from cacovid_lib.stages.world_samples import world_samples_figure

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
p = parse(WorldParams, world, "world")
summary = build_world(world_dir, seed=p.seed, num_videos=to_dict(p.num_videos), spec=parse(WorldSpec, p.spec, "world.spec"))
pd.DataFrame(summary).T

# %% [markdown]
# What the test split asks of a compressor, from the generator's ground truth: the share of a question's video tokens
# that show the asked-about object, how many distinct things a video holds against the 5% token budget, in how many
# sampled frames an asked object is visible, and how alike adjacent frames are.

# %%
write_metrics(f"{metrics_dir}/world_stats.json", world_stats(world_dir, "test", p.num_frames))

# %% [markdown]
# Test videos as the video LLM sees them (uniformly sampled frames read back with decord), one question of each
# type; white squares: the video tokens that show the asked-about objects.

# %%
test = load_split(world_dir, "test", p.num_frames, limit=60)
fig = world_samples_figure(test)
save_figure(fig, f"{figures_dir}/world_samples.png")
