# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 02 · Train the small video LLM
# A real `LlavaOnevisionForConditionalGeneration` (small SigLIP + small Qwen2) with a word-level
# tokenizer, trained from scratch on the world's train split, saved with `save_pretrained`.
# The recipe (projector alignment to word embeddings, option-text answers, token dropout) is
# documented in `cacovid_lib/embedded/small_vlm.py`.
#
# Run by hand (JupyterLab), it reads the pipeline's world and writes under `scratch/`; `dvc repro` passes the
# pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {}
vlm = {"train": {"steps": 20, "batch_size": 8}}  # hand run: 20 steps of 8 questions
world_dir = "data/world"                    # read (scratch/data/world where the pipeline's is missing)
model_dir = "scratch/models/small_vlm"      # written
plots_dir = "scratch/reports/plots"         # written
figures_dir = "scratch/reports/figures"     # written

# %%
from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig
from cacovid_lib.io_utils import save_csv, save_figure
from cacovid_lib.pipeline.params import VLMParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path
from cacovid_lib.stages.video_llm_training import train_video_llm, vlm_training_figure

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p = parse(VLMParams, vlm, "vlm")
model_cfg, train_cfg = parse(SmallVLMConfig, p.model, "vlm.model"), parse(VLMTrainConfig, p.train, "vlm.train")
history = train_video_llm(input_path(world_dir), num_frames, model_cfg, train_cfg, model_dir)

# %% [markdown]
# The answer loss (the option text's likelihood) and the auxiliary loss (each video token's projected embedding
# against its object's words), as 20-step means.

# %%
save_csv(history, f"{plots_dir}/vlm_training.csv")
save_figure(vlm_training_figure(history, train_cfg.curriculum_steps, train_cfg.vision_steps), f"{figures_dir}/vlm_training.png")
