"""The policy network's supervised upper bound on the embedded world (what the RL policy could reach), and the
table that sets it beside the RL-trained policies: accuracy and object coverage of each at every retention ratio,
with the same selection rules (the release's and the one chosen on validation).

    targets = world_targets(split, "asked")                                 # (num_items, N) bool
    policy, history = train_upper_bound(task, targets, steps, items_per_step, lr, seed)
    table = selection_table(vlm, {"supervised (asked)": policy, "RL seed_0": p0}, test, test_embeds, ratios,
                            {"release": RELEASE_RULE, "chosen": chosen_rule})
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.baselines import remembered
from cacovid_lib.compare.cacovid import policy_keep_rule, policy_scores
from cacovid_lib.compare.coverage import object_coverage
from cacovid_lib.compare.evaluation import predict
from cacovid_lib.compare.intervals import accuracy_with_interval
from cacovid_lib.data.schema import asked_objects, asked_token_mask
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.selection import SelectionRule
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
def selection_table(vlm, policies: dict[str, CompressionPolicy], split, video_embeds, ratios, rules: dict[str, SelectionRule],
                    seed: int = 0) -> pd.DataFrame:
    """Each policy (name -> policy) selected by each any-ratio rule (§5; name -> SelectionRule, the same rule shared
    by identical names) at each retention ratio on `split`: one row per policy x rule x ratio with the accuracy, its
    95% bootstrap interval and the object coverage of the kept tokens (compare.coverage.object_coverage)."""
    labels = split.object_labels[split.video_of_item].reshape(len(split), -1)  # (n, N)
    asked = [asked_objects(it) for it in split.items]
    rows = []
    for name, policy in policies.items():
        shared = remembered(policy_scores(vlm, policy, split.items))  # the policy runs once per batch for every rule
        for rule_name, rule in rules.items():
            for r in ratios:
                preds, keeps = predict(vlm, split, policy_keep_rule(vlm, policy, split.items, r, rule, shared),
                                       desc=f"{name} {rule_name} {r}", video_embeds=video_embeds)
                acc = accuracy_with_interval(preds == split.answers, seed=seed)
                rows.append({"policy": name, "rule": rule_name, "retention": r, **acc, **object_coverage(labels, asked, keeps)})
    return pd.DataFrame(rows)


def upper_bound_figure(table: pd.DataFrame):
    """Two panels against the retention ratio, one curve per policy x rule of `selection_table` (the release's rule
    dashed): the share of questions whose kept tokens show the asked object, and the accuracy with its 95% interval.
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    fig, (cover, acc) = plt.subplots(1, 2, figsize=(9, 3.3))
    for (name, rule), rows in table.groupby(["policy", "rule"], sort=False):
        rows, style, label = rows.sort_values("retention"), "--" if rule == "release" else "-", f"{name}, {rule} rule"
        cover.plot(rows["retention"], rows["asked_objects_kept"], marker="o", ls=style, label=label)
        acc.errorbar(rows["retention"], rows["accuracy"], yerr=[rows["accuracy"] - rows["ci_low"],
                     rows["ci_high"] - rows["accuracy"]], marker="o", ls=style, capsize=3, label=label)
    cover.set(xlabel="retention ratio", ylabel="share of questions", title="kept tokens show the asked object")
    acc.set(xlabel="retention ratio", ylabel="test accuracy", title="accuracy (95% interval)")
    cover.legend(fontsize=7)
    fig.tight_layout()
    return fig
