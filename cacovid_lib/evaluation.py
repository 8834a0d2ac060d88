"""Accuracy of the video LLM on a split under any keep-mask rule (all tokens, none, a policy, a baseline)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .adapter import VideoLLM

# keep_rule(item_indices, video_embeds (B, N+1, D)) -> keep masks (B, N) bool
KeepRule = Callable[[np.ndarray, torch.Tensor], torch.Tensor]


def keep_all(idx, video_embeds):
    return torch.ones(video_embeds.shape[0], video_embeds.shape[1] - 1, dtype=torch.bool)


def keep_none(idx, video_embeds):
    return torch.zeros(video_embeds.shape[0], video_embeds.shape[1] - 1, dtype=torch.bool)


def random_keep_rule(ratio: float, seed: int = 0) -> KeepRule:
    """Keep `floor(ratio * N)` video tokens chosen uniformly at random (seeded per item)."""

    def rule(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        k = int(ratio * n)
        keeps = torch.zeros(len(idx), n, dtype=torch.bool)
        for row, i in enumerate(idx):
            chosen = np.random.default_rng([seed, int(i)]).choice(n, k, replace=False)
            keeps[row, torch.from_numpy(chosen)] = True
        return keeps

    return rule


@torch.no_grad()
def score_items(vlm: VideoLLM, items: list[dict], video_embeds: torch.Tensor, keeps: torch.Tensor) -> torch.Tensor:
    """Option-text log-likelihoods for a batch of items, one keep-mask each, in one forward -> (B, num_options)."""
    return vlm.option_logprobs([vlm.prompt(item) for item in items], video_embeds, keeps)


@torch.no_grad()
def predict(vlm: VideoLLM, split, keep_rule: KeepRule = keep_all, batch_size: int = 64, desc: str = "evaluate"):
    """Predicted option index and the number of kept video tokens for every item of `split`."""
    preds, kept = [], []
    for start in tqdm(range(0, len(split), batch_size), desc=desc, mininterval=5, leave=False):
        idx = np.arange(start, min(start + batch_size, len(split)))
        pixels = torch.stack([vlm.preprocess(split.frames[v]) for v in split.video_of_item[idx]])
        video_embeds = vlm.encode_video(pixels)  # (B, N+1, D)
        keeps = keep_rule(idx, video_embeds).to(video_embeds.device)  # (B, N)
        scores = score_items(vlm, [split.items[i] for i in idx], video_embeds, keeps)
        preds.append(scores.argmax(-1).cpu().numpy())
        kept.append(keeps.sum(-1).cpu().numpy())
    return np.concatenate(preds), np.concatenate(kept)


def accuracy_table(split, preds: np.ndarray) -> pd.DataFrame:
    """Accuracy overall and per question type."""
    df = pd.DataFrame({"question_type": [it.get("question_type", "all") for it in split.items],
                       "correct": preds == split.answers})
    table = df.groupby("question_type")["correct"].mean()
    table["overall"] = df["correct"].mean()
    return table.rename("accuracy").to_frame()


def blind_filter(vlm: VideoLLM, split, batch_size: int = 64) -> list[dict]:
    """Blind filtering (METHOD §4): the items the model does *not* answer correctly without the video; the
    others carry no signal about which tokens matter."""
    preds, _ = predict(vlm, split, keep_none, batch_size, desc="blind filter")
    return [item for item, p, a in zip(split.items, preds, split.answers) if p != a]
