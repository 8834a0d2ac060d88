"""The policy network's supervised upper bound on the embedded world (what the RL policy could reach), and the
table that sets it beside the RL-trained policies: accuracy and object coverage of each at every retention ratio,
with the same selection rule.

    targets = world_targets(split, "asked")                                 # (num_items, N) bool
    policy, history = train_upper_bound(task, targets, steps, items_per_step, lr, seed)
    table = selection_table(vlm, {"supervised (asked)": policy, "RL seed_0": p0}, test, test_embeds, ratios, imp_ratio)
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.cacovid import policy_keep_rule
from cacovid_lib.compare.coverage import object_coverage
from cacovid_lib.compare.evaluation import predict
from cacovid_lib.compare.intervals import accuracy_with_interval
from cacovid_lib.data.schema import asked_objects, asked_token_mask
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.supervised import train_supervised_policy
from cacovid_lib.stages.policy_training import PolicyTask

Target = Literal["asked", "objects"]
TARGETS = ("asked", "objects")  # the asked objects' tokens, or every object's tokens


def world_targets(split, target: Target) -> np.ndarray:
    """Per question, the video tokens the supervised policy is taught to keep: (num_items, N) bool. "asked": the tokens
    of the objects the question asks about (data.schema.asked_token_mask); "objects": every object's tokens (no
    background, no clutter: the all-objects oracle of stage evaluate_vlm)."""
    if target not in TARGETS:
        raise ValueError(f"target: {target!r} is not valid; valid: {', '.join(TARGETS)}")
    labels = split.object_labels[split.video_of_item].reshape(len(split), -1)  # (n, N) object index or -1
    if target == "objects":
        return labels >= 0
    return np.stack([asked_token_mask(row, item) for row, item in zip(labels, split.items)])


def train_upper_bound(task: PolicyTask, targets: np.ndarray, steps: int, items_per_step: int, lr: float, seed: int = 0,
                      progress: bool = True) -> tuple[CompressionPolicy, pd.DataFrame]:
    """A fresh policy (the RL policy's network: CompressionPolicy.from_llm, same seed) trained by supervision on
    `targets` (num_items, N) of `task`'s split -> (policy in eval mode, loss history)."""
    policy = CompressionPolicy.from_llm(task.vlm.language_model, seed=seed).float()
    masks = torch.from_numpy(targets)
    history = train_supervised_policy(policy, task.inputs_fn, lambda idx: masks[torch.as_tensor(idx)], len(task.split),
                                      steps, items_per_step, lr, seed=seed, progress=progress)
    return policy, pd.DataFrame(history)


@torch.no_grad()
def selection_table(vlm, policies: dict[str, CompressionPolicy], split, video_embeds, ratios, imp_ratio: float,
                    seed: int = 0) -> pd.DataFrame:
    """Each policy (name -> policy) selected by the any-ratio rule (§5) at each retention ratio on `split`: one row per
    policy x ratio with the accuracy, its 95% bootstrap interval and the object coverage of the kept tokens
    (compare.coverage.object_coverage)."""
    labels = split.object_labels[split.video_of_item].reshape(len(split), -1)  # (n, N)
    asked = [asked_objects(it) for it in split.items]
    rows = []
    for name, policy in policies.items():
        for r in ratios:
            preds, keeps = predict(vlm, split, policy_keep_rule(vlm, policy, split.items, r, imp_ratio),
                                   desc=f"{name} {r}", video_embeds=video_embeds)
            acc = accuracy_with_interval(preds == split.answers, seed=seed)
            rows.append({"policy": name, "retention": r, **acc, **object_coverage(labels, asked, keeps)})
    return pd.DataFrame(rows)


def upper_bound_figure(table: pd.DataFrame):
    """Two panels against the retention ratio, one curve per policy of `selection_table`: the share of questions whose
    kept tokens show the asked object, and the accuracy with its 95% interval. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    fig, (cover, acc) = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, rows in table.groupby("policy", sort=False):
        rows = rows.sort_values("retention")
        cover.plot(rows["retention"], rows["asked_objects_kept"], marker="o", label=name)
        acc.errorbar(rows["retention"], rows["accuracy"], yerr=[rows["accuracy"] - rows["ci_low"],
                     rows["ci_high"] - rows["accuracy"]], marker="o", capsize=3, label=name)
    cover.set(xlabel="retention ratio", ylabel="share of questions", title="kept tokens show the asked object")
    acc.set(xlabel="retention ratio", ylabel="test accuracy", title="accuracy (95% interval)")
    cover.legend(fontsize=7)
    fig.tight_layout()
    return fig
