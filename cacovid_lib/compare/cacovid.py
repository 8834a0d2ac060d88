"""CaCoVID in the comparison harness: the trained policy as a keep rule (METHOD §5) and the cost of its selection."""
from __future__ import annotations

import numpy as np
import torch

from cacovid_lib.compare.efficiency import median_ms
from cacovid_lib.method.policy import CompressionPolicy, scores
from cacovid_lib.method.selection import select_tokens
from cacovid_lib.models.base import VideoLLM


def policy_keep_rule(vlm: VideoLLM, policy: CompressionPolicy, items: list[dict], retention: float, imp_ratio: float = 0.5,
                     max_frame_ratio: float | None = None):
    """The trained policy as an evaluation keep rule (METHOD §5): keep_rule(idx, video_embeds) -> (B, N) masks."""

    @torch.no_grad()
    def rule(idx, video_embeds):
        inputs = vlm.policy_inputs([vlm.prompt(items[i]) for i in idx], video_embeds)
        token_logits, frame_logits = policy(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask, inputs.grid)
        return torch.stack([select_tokens(scores(f), scores(s), vlm.grid, retention, imp_ratio, max_frame_ratio)
                            for f, s in zip(frame_logits, token_logits)])

    return rule


@torch.no_grad()
def selection_cost(vlm: VideoLLM, policy: CompressionPolicy, item: dict, video_embeds: torch.Tensor, retention: float,
                   imp_ratio: float = 0.5, repeats: int = 20) -> dict:
    """Median wall time of selecting tokens for one video (policy forward + any-ratio selection) against one LLM
    forward over the prompt with every video token. video_embeds (N+1, D)."""
    rule = policy_keep_rule(vlm, policy, [item], retention, imp_ratio)
    prompt = vlm.prompt(item)
    full = vlm.assemble(prompt, video_embeds, torch.ones(video_embeds.shape[0] - 1, dtype=torch.bool))
    select_ms = median_ms(lambda: rule(np.array([0]), video_embeds[None]), repeats)
    forward_ms = median_ms(lambda: vlm.forward_sequences([full]), repeats)
    return {"selection_ms": round(select_ms, 3), "llm_forward_all_tokens_ms": round(forward_ms, 3),
            "selection_share_of_forward": round(select_ms / forward_ms, 4)}
