"""The paper's ablations on the embedded default: short policy trainings that differ from a base recipe in one
setting each, scored on the validation split (never the test split), and the tables and metrics of stage ablations.

    base = base_recipe(policy_train, steps)                  # policy.train with the ablations' step count
    results, histories = run_ablations(task, base, variants, val, val_embeds, ratios, rule)
    tables = ablation_tables(variants, results)              # one table per ablation
"""
from __future__ import annotations

import time
from dataclasses import replace

import pandas as pd
import torch
from tqdm import tqdm

from cacovid_lib.compare.cacovid import policy_keep_rule
from cacovid_lib.compare.evaluation import correct
from cacovid_lib.compare.intervals import bootstrap_interval
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.selection import SelectionRule
from cacovid_lib.method.train_loop import PolicyTrainConfig, train_policy
from cacovid_lib.stages.policy_training import PolicyTask, join_rollout_log

HISTORY_COLUMNS = ["run", "step", "reward_token", "reward_frame", "reward_content", "loss", "entropy_token",
                   "zero_spread_token", "asked_in_rollouts", "reward_with_asked", "reward_without_asked"]


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


def base_recipe(policy_train: PolicyTrainConfig, steps: int) -> PolicyTrainConfig:
    """The ablations' base recipe: the main policy's (policy.train) with `steps` (ablations.steps) steps."""
    return replace(policy_train, steps=steps)


def train_variant(task: PolicyTask, base: PolicyTrainConfig, overrides: dict) -> tuple[CompressionPolicy, pd.DataFrame]:
    """Train a fresh policy (same seed as the base) with `overrides` applied -> (policy, history)."""
    cfg = replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    policy = CompressionPolicy.from_llm(task.vlm.language_model, seed=cfg.seed)
    task.rollout_log = []
    state = train_policy(policy, task.inputs_fn, task.reward_fn, len(task.split), cfg, progress=False)
    return policy.eval(), pd.DataFrame(join_rollout_log(state.history, task.rollout_log))


@torch.no_grad()
def validation_scores(vlm, policy: CompressionPolicy, split, video_embeds, ratios, rule: SelectionRule, seed: int = 0) -> dict:
    """`val_accuracy_at_<r>` of `policy` with selection `rule` on a validation split at each retention ratio, each followed by its 95%
    bootstrap interval over the split's questions (`_ci_low`, `_ci_high`; resampling seeded by `seed`)."""
    out = {}
    for r in ratios:
        outcomes = correct(vlm, split, policy_keep_rule(vlm, policy, split.items, r, rule), video_embeds=video_embeds)
        low, high = bootstrap_interval(outcomes, seed=seed)
        name = f"val_accuracy_at_{r:.2f}"
        out.update({name: round(float(outcomes.mean()), 4), f"{name}_ci_low": round(low, 4), f"{name}_ci_high": round(high, 4)})
    return out


def run_ablations(task: PolicyTask, base: PolicyTrainConfig, variants: dict[str, dict[str, dict]], split, video_embeds,
                  ratios, rule: SelectionRule, seed: int = 0) -> tuple[dict[str, dict], pd.DataFrame]:
    """Train every distinct run of `variants` once (ablation_runs) and score it on `split` (validation) ->
    ({run name: validation scores, final_token_reward (mean token-mode reward over the last fifth of training),
    train_s}, the runs' histories (HISTORY_COLUMNS, one row per step and run))."""
    results, histories = {}, []
    for name, overrides in tqdm(ablation_runs(variants).items(), desc="ablation runs", mininterval=5):
        start = time.time()
        policy, history = train_variant(task, base, overrides)
        scores = validation_scores(task.vlm, policy, split, video_embeds, ratios, rule, seed)
        tail = history["reward_token"].tail(max(1, len(history) // 5)).mean()
        results[name] = {**scores, "final_token_reward": round(float(tail), 4), "train_s": round(time.time() - start, 1)}
        histories.append(history.assign(run=name).reindex(columns=HISTORY_COLUMNS))
        print(name, results[name])
    return results, pd.concat(histories)


def ablation_tables(variants: dict[str, dict[str, dict]], results: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """One table per ablation: its variants (rows) x the scores of the run each variant names."""
    return {ablation: pd.DataFrame({variant: results[run_name(o)] for variant, o in variants_of.items()}).T.rename_axis(ablation)
            for ablation, variants_of in variants.items()}


def ablations_markdown(tables: dict[str, pd.DataFrame], base: PolicyTrainConfig, num_train: int) -> str:
    """reports/tables/ablations.md: a header saying what the runs are, then one table per ablation."""
    text = [f"Validation accuracy of short policy runs ({base.steps} steps, G = {base.num_generations} unless varied, "
            f"{num_train} training questions), with 95% bootstrap intervals over the validation questions; "
            "`final_token_reward` = mean token-mode reward over the last fifth of training. Every run is scored with the "
            "selection rule chosen on validation by stage evaluate_policy (reports/tables/selection_rules.csv)."]
    for ablation, table in tables.items():
        text += ["", f"### {ablation}", "", table.to_markdown()]
    return "\n".join(text) + "\n"


def ablation_curves_figure(histories: pd.DataFrame, variants: dict[str, dict[str, dict]], window: int = 20):
    """Per step (`window`-step rolling means), one column per ablation and one curve per variant: the token-mode
    reward (top row) and the token head's entropy (bottom row: log 2 = undecided, 0 = collapsed). Returns the
    matplotlib Figure."""
    import math

    import matplotlib.pyplot as plt

    rows = [("reward_token", f"token-mode reward ({window}-step mean)"), ("entropy_token", "token-head entropy (nats)")]
    fig, axes = plt.subplots(len(rows), len(variants), figsize=(4 * len(variants), 3.0 * len(rows)), squeeze=False)
    for col, (ablation, variants_of) in enumerate(variants.items()):
        for row, (column, label) in enumerate(rows):
            ax = axes[row, col]
            for variant, overrides in variants_of.items():
                run = histories[histories["run"] == run_name(overrides)].set_index("step")[column]
                run.rolling(window, min_periods=1).mean().plot(ax=ax, label=str(variant))
            ax.set_title(ablation if row == 0 else "")
            ax.set_xlabel("step")
            if column == "entropy_token":
                ax.axhline(math.log(2), color="grey", lw=0.8, ls=":")
            if col == 0:
                ax.set_ylabel(label)
        axes[0, col].legend(fontsize=7)
    plt.tight_layout()
    return fig
