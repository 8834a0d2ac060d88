# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 13 · The small video LLM's spread across seeds (an extra stage)
# Trains the default recipe (params.yaml `vlm`) again at other seeds, each in its own process on one core, and scores
# each model on the test split as 03 scores the pipeline's (seed `vlm.train.seed`). It costs about one more video-LLM
# stage, so it is not part of the default `dvc repro`: it lives in `extras/dvc.yaml` (`make spread`).
#
# Run by hand (JupyterLab), it reads the pipeline's world and vlm.json and writes under `scratch/`.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe; a "hand run" override keeps Run All quick.
world = {}
vlm = {"train": {"steps": 20, "batch_size": 8}}  # hand run: 20 steps of 8 questions
evaluate = {"random_keep_ratios": [0.1]}  # hand run: one random row
vlm_seed_spread = {"seeds": [1], "workers": 1}  # hand run: one seed
world_dir = "data/world"                          # read (scratch/data/world where the pipeline's is missing)
vlm_metrics = "reports/metrics/vlm.json"          # read: the pipeline's model (its seed: vlm.train.seed)
seed_models_dir = "scratch/models/vlm_seeds"      # written
metrics_dir = "scratch/reports/metrics"           # written
tables_dir = "scratch/reports/tables"             # written
figures_dir = "scratch/reports/figures"           # written

# %%
import pandas as pd

from cacovid_lib.embedded.small_vlm import SmallVLMConfig, VLMTrainConfig
from cacovid_lib.io_utils import read_json, save_csv, save_figure
from cacovid_lib.pipeline.metrics import write_metrics
from cacovid_lib.pipeline.params import EvaluateParams, VLMParams, VLMSeedSpreadParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path
from cacovid_lib.stages.video_llm_seeds import seed_spread_figure, spread_metrics, train_seeds

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p, ev = parse(VLMParams, vlm, "vlm"), parse(EvaluateParams, evaluate, "evaluate")
spread = parse(VLMSeedSpreadParams, vlm_seed_spread, "vlm_seed_spread")
model_cfg, train_cfg = parse(SmallVLMConfig, p.model, "vlm.model"), parse(VLMTrainConfig, p.train, "vlm.train")
extra = train_seeds(input_path(world_dir), num_frames, model_cfg, train_cfg, spread.seeds, ev.random_keep_ratios,
                    ev.seed, seed_models_dir, spread.workers)
pipeline_model = {"seed": train_cfg.seed, **read_json(input_path(vlm_metrics))}
table = pd.concat([pd.DataFrame([pipeline_model]), extra], ignore_index=True)
table

# %% [markdown]
# Each seed's test accuracy; vlm_seed_spread.json has the mean, standard deviation, minimum and maximum.

# %%
save_csv(table, f"{tables_dir}/vlm_seed_spread.csv")
save_figure(seed_spread_figure(table), f"{figures_dir}/vlm_seed_spread.png")
write_metrics(f"{metrics_dir}/vlm_seed_spread.json", spread_metrics(table))
