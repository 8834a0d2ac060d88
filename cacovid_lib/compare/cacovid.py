"""CaCoVID in the comparison harness: the trained policy as a keep rule (docs/method.md §5), the validation choice of its
inference-time `imp_ratio`, and the cost of its selection."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.efficiency import median_ms
from cacovid_lib.compare.evaluation import correct
from cacovid_lib.compare.intervals import accuracy_with_interval
from cacovid_lib.compare.keep import KeepRule, Selection, keep_all, random_keep_rule
from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy, load_policy, scores
from cacovid_lib.method.selection import select_tokens
from cacovid_lib.models.base import VideoLLM


def policy_keep_rule(vlm: VideoLLM, policy: CompressionPolicy, items: list[dict], retention: float, imp_ratio: float = 0.5,
                     max_frame_ratio: float | None = None) -> KeepRule:
    """The trained policy as an evaluation keep rule (docs/method.md §5): keep_rule(idx, video_embeds) -> Selection."""

    @torch.no_grad()
    def rule(idx, video_embeds) -> Selection:
        inputs = vlm.policy_inputs([vlm.prompt(items[i]) for i in idx], video_embeds)
        token_logits, frame_logits = policy(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask, inputs.grid)
        return Selection(torch.stack([select_tokens(scores(f), scores(s), vlm.grid, retention, imp_ratio, max_frame_ratio)
                                      for f, s in zip(frame_logits, token_logits)]))  # (B, N)

    return rule


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


def imp_ratio_table(vlm: VideoLLM, policies: dict[str, CompressionPolicy], split, video_embeds: torch.Tensor,
                    ratios: list[float], candidates: list[float]) -> pd.DataFrame:
    """Accuracy on `split` (the validation split) of each candidate imp_ratio (columns) at each retention ratio
    (rows), averaged over the policies (one per training seed). video_embeds (V, N+1, D): the split's videos."""
    return pd.DataFrame({imp: [float(np.mean([correct(vlm, split, policy_keep_rule(vlm, policy, split.items, r, imp),
                                                      f"val {imp} {r}", video_embeds).mean() for policy in policies.values()]))
                               for r in ratios] for imp in candidates}, index=ratios)


def choose_imp_ratio(table: pd.DataFrame) -> float:
    """The candidate (column of `imp_ratio_table`) with the best mean accuracy over the retention ratios (the first
    listed among equals)."""
    return float(table.mean().idxmax())


@torch.no_grad()
def selection_cost(vlm: VideoLLM, policy: CompressionPolicy, item: dict, video_embeds: torch.Tensor, retention: float,
                   imp_ratio: float = 0.5, repeats: int = 20) -> dict:
    """Median wall time of selecting tokens for one video (policy forward + any-ratio selection) against one LLM
    forward over the prompt with every video token. video_embeds (N+1, D)."""
    rule = policy_keep_rule(vlm, policy, [item], retention, imp_ratio)
    prompt = vlm.prompt(item)
    full = vlm.assemble(prompt, video_embeds, torch.ones(video_embeds.shape[0] - 1, dtype=torch.bool, device=video_embeds.device))
    select_ms = median_ms(lambda: rule(np.array([0]), video_embeds[None]), repeats)
    forward_ms = median_ms(lambda: vlm.forward_sequences([full]), repeats)
    return {"selection_ms": round(select_ms, 3), "llm_forward_all_tokens_ms": round(forward_ms, 3),
            "selection_share_of_forward": round(select_ms / forward_ms, 4)}


def retention_table(vlm: VideoLLM, policies: dict[str, CompressionPolicy], split, video_embeds: torch.Tensor,
                    ratios: list[float], imp_ratio: float, seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """The policy against random selection on `split` at each retention ratio -> (table, all-token accuracy).

    Table rows: retention ratios; columns: `cacovid` (mean over the policies, one per training seed) and `random`,
    each with its 95% bootstrap interval over the questions (`_ci_low`, `_ci_high`; `seed` seeds the random
    rule and the resampling); with several policies also `cacovid_sd` (over seeds) and `cacovid_<name>` per policy.
    The all-token accuracy comes with its interval too: {"accuracy", "ci_low", "ci_high"}."""
    full = accuracy_with_interval(correct(vlm, split, keep_all, "all tokens", video_embeds), seed=seed)
    rows = []
    for r in ratios:
        by_policy = {name: correct(vlm, split, policy_keep_rule(vlm, policy, split.items, r, imp_ratio), f"policy {name} {r}",
                                   video_embeds) for name, policy in policies.items()}
        ours = accuracy_with_interval(np.mean(list(by_policy.values()), axis=0), seed=seed)
        rand = accuracy_with_interval(correct(vlm, split, random_keep_rule(r, seed), f"random {r}", video_embeds), seed=seed)
        row = {"retention": r, "cacovid": ours["accuracy"], "cacovid_ci_low": ours["ci_low"], "cacovid_ci_high": ours["ci_high"]}
        if len(policies) > 1:
            row["cacovid_sd"] = float(np.std([o.mean() for o in by_policy.values()], ddof=1))
            row.update({f"cacovid_{name}": float(o.mean()) for name, o in by_policy.items()})
        row.update({"random": rand["accuracy"], "random_ci_low": rand["ci_low"], "random_ci_high": rand["ci_high"]})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("retention")
    table["cacovid_share_of_full"] = table["cacovid"] / full["accuracy"]
    return table, full
