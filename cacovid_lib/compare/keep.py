"""What a selection method hands to the LLM (`Selection`) and the simplest keep rules (all, none, random)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

# keep_rule(item_indices, video_embeds (B, N+1, D)) -> keep masks (B, N) bool, or a Selection
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


@dataclass
class Selection:
    """What a selection method hands to the LLM for a batch of B items with N video tokens each."""

    keeps: torch.Tensor  # (B, N) bool
    video_embeds: torch.Tensor | None = None  # (B, N+1, D) replacement embeddings (merging methods), else None
    prune_after_layer: int | None = None  # drop the unkept tokens inside the LLM after this layer (FastV), else at input
