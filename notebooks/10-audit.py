# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 10 · Contribution vs attention: which tokens actually answer the question?
# The paper's motivation (its Fig. 1): the tokens that receive attention are not the tokens that contribute to a
# correct answer. For sampled test items we measure each video token's contribution directly (drop it and see
# how much the probability of the correct option falls) and compare it with the scores methods rank by: the
# LLM's last-token attention (FastV), the vision encoder's attention (VisionZip), and the CaCoVID policy.
# The `contribution` row compares the contribution with itself (the ceiling); `target_object` is an oracle row,
# the generator's ground truth of which tokens show the asked-about object. Then the peers that fall below random
# here (FlashVID, VisionZip, VidCom²): each suspected step ablated, on the **validation** split
# (compare/peer_diagnosis.py states the diagnosis; docs/baselines.md the verdicts).
#
# Run by hand (JupyterLab), it reads the pipeline's world, model and policy and writes under `scratch/`;
# `dvc repro` passes the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe (methods: compare/registry.py MethodSettings, the papers' settings); a "hand run" override keeps Run All quick.
world = {}
audit = {"num_items": 8, "peer_ratios": [0.1]}  # hand run: 8 test items, one ratio
methods = {"fastv_layer": 0}  # FastV's layer on the embedded 6-layer LLM, as params.yaml
world_dir = "data/world"                    # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"              # read
policy_dir = "models/policy"                # read: one policy, or one per seed in seed_<s>/ (the first is audited)
metrics_dir = "scratch/reports/metrics"     # written
tables_dir = "scratch/reports/tables"       # written
figures_dir = "scratch/reports/figures"     # written

# %%
from cacovid_lib.compare.audit import audit_sample, rank_agreement, token_score_maps
from cacovid_lib.compare.cacovid import load_policies
from cacovid_lib.compare.peer_diagnosis import peer_ablation_table, peer_geometry_probe
from cacovid_lib.io_utils import save_csv
from cacovid_lib.models.base import encode_videos
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import save_figure, write_text_atomic
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.stages.figures import audit_heatmaps_figure
from cacovid_lib.pipeline.metrics import audit_metrics, write_metrics
from cacovid_lib.compare.registry import MethodSettings
from cacovid_lib.pipeline.params import AuditParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p = parse(AuditParams, audit, "audit")
settings = parse(MethodSettings, methods, "methods")
fastv_layer = settings.fastv_layer
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
policy = next(iter(load_policies(input_path(policy_dir), vlm).values()))
test = load_split(input_path(world_dir), "test", num_frames)
sample = audit_sample(vlm, test, p.num_items, p.seed)

# %%
maps = token_score_maps(vlm, policy, sample.items, sample.answers, sample.video_embeds, sample.pixels, fastv_layer)
maps["target_object"] = sample.target.float()  # an oracle row: the generator's ground truth
table = rank_agreement(maps, sample.target, p.top_k)
write_text_atomic(f"{tables_dir}/audit.md", f"{p.num_items} test items, {vlm.num_video_tokens} video tokens each; "
                  f"contribution = drop in log p(correct option) when the token is removed.\n\n" + table.round(3).to_markdown() + "\n")
write_metrics(f"{metrics_dir}/audit.json", audit_metrics(table, p.num_items))
table.round(3)

# %% [markdown]
# ## One item, frame by frame: ground truth, contribution, and the three scores

# %%
example = 0
rows = ["target_object", "contribution", "policy", "llm_attention", "vision_attention"]
fig = audit_heatmaps_figure(test.frames[test.video_of_item[sample.idx[example]]], {k: v[example] for k, v in maps.items()},
                            rows, vlm.grid, f"{sample.items[example]['problem']}  (answer {sample.items[example]['solution']})")
save_figure(fig, f"{figures_dir}/audit_heatmaps.png")

# %% [markdown]
# ## Why three peers fall below random here: each one's suspected step ablated (validation split)
# Accuracy with its 95% interval and the asked-object coverage of each method, its ablations and random; then how
# each score ranks the asked object's tokens within their frame (0.5: no preference).

# %%
val = load_split(input_path(world_dir), "val", num_frames)
val_embeds = encode_videos(vlm, val.frames)  # (V, N+1, D)
peers = peer_ablation_table(vlm, val, val_embeds, p.peer_ratios, settings, seed=p.seed)
save_csv(peers.drop(columns="seconds").round(4), f"{tables_dir}/peer_ablations.csv")
save_csv(peer_geometry_probe(vlm, val, val_embeds, settings).round(4), f"{tables_dir}/peer_geometry.csv")
peers.round(3)
