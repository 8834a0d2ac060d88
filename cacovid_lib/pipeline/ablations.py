"""The paper's ablations on the embedded default: short policy trainings that differ from a base recipe in one
setting each, scored on the validation split (never the test split)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.cacovid import policy_keep_rule
from cacovid_lib.compare.evaluation import predict
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.train_loop import PolicyTrainConfig, train_policy
from cacovid_lib.pipeline.policy_training import PolicyTask


def ablation_runs(variants: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """{ablation: {variant: overrides}} -> {run name: overrides}, one run per distinct set of overrides, so the
    base recipe (empty overrides) is trained once and shared by every ablation."""
    runs: dict[str, dict] = {}
    for variants_of in variants.values():
        for overrides in variants_of.values():
            runs.setdefault(run_name(overrides), overrides)
    return runs


def run_name(overrides: dict) -> str:
    """'base' or 'key=value,...' (sorted), the name a run is stored and looked up under."""
    if not overrides:
        return "base"
    return ",".join(f"{k}={'+'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in sorted(overrides.items()))


def train_variant(task: PolicyTask, base: PolicyTrainConfig, overrides: dict) -> tuple[CompressionPolicy, pd.DataFrame]:
    """Train a fresh policy (same seed as the base) with `overrides` applied -> (policy, history)."""
    cfg = replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    policy = CompressionPolicy.from_llm(task.vlm.model.model.language_model, seed=cfg.seed)
    state = train_policy(policy, task.inputs_fn, task.reward_fn, len(task.split), cfg, progress=False)
    return policy.eval(), pd.DataFrame(state.history)


@torch.no_grad()
def validation_accuracy(vlm, policy: CompressionPolicy, split, video_embeds, ratios, imp_ratio: float) -> dict[float, float]:
    """Accuracy of `policy` on a validation split at each retention ratio."""
    return {r: float(np.mean(predict(vlm, split, policy_keep_rule(vlm, policy, split.items, r, imp_ratio),
                                     video_embeds=video_embeds)[0] == split.answers)) for r in ratios}
