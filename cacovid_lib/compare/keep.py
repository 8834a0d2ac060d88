"""What a selection method hands to the LLM (`Selection`) and the simplest keep rules (all, none, random).

Every keep rule of the harness, simple or not, has one signature and one return type:

    rule(item_indices (B,), video_embeds (B, N+1, D)) -> Selection

so that evaluation, timing and the scripts never ask which kind of rule they were given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class Selection:
    """What a selection method hands to the LLM for a batch of B items with N video tokens each."""

    keeps: torch.Tensor  # (B, N) bool
    video_embeds: torch.Tensor | None = None  # (B, N+1, D) replacement embeddings (merging methods), else None
    prune_after_layer: int | None = None  # drop the unkept tokens inside the LLM after this layer (FastV), else at input


# keep_rule(item_indices, video_embeds (B, N+1, D)) -> Selection
KeepRule = Callable[[np.ndarray, torch.Tensor], Selection]


def keep_all(idx, video_embeds) -> Selection:
    """Every video token (the upper bound)."""
    return Selection(torch.ones(video_embeds.shape[0], video_embeds.shape[1] - 1, dtype=torch.bool, device=video_embeds.device))  # (B, N)


def keep_none(idx, video_embeds) -> Selection:
    """No video token (the blind model)."""
    return Selection(torch.zeros(video_embeds.shape[0], video_embeds.shape[1] - 1, dtype=torch.bool, device=video_embeds.device))  # (B, N)


def random_keep_rule(ratio: float, seed: int = 0) -> KeepRule:
    """Keep `floor(ratio * N)` video tokens chosen uniformly at random (seeded per item, so an item's tokens do not
    depend on the batch it is in)."""

    def rule(idx, video_embeds) -> Selection:
        n = video_embeds.shape[1] - 1
        k = int(ratio * n)
        keeps = torch.zeros(len(idx), n, dtype=torch.bool, device=video_embeds.device)  # (B, N)
        for row, i in enumerate(idx):
            chosen = np.random.default_rng([seed, int(i)]).choice(n, k, replace=False)
            keeps[row, torch.from_numpy(chosen)] = True
        return Selection(keeps)

    return rule


def fixed_keep_rule(keeps: np.ndarray) -> KeepRule:
    """Keep the tokens a given (num_items, N) bool mask names for each item of the split (e.g. an oracle from the
    embedded world's ground truth)."""
    masks = torch.from_numpy(np.asarray(keeps, bool))

    def rule(idx, video_embeds) -> Selection:
        return Selection(masks[torch.as_tensor(idx, device=masks.device)].to(video_embeds.device, copy=True))

    return rule
