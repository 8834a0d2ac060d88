# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 04 · Video-token geometry
# How the small video LLM's projected video tokens are spread over the test split: the mean cosine of two
# different objects' tokens, of an object token and a background or clutter token, and of two background or clutter
# tokens, and each token's nearest non-object token (`cacovid_lib/compare/token_geometry.py`), beside the same measures
# of the cells' pixels. Diversity rules (DivPrune, the density-peak picks) rank tokens by
# this geometry: if background and clutter sit in one narrow cone and the objects apart, diversity alone finds the
# objects, which a pretrained encoder's tokens on real video do not allow.
#
# Run by hand (JupyterLab), it reads the pipeline's world and model and writes under `scratch/`; `dvc repro` passes
# the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {}
world_dir = "data/world"                    # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"              # read (scratch/models/small_vlm where the pipeline's is missing)
metrics_dir = "scratch/reports/metrics"     # written
figures_dir = "scratch/reports/figures"     # written

# %%
import torch

from cacovid_lib.compare.token_geometry import cosine_samples, geometry_figure, token_geometry
from cacovid_lib.embedded.split import load_split
from cacovid_lib.embedded.world import frame_cells
from cacovid_lib.io_utils import save_figure
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.pipeline.metrics import write_metrics
from cacovid_lib.pipeline.params import WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
test = load_split(input_path(world_dir), "test", num_frames)
tokens = encode_videos(vlm, test.frames)[:, :-1]  # (V, N, D): the video tokens, without the trailing newline token
labels = test.object_labels.reshape(len(test.frames), -1)  # (V, N) object index per token, -1 = background/clutter

# %%
# cells_per_frame: also the non-object pairs at two different grid cells (a static cell repeats across frames)
metrics = token_geometry(tokens, labels, cells_per_frame=test.object_labels.shape[-1])
# the reference: the same measures of each cell's pixels, the split's mean cell removed ("as diverse as the pixels")
cells = torch.from_numpy(frame_cells(test.frames, grid=round(test.object_labels.shape[-1] ** 0.5)))
cells = cells.float().reshape(*labels.shape, -1)  # (V, N, c*c*3)
pixels = token_geometry(cells - cells.mean((0, 1)), labels, cells_per_frame=test.object_labels.shape[-1])
metrics |= {f"pixels_{k}": v for k, v in pixels.items() if k.endswith("_cosine")}
write_metrics(f"{metrics_dir}/token_geometry.json", metrics)
{k: round(v, 3) for k, v in metrics.items()}

# %%
fig = geometry_figure(cosine_samples(tokens, labels), metrics)
save_figure(fig, f"{figures_dir}/token_geometry.png")
