"""How long the paper's main table takes on GPUs: an estimate from a FLOPs model, not a measurement.

One evaluation pass per model x benchmark (evaluation_pass.py) spends, per question:
- reading the video (CPU, decord: `video_decode_s`, a stated assumption; long videos seek further) and encoding it
  once (the vision tower: `vision_tflop`);
- per (method, ratio) run, one prefill over the prompt with the kept video tokens (compare/efficiency.prefill_flops;
  FastV runs its first K layers over every token), plus CaCoVID's policy layer over every token;
- per run, `answer_tokens` decoding steps with a KV cache, each memory-bound: the weights read once
  (`weight_gb` / `memory_tb_s`).
Compute-bound parts run at `effective_tflops` (a model FLOPs utilisation of ~40% of an H100's 989 dense bf16 TFLOPS).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cacovid_lib.compare.efficiency import QWEN2_7B, LLMShape, prefill_flops

# Qwen2.5-3B (Qwen2.5-VL-3B's language model, its config.json)
QWEN2_5_3B = LLMShape(layers=36, hidden=2048, intermediate=11008, heads=16, kv_heads=2, vocab=151936)
# questions per benchmark as the paper scores them: LongVideoBench val, MLVU dev (multiple choice), MLVU test
# (multiple choice), VideoMME (no subtitles)
BENCHMARK_ITEMS = {"longvideobench": 1337, "mlvu_dev": 2174, "mlvu_test": 502, "videomme": 2700}


@dataclass(frozen=True)
class PassModel:
    """One model's shapes in the pass."""

    name: str
    shape: LLMShape
    video_tokens: int  # N at 32 frames
    weight_gb: float  # bf16 weights read per decoding step
    vision_tflop: float  # the vision tower over 32 frames
    methods: int  # compressing methods run at each ratio (LLaVA-only ones left out of Qwen2.5-VL)


MODELS = {
    # SigLIP-400M over 32 frames x 729 patches: 2 x 0.4e9 x 23.3k ~ 19 TFLOP
    "llava_onevision_7b": PassModel("LLaVA-OneVision-7B", QWEN2_7B, 32 * 196, 16.0, 19.0, methods=7),
    # 252 x 448 frames in pairs (paper/params.yaml): 16 x 9 x 16 tokens; a 0.67B ViT over 16 x 18 x 32 patches:
    # 2 x 0.67e9 x 9.2k ~ 12
    "qwen2_5_vl_3b": PassModel("Qwen2.5-VL-3B", QWEN2_5_3B, 16 * 9 * 16, 7.5, 12.0, methods=5),
}


def seconds_per_question(model: PassModel, ratios=(0.25, 0.2, 0.15, 0.1), text_tokens: int = 160,
                         answer_tokens: int = 4, effective_tflops: float = 400.0, memory_tb_s: float = 3.35,
                         video_decode_s: float = 1.0, fastv_layers: int = 2) -> dict:
    """The pass's cost for one question, by part (seconds on one H100-class GPU)."""
    full = prefill_flops(model.shape, model.video_tokens + text_tokens)
    kept = sum(prefill_flops(model.shape, int(r * model.video_tokens) + text_tokens) for r in ratios)
    policy = prefill_flops(model.shape, model.video_tokens + text_tokens, layers=1) * len(ratios)  # CaCoVID's layer
    fastv = prefill_flops(model.shape, model.video_tokens + text_tokens, layers=fastv_layers) * len(ratios)
    prefill_tflop = (full + model.methods * kept + policy + fastv) / 1e12
    runs = 1 + model.methods * len(ratios)
    return {"model": model.name, "runs": runs, "video_decode_s": video_decode_s,
            "vision_s": model.vision_tflop / effective_tflops, "prefill_s": prefill_tflop / effective_tflops,
            "decode_s": runs * answer_tokens * model.weight_gb / (1000 * memory_tb_s)}


def main_table_gpu_hours(**assumptions) -> pd.DataFrame:
    """GPU-hours of each model's main table (every benchmark, every run), and the wall-clock hours on 8 GPUs."""
    rows = []
    for key, model in MODELS.items():
        parts = seconds_per_question(model, **assumptions)
        per_question = sum(v for k, v in parts.items() if k.endswith("_s"))
        questions = sum(BENCHMARK_ITEMS.values())
        rows.append(parts | {"seconds_per_question": per_question, "questions": questions,
                             "gpu_hours": per_question * questions / 3600,
                             "hours_on_8_gpus": per_question * questions / 3600 / 8})
    return pd.DataFrame(rows).round(3)


def seconds_per_training_item(model: PassModel, rollouts: int = 32, iterations: int = 5, sample_rate: float = 0.02,
                              frames: int = 32, text_tokens: int = 200, answer_tokens: int = 12,
                              effective_tflops: float = 400.0, memory_tb_s: float = 3.35,
                              video_decode_s: float = 1.0) -> dict:
    """One Video-R1 item of policy training (docs/method.md §3-§4), by part, on one H100-class GPU: the video read
    and encoded once; per iteration the policy's layer forward and backward over every token (x3), the G rollouts'
    prefills with their k = sample_rate x tokens-a-frame tokens a frame, and their KV-cached answers stopped at
    </answer> (`answer_tokens` memory-bound steps for the batch of G rows)."""
    full_len = model.video_tokens + text_tokens
    kept = max(1, round(sample_rate * model.video_tokens / frames)) * frames + text_tokens
    policy = 3 * prefill_flops(model.shape, full_len, layers=1)
    rollout = rollouts * prefill_flops(model.shape, kept)
    per_iteration = (policy + rollout) / 1e12 / effective_tflops + answer_tokens * model.weight_gb / (1000 * memory_tb_s)
    return {"model": model.name, "video_decode_s": video_decode_s, "vision_s": model.vision_tflop / effective_tflops,
            "iterations_s": iterations * per_iteration}


def training_gpu_hours(items: int, **assumptions) -> pd.DataFrame:
    """GPU-hours of one epoch over `items` blind-filtered Video-R1 video items, per model, and hours on 8 GPUs."""
    rows = []
    for model in MODELS.values():
        parts = seconds_per_training_item(model, **assumptions)
        per_item = sum(v for k, v in parts.items() if k.endswith("_s"))
        rows.append(parts | {"seconds_per_item": per_item, "items": items, "gpu_hours": per_item * items / 3600,
                             "hours_on_8_gpus": per_item * items / 3600 / 8})
    return pd.DataFrame(rows).round(3)
