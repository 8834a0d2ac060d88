"""The paper pipeline's efficiency stage: the paper's efficiency table for one model, and each method's selection
memory at LLaVA-OneVision-7B's shape.

Time: answering.efficiency_profile per method (median selection and prefill time per question, every CUDA device
synchronised; video decoding and the vision tower left out, as the same for every method). Memory:
compare/memory.py's selection_peak_table (measured on CUDA, else counted from the tensors each selection allocates,
on the meta device: no memory is used and no GPU is needed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cacovid_lib.paper.answering import decode_readable, efficiency_profile, methods_for
from cacovid_lib.paper.evaluation_pass import load_stage_model, stage_items
from cacovid_lib.paper.params import DEFAULTS, method_settings


def efficiency_table(params: dict, model: str, policy_dir) -> pd.DataFrame:
    """One row per method of the `efficiency` block this model runs: selection_ms, prefill_ms, prefill_all_tokens_ms,
    kept_tokens, averaged over the block's first `items` questions."""
    import torch

    from cacovid_lib.method.policy import load_policy
    from cacovid_lib.models.qwen2_5_vl import Qwen25VLVideoLLM

    block = params.get("efficiency") or {}
    evaluation = params.get("evaluation") or {}
    benchmark = block.get("benchmark", "videomme")
    items = stage_items(params, benchmark)[:block.get("items", 50)]
    vlm = load_stage_model(params, model, "cuda" if torch.cuda.is_available() else "cpu")
    readable, _, skipped = decode_readable(vlm, items, np.arange(len(items)))  # a bad video is left out, as in the pass
    items = [items[i] for i in readable]
    runnable = methods_for(isinstance(vlm, Qwen25VLVideoLLM))
    has_policy = Path(policy_dir, "policy.safetensors").is_file()
    policy = load_policy(policy_dir, vlm.language_model).to(vlm.device).eval() if has_policy else None
    rows = []
    for method in block.get("methods", ["all"]):
        if method not in runnable or (method == "cacovid" and policy is None):
            continue
        profile = efficiency_profile(vlm, items, method, block.get("retention", 0.25), policy=policy,
                                     imp_ratio=evaluation.get("imp_ratio", DEFAULTS["imp_ratio"]),
                                     repeats=block.get("repeats", 10), seed=evaluation.get("seed", DEFAULTS["seed"]),
                                     **method_settings(evaluation))
        rows.append({"model": model, "method": method, "retention": 1.0 if method == "all" else block.get("retention", 0.25),
                     "benchmark": benchmark, "unreadable_videos_left_out": len(skipped)} | profile)
    return pd.DataFrame(rows)


def selection_memory(params: dict) -> pd.DataFrame:
    """compare/memory.py's table of each method's selection memory on LLaVA-OneVision-7B's LLM, at the `efficiency`
    block's memory_frames x memory_tokens_per_frame video tokens (default the paper's 32 x 196)."""
    from cacovid_lib.compare.memory import selection_peak_table

    evaluation, block = params.get("evaluation") or {}, params.get("efficiency") or {}
    return selection_peak_table(methods=evaluation.get("methods"), frames=block.get("memory_frames", 32),
                                tokens_per_frame=block.get("memory_tokens_per_frame", 196))
