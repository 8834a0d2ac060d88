# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 09 · Benchmark: CaCoVID against every registered baseline at every retention ratio, and their cost
# Every method of the registry (`cacovid_lib/compare/registry.py` names each method's paper and simplifications)
# selects exactly `floor(ρ·N)` video tokens from the same inputs. The test split is scored once per method and
# ratio; no method is tuned on it (CaCoVID's selection rule was chosen on validation by stage evaluate_policy, and
# "CaCoVID (release rule)" is the same policies with the release's rule; the baselines use
# their papers' defaults). Each average comes with a 95% bootstrap interval over the test questions; with several
# policy seeds CaCoVID's row is their mean ± sd and each seed's row is in main.csv. Then the cost of each method for
# one video: selection time, LLM prefill time, peak memory, and an analytic prefill-FLOPs model for
# LLaVA-OneVision-7B at 32 frames.
#
# Run by hand (JupyterLab), it reads the pipeline's world, model, policy and policy metrics and writes under
# `scratch/`; `dvc repro` passes the pipeline's paths.

# %% tags=["parameters"]
# Each block is parsed into its dataclass (cacovid_lib/pipeline/params.py), whose defaults are the recipe; `dvc repro`
# passes params.yaml's blocks instead. Run by hand: {} = the recipe (methods: compare/registry.py MethodSettings, the papers' settings); a "hand run" override keeps Run All quick.
world = {}
benchmark = {"retention_ratios": [0.25, 0.1], "timing_repeats": 5}  # hand run: two ratios, 5 timings
methods = {"fastv_layer": 0}  # FastV's layer on the embedded 6-layer LLM, as params.yaml
world_dir = "data/world"                            # read (scratch/data/world where the pipeline's is missing)
model_dir = "models/small_vlm"                      # read
policy_dir = "models/policy"                        # read: one policy, or one per seed in seed_<s>/
policy_metrics = "reports/metrics/policy.json"      # read: the selection rule chosen on validation (evaluate_policy)
metrics_dir = "scratch/reports/metrics"             # written
tables_dir = "scratch/reports/tables"               # written
plots_dir = "scratch/reports/plots"                 # written
figures_dir = "scratch/reports/figures"             # written

# %%
from dataclasses import replace

import torch

from cacovid_lib.compare.benchmark import (accuracy_against_compute, efficiency_report, main_markdown, main_table,
                                          retention_curve, split_context, sweep)
from cacovid_lib.compare.cacovid import chosen_rule, load_policies
from cacovid_lib.compare.coverage import coverage_table
from cacovid_lib.compare.registry import MethodSettings
from cacovid_lib.embedded.split import load_split
from cacovid_lib.io_utils import read_json, save_csv, save_figure, write_text_atomic
from cacovid_lib.models.base import encode_videos
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM
from cacovid_lib.stages.figures import accuracy_flops_figure, retention_figure
from cacovid_lib.pipeline.metrics import benchmark_metrics, efficiency_metrics, write_metrics
from cacovid_lib.pipeline.params import BenchmarkParams, WorldParams, parse
from cacovid_lib.pipeline.paths import at_project_root, input_path

at_project_root()  # paths are relative to the project root, also where JupyterLab starts the kernel (notebooks/)
num_frames = parse(WorldParams, world, "world").num_frames
p = parse(BenchmarkParams, benchmark, "benchmark")
rule = chosen_rule(read_json(input_path(policy_metrics)))  # chosen on the validation split by stage evaluate_policy
settings = replace(parse(MethodSettings, methods, "methods"), cacovid_rule=rule, seed=p.seed)
torch.manual_seed(p.seed)
vlm = LlavaOneVisionVideoLLM.from_pretrained(input_path(model_dir), num_frames=num_frames)
policies = load_policies(input_path(policy_dir), vlm)
test = load_split(input_path(world_dir), "test", num_frames)
test_embeds = encode_videos(vlm, test.frames)  # (V, N+1, D), once for every method

# %% [markdown]
# ## The sweep: every method × retention ratio on the test split

# %%
runs = sweep(split_context(vlm, test), test, test_embeds, p.retention_ratios, settings, policies)
main = main_table(test, runs, seed=p.seed)
save_csv(main.round(4), f"{tables_dir}/main.csv")
write_text_atomic(f"{tables_dir}/main.md", main_markdown(main))

# %%
curve = retention_curve(main)
save_csv(curve.reset_index(), f"{plots_dir}/benchmark.csv")
save_figure(retention_figure(curve, float(main.loc[main["method"] == "All tokens", "average"].iloc[0]),
                             "accuracy vs retention, test split", highlight="CaCoVID"), f"{figures_dir}/benchmark_retention.png")
write_metrics(f"{metrics_dir}/benchmark.json", benchmark_metrics(main, len(test)))

# %% [markdown]
# ## Which objects do the kept tokens show? (the generator's ground truth; compare/coverage.py)
# Per method and ratio: the share of questions with a kept token on every asked object that is on screen, the
# objects with a kept token, and the share of kept tokens on background or clutter.

# %%
save_csv(coverage_table(test, runs).round(4), f"{tables_dir}/coverage.csv")

# %% [markdown]
# ## Efficiency for one video at `efficiency_ratio`: selection time, LLM prefill, peak memory
# Medians over `timing_repeats` after warm-up, one process on this machine. The prefill is one forward over the
# prompt with the kept tokens, as generation does it (FastV: every token through its first layers, then the kept
# ones). Our FastV and temporal merge re-run the whole LLM (eager attention) for their attention scores, and
# VisionZip re-runs the vision encoder; fused implementations get these from the forward they are part of.
#
# Then the analytic prefill FLOPs of LLaVA-OneVision-7B (Qwen2-7B) at `flops_frames` frames: FastV's FLOPs count
# adapted to grouped-query attention and SwiGLU (cacovid_lib/compare/efficiency.py); "with policy" adds CaCoVID's one
# policy layer over the full prompt.

# %%
efficiency, flops, markdown = efficiency_report(split_context(vlm, test), test_embeds[test.video_of_item[:1]],
                                                p.efficiency_ratio, settings, next(iter(policies.values())), p.timing_repeats,
                                                p.flops_frames, p.flops_tokens_per_frame, p.flops_text_tokens, p.retention_ratios)
save_csv(efficiency, f"{tables_dir}/efficiency.csv")
save_csv(flops, f"{tables_dir}/flops_llava_ov_7b.csv")
write_text_atomic(f"{tables_dir}/efficiency.md", markdown)
write_metrics(f"{metrics_dir}/efficiency.json", efficiency_metrics(efficiency, flops, p.efficiency_ratio))
efficiency

# %% [markdown]
# ## Accuracy against prefill compute
# Analytic FLOPs of what each method runs (compare/efficiency.py METHOD_PREFILL_WORK): the LLM layers over the tokens
# each sees (FastV: its first layers over every token), CaCoVID's policy layer over the full prompt, and the LLM
# layers the attention-scored methods run for their scores; at the embedded model's shape and at LLaVA-OneVision-7B's
# (its FastV after layer 1 of 28, the paper's K = 2). The accuracy is the embedded test accuracy in both panels.
# Then CaCoVID's accuracy interpolated at each of FastV's FLOPs (NaN outside CaCoVID's measured range).

# %%
accuracy_flops, equal_flops = accuracy_against_compute(main, vlm, test.items, settings.fastv_layer,
                                                      p.flops_frames * p.flops_tokens_per_frame, p.flops_text_tokens)
save_csv(accuracy_flops.round(4), f"{tables_dir}/accuracy_flops.csv")
save_csv(equal_flops.round(4), f"{tables_dir}/equal_flops.csv")
save_figure(accuracy_flops_figure(accuracy_flops), f"{figures_dir}/accuracy_flops.png")
equal_flops.round(3)
