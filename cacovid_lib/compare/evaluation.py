"""Accuracy of the video LLM on a split under any keep-mask rule (all tokens, none, a policy, a baseline)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cacovid_lib.compare.keep import KeepRule, Selection, keep_all
from cacovid_lib.models.base import VideoLLM, encode_videos


@torch.no_grad()
def option_scores(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, sel: Selection) -> torch.Tensor:
    """Option-text log-likelihoods of a batch of items under a `Selection`. video_embeds (B, N+1, D) -> (B, num_options)."""
    prompts = [vlm.prompt(item) for item in items]
    embeds = video_embeds if sel.video_embeds is None else sel.video_embeds.to(video_embeds.device)
    keeps = sel.keeps.to(video_embeds.device)
    if sel.prune_after_layer is not None:
        return vlm.option_logprobs_pruned_inside(prompts, embeds, keeps, sel.prune_after_layer)
    return vlm.option_logprobs(prompts, embeds, keeps)


@torch.no_grad()
def predict(vlm: VideoLLM, split, keep_rule: KeepRule = keep_all, batch_size: int = 64, desc: str = "evaluate",
            video_embeds: torch.Tensor | None = None):
    """Predicted option index (num_items,) and the kept video tokens (num_items, N) bool of every item of `split`.
    `video_embeds` (V, N+1, D): the split's encoded videos, when the caller already has them."""
    video_embeds = encode_videos(vlm, split.frames) if video_embeds is None else video_embeds
    preds, kept = [], []
    for start in tqdm(range(0, len(split), batch_size), desc=desc, mininterval=5, leave=False):
        idx = np.arange(start, min(start + batch_size, len(split)))
        embeds = video_embeds[split.video_of_item[idx]]  # (B, N+1, D)
        selection = keep_rule(idx, embeds)
        scores = option_scores(vlm, [split.items[i] for i in idx], embeds, selection)  # (B, options)
        preds.append(scores.argmax(-1).cpu().numpy())
        kept.append(selection.keeps.cpu().numpy())  # (B, N)
    return np.concatenate(preds), np.concatenate(kept)


def correct(vlm: VideoLLM, split, keep_rule: KeepRule, desc: str = "evaluate", video_embeds: torch.Tensor | None = None,
            batch_size: int = 64) -> np.ndarray:
    """Whether each item of `split` is answered correctly under `keep_rule` -> (num_items,) bool: the per-question
    outcomes an accuracy and its bootstrap interval (compare/intervals.py) are computed from."""
    preds, _ = predict(vlm, split, keep_rule, batch_size=batch_size, desc=desc, video_embeds=video_embeds)
    return preds == split.answers


def accuracy_table(split, preds: np.ndarray) -> pd.DataFrame:
    """Accuracy overall and per question type."""
    df = pd.DataFrame({"question_type": [it.get("question_type", "all") for it in split.items],
                       "correct": preds == split.answers})
    table = df.groupby("question_type")["correct"].mean()
    table["overall"] = df["correct"].mean()
    return table.rename("accuracy").to_frame()
