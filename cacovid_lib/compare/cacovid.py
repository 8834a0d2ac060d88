"""CaCoVID in the comparison harness: the trained policy as a keep rule (docs/method.md §5), the validation choice of its
inference-time selection rule (imp_ratio, per-frame cap, frame floor and sharpness, allocation), and the cost of its
selection."""
from __future__ import annotations

import re
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.baselines import remembered
from cacovid_lib.compare.efficiency import median_ms
from cacovid_lib.compare.evaluation import correct
from cacovid_lib.compare.intervals import accuracy_with_interval
from cacovid_lib.compare.keep import KeepRule, Selection, keep_all, random_keep_rule
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy, load_policy, scores
from cacovid_lib.method.selection import RELEASE_RULE, SelectionRule, select_tokens
from cacovid_lib.models.base import VideoLLM


def policy_scores(vlm: VideoLLM, policy: CompressionPolicy, items: list[dict]):
    """The policy's keep scores of a batch: scores(idx, video_embeds (B, N+1, D)) -> (frame scores (B, t), token
    scores (B, N)), float32 logit differences. They do not depend on the retention ratio or the selection rule, so
    pass `remembered(policy_scores(...))` to several rules to run the policy once per batch."""

    @torch.no_grad()
    def batch_scores(idx, video_embeds):
        inputs = vlm.policy_inputs([vlm.prompt(items[i]) for i in idx], video_embeds)
        token_logits, frame_logits = policy(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask, inputs.grid)
        return scores(frame_logits), scores(token_logits)  # (B, t), (B, N)

    return batch_scores


def policy_keep_rule(vlm: VideoLLM, policy: CompressionPolicy, items: list[dict], retention: float,
                     rule: SelectionRule = RELEASE_RULE, shared_scores=None) -> KeepRule:
    """The trained policy as an evaluation keep rule (docs/method.md §5): keep_rule(idx, video_embeds) -> Selection.
    shared_scores: a `policy_scores` function shared with other rules (None: the policy runs for this rule)."""
    batch_scores = shared_scores or policy_scores(vlm, policy, items)

    def keep_rule(idx, video_embeds) -> Selection:
        frame_scores, token_scores = batch_scores(idx, video_embeds)  # (B, t), (B, N)
        return Selection(torch.stack([select_tokens(f, s, vlm.grid, retention, rule)
                                      for f, s in zip(frame_scores, token_scores)]))  # (B, N)

    return keep_rule


def policy_folders(policy_dir) -> dict[str, Path]:
    """The trained policies under `policy_dir`, by name: one per training seed (`seed_<s>/` subfolders, in seed
    order) where there are any, else `policy_dir` itself (a single run) -> {folder name: folder}."""
    folder = Path(policy_dir)
    seeds = sorted((d for d in folder.glob("seed_*") if re.fullmatch(r"seed_\d+", d.name) and d.is_dir()),
                   key=lambda d: int(d.name.split("_")[1]))
    if seeds:
        return {d.name: d for d in seeds}
    if not folder.is_dir():
        raise KitInputError(f"{folder}: policy folder not found (run the train_policy stage: dvc repro train_policy)")
    return {folder.name: folder}


def load_policies(policy_dir, vlm: VideoLLM) -> dict[str, CompressionPolicy]:
    """Every trained policy under `policy_dir` (policy_folders), loaded onto `vlm`'s LLM, in eval mode."""
    return {name: load_policy(folder, vlm.language_model).eval() for name, folder in policy_folders(policy_dir).items()}


def chosen_rule(policy_metrics: dict) -> SelectionRule:
    """The selection rule chosen on validation, from stage evaluate_policy's metrics (reports/metrics/policy.json)."""
    return SelectionRule(**{f.name: policy_metrics[f.name] for f in fields(SelectionRule)})


RULE_SEARCH_ORDER = ("imp_ratio", "cap_multiple", "frame_floor", "frame_sharpness", "allocation")


def check_rule_candidates(candidates: dict[str, list]) -> None:
    """A one-line error for a candidate value that makes no valid SelectionRule (before any model loads)."""
    for name, values in candidates.items():
        for value in values:
            SelectionRule(**{name: value})


def rule_search(vlm: VideoLLM, policies: dict[str, CompressionPolicy], split, video_embeds: torch.Tensor,
                ratios: list[float], candidates: dict[str, list]) -> tuple[SelectionRule, pd.DataFrame]:
    """The selection rule chosen on `split` (the validation split) by coordinate search: from the release's rule, each
    field of RULE_SEARCH_ORDER in turn takes the candidate value with the best accuracy (mean over the retention ratios
    and over the policies, one per training seed), the other fields at their values so far; among equals the value
    already held (the release's, or the one chosen before) stays. video_embeds (V, N+1, D): the split's videos.
    -> (chosen rule, one row per rule tried: its fields, the accuracy at each ratio, the mean, and whether chosen)."""
    shared = {name: remembered(policy_scores(vlm, policy, split.items)) for name, policy in policies.items()}
    tried: dict[SelectionRule, dict] = {}

    def accuracy(rule: SelectionRule) -> float:
        if rule not in tried:
            by_ratio = {r: float(np.mean([correct(vlm, split, policy_keep_rule(vlm, policy, split.items, r, rule, shared[name]),
                                                  f"val {r}", video_embeds).mean() for name, policy in policies.items()]))
                        for r in ratios}
            tried[rule] = {**by_ratio, "mean": float(np.mean(list(by_ratio.values())))}
        return tried[rule]["mean"]

    best = RELEASE_RULE
    for field in RULE_SEARCH_ORDER:
        for value in candidates.get(field, []):
            rule = replace(best, **{field: value})
            if accuracy(rule) > accuracy(best):
                best = rule
    rows = [{**asdict(rule), **{f"val_{r}": v for r, v in scores.items() if r != "mean"}, "val_mean": scores["mean"],
             "chosen": rule == best} for rule, scores in tried.items()]
    return best, pd.DataFrame(rows)


@torch.no_grad()
def selection_cost(vlm: VideoLLM, policy: CompressionPolicy, item: dict, video_embeds: torch.Tensor, retention: float,
                   rule: SelectionRule = RELEASE_RULE, repeats: int = 20) -> dict:
    """Median wall time of selecting tokens for one video (policy forward + any-ratio selection) against one LLM
    forward over the prompt with every video token. video_embeds (N+1, D)."""
    keep_rule = policy_keep_rule(vlm, policy, [item], retention, rule)
    prompt = vlm.prompt(item)
    full = vlm.assemble(prompt, video_embeds, torch.ones(video_embeds.shape[0] - 1, dtype=torch.bool, device=video_embeds.device))
    select_ms = median_ms(lambda: keep_rule(np.array([0]), video_embeds[None]), repeats)
    forward_ms = median_ms(lambda: vlm.forward_sequences([full]), repeats)
    return {"selection_ms": round(select_ms, 3), "llm_forward_all_tokens_ms": round(forward_ms, 3),
            "selection_share_of_forward": round(select_ms / forward_ms, 4)}


def retention_table(vlm: VideoLLM, policies: dict[str, CompressionPolicy], split, video_embeds: torch.Tensor,
                    ratios: list[float], rule: SelectionRule, seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """The policy with `rule` against the release's rule and random selection on `split` at each retention ratio
    -> (table, all-token accuracy).

    Table rows: retention ratios; columns: `cacovid` (mean over the policies, one per training seed), `release_rule`
    (the same policies with the release's selection rule; left out when `rule` is the release's) and `random`, each
    with its 95% bootstrap interval over the questions (`_ci_low`, `_ci_high`; `seed` seeds the random rule and the
    resampling); with several policies also `cacovid_sd` (over seeds) and `cacovid_<name>` per policy. The all-token
    accuracy comes with its interval too: {"accuracy", "ci_low", "ci_high"}."""
    full = accuracy_with_interval(correct(vlm, split, keep_all, "all tokens", video_embeds), seed=seed)
    shared = {name: remembered(policy_scores(vlm, policy, split.items)) for name, policy in policies.items()}
    rules = {"cacovid": rule} | ({} if rule == RELEASE_RULE else {"release_rule": RELEASE_RULE})
    rows = []
    for r in ratios:
        row = {"retention": r}
        for column, column_rule in rules.items():
            by_policy = {name: correct(vlm, split, policy_keep_rule(vlm, policy, split.items, r, column_rule, shared[name]),
                                       f"{column} {name} {r}", video_embeds) for name, policy in policies.items()}
            ours = accuracy_with_interval(np.mean(list(by_policy.values()), axis=0), seed=seed)
            row.update({column: ours["accuracy"], f"{column}_ci_low": ours["ci_low"], f"{column}_ci_high": ours["ci_high"]})
            if len(policies) > 1 and column == "cacovid":
                row["cacovid_sd"] = float(np.std([o.mean() for o in by_policy.values()], ddof=1))
                row.update({f"cacovid_{name}": float(o.mean()) for name, o in by_policy.items()})
        rand = accuracy_with_interval(correct(vlm, split, random_keep_rule(r, seed), f"random {r}", video_embeds), seed=seed)
        row.update({"random": rand["accuracy"], "random_ci_low": rand["ci_low"], "random_ci_high": rand["ci_high"]})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("retention")
    table["cacovid_share_of_full"] = table["cacovid"] / full["accuracy"]
    return table, full
