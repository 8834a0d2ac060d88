"""Where does the selection rule lose the asked object? For each question, the step of the any-ratio rule
(docs/method.md §5) that leaves every token of an asked object out, read from the embedded world's ground truth.

An asked object on screen is kept by the policy's top tokens (steps 1-3), kept only by the even fill (step 4), or lost.
A lost object's best-ranked token sits at rank r_j within each frame j that shows it (0 = the frame's best), so a frame
would have kept it with a budget of r_j + 1 top tokens; with need = min_j (r_j + 1):

- **ranking**: need exceeds the whole top-token budget: the token head ranks the object too low in every frame;
- **per-frame cap**: need fits the budget but not the cap on one frame (`SelectionRule.frame_cap`);
- **frame allocation**: need fits the cap, but the frame budgets (frame head, floor, sharpness) gave every frame
  that shows it fewer than it needed.

With the global allocation there are no frame budgets: a lost object is ranked below the budget (**ranking**).
A question with several asked objects is counted under the worst step of its lost ones (ranking, then cap, then
allocation).

    table = selection_loss_table(vlm, policies, test, test_embeds, [0.1, 0.05], {"release": RELEASE_RULE})
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.cacovid import policy_scores
from cacovid_lib.data.schema import asked_objects
from cacovid_lib.method.selection import SelectionRule, select_tokens, top_tokens

STEPS = ("kept by top tokens", "kept by the fill", "lost: frame allocation", "lost: per-frame cap", "lost: ranking")


def loss_step(frame_scores: torch.Tensor, token_scores: torch.Tensor, labels: np.ndarray, asked: list[int], grid,
              retention: float, rule: SelectionRule) -> str | None:
    """The step (one of STEPS) at which one question's asked objects are kept or lost. frame_scores (t,), token_scores
    (t·h·w,), labels (t·h·w,): the object each token shows (-1: none); asked: the asked objects. None when no asked
    object is on screen."""
    t, h, w = grid
    on_screen = [o for o in asked if (labels == o).any()]
    if not on_screen:
        return None
    keep = select_tokens(frame_scores, token_scores, grid, retention, rule).cpu().numpy()
    top = top_tokens(frame_scores, token_scores, grid, retention, rule).cpu().numpy()
    if all(top[labels == o].any() for o in on_screen):
        return STEPS[0]
    lost = [o for o in on_screen if not keep[labels == o].any()]
    if not lost:
        return STEPS[1]
    budget = int(top.sum())
    if rule.allocation == "global":
        return STEPS[4]
    cap = rule.frame_cap(retention, h * w)
    ranks = token_scores.float().view(t, h * w).argsort(dim=-1, descending=True).argsort(dim=-1).cpu().numpy()  # (t, h*w)
    by_frame = labels.reshape(t, h * w)
    steps = []
    for o in lost:
        need = min(int(ranks[j][by_frame[j] == o].min()) + 1 for j in range(t) if (by_frame[j] == o).any())
        steps.append(4 if need > budget else 3 if need > cap else 2)
    return STEPS[max(steps)]


@torch.no_grad()
def selection_loss_table(vlm, policies: dict, split, video_embeds: torch.Tensor, ratios: list[float],
                         rules: dict[str, SelectionRule], batch_size: int = 64) -> pd.DataFrame:
    """Share of `split`'s questions (those with an asked object on screen) at each step of STEPS, for each policy
    (name -> CompressionPolicy) x rule (name -> SelectionRule) x retention ratio. The policy runs once per batch;
    video_embeds (V, N+1, D): the split's videos. Also the top-token budget and the per-frame cap of each row."""
    labels = split.object_labels[split.video_of_item].reshape(len(split), -1)  # (n, N)
    asked = [asked_objects(it) for it in split.items]
    t, h, w = vlm.grid
    rows = []
    for name, policy in policies.items():
        score_batch = policy_scores(vlm, policy, split.items)
        frames, tokens = [], []
        for start in range(0, len(split), batch_size):
            idx = np.arange(start, min(start + batch_size, len(split)))
            f, s = score_batch(idx, video_embeds[split.video_of_item[idx]])  # (B, t), (B, N)
            frames.append(f.cpu())
            tokens.append(s.cpu())
        frames, tokens = torch.cat(frames), torch.cat(tokens)  # (n, t), (n, N)
        for rule_name, rule in rules.items():
            for r in ratios:
                steps = [loss_step(frames[i], tokens[i], labels[i], asked[i], vlm.grid, r, rule) for i in range(len(split))]
                steps = pd.Series([s for s in steps if s is not None])
                per_frame = rule.allocation == "per_frame"
                rows.append({"policy": name, "rule": rule_name, "retention": r, "questions": len(steps),
                             **{step: float((steps == step).mean()) for step in STEPS},
                             "top_token_budget": math.floor(rule.imp_ratio * r * t * h * w),
                             "frame_cap": rule.frame_cap(r, h * w) if per_frame else np.nan})
    return pd.DataFrame(rows)


def selection_loss_figure(table: pd.DataFrame):
    """One stacked horizontal bar per policy x rule x ratio of `selection_loss_table`: the share of questions at each
    step, kept (greens) then lost (reds). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    colours = ["#2b8a3e", "#8ce99a", "#ffa8a8", "#f03e3e", "#862e2e"]
    ratios = sorted(table["retention"].unique(), reverse=True)
    fig, axes = plt.subplots(1, len(ratios), figsize=(5.2 * len(ratios), 0.35 * len(table) / len(ratios) + 1.4),
                             squeeze=False, sharey=True)
    for ax, r in zip(axes[0], ratios):
        rows = table[table["retention"] == r].iloc[::-1]
        labels = [f"{p} · {rule} rule" for p, rule in zip(rows["policy"], rows["rule"])]
        left = np.zeros(len(rows))
        for step, colour in zip(STEPS, colours):
            ax.barh(labels, rows[step], left=left, color=colour, label=step)
            left += rows[step].to_numpy()
        ax.set(xlim=(0, 1), title=f"retention {r}", xlabel="share of questions (asked object on screen)")
    axes[0][0].legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.08), ncol=3)
    fig.tight_layout()
    return fig
