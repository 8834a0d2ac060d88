# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 14 · Pretrain the vision tower
# The small video LLM's SigLIP tower, pretrained on the world's training frames with a task-agnostic objective
# (`cacovid_lib/embedded/vision_pretraining.py`: dense contrastive or masked-patch reconstruction), before the
# projector and the LLM are trained on it frozen (02-train-video-llm). A tower trained on the task's answers alone
# folds background and clutter into one cone; a pretrained encoder keeps them apart, as SigLIP does on real video.
# The geometry of its features pooled to video-token cells is measured on the validation split, where the objective
# was chosen.
#
# Run by hand (JupyterLab), it reads the pipeline's world and writes under `scratch/`; `dvc repro` passes the
# pipeline's paths.

# %% tags=["parameters"]
world = {"num_frames": 8}
vlm = {"model": {}}
vision_pretraining = {"train": {"steps": 20, "frames_per_step": 8}}
world_dir = "data/world"                        # read (scratch/data/world where the pipeline's is missing)
vision_tower_dir = "scratch/models/vision_tower"  # written
metrics_dir = "scratch/reports/metrics"         # written
plots_dir = "scratch/reports/plots"             # written
figures_dir = "scratch/reports/figures"         # written

# %%
from cacovid_lib.embedded.small_vlm import SmallVLMConfig
from cacovid_lib.embedded.vision_pretraining import VisionPretrainConfig
from cacovid_lib.io_utils import save_csv, save_figure
from cacovid_lib.pipeline.metrics import write_metrics
from cacovid_lib.pipeline.params import VisionPretrainingParams, VLMParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path
from cacovid_lib.pipeline.vision_tower_pretraining import pretrain_tower, pretraining_figure

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
model_cfg = parse(SmallVLMConfig, parse(VLMParams, vlm, "vlm").model, "vlm.model")
cfg = parse(VisionPretrainConfig, parse(VisionPretrainingParams, vision_pretraining, "vision_pretraining").train,
            "vision_pretraining.train")
history, metrics = pretrain_tower(input_path(world_dir), num_frames, model_cfg, cfg, vision_tower_dir)
write_metrics(f"{metrics_dir}/vision_tower.json", metrics)
metrics

# %% [markdown]
# The pretraining loss as a 20-step mean.

# %%
save_csv(history, f"{plots_dir}/vision_pretraining.csv")
save_figure(pretraining_figure(history, cfg.objective), f"{figures_dir}/vision_pretraining.png")
