"""FrameFusion as a keep rule: merge tokens that repeat the previous frame's, then prune the rest by importance.

Fu et al., "FrameFusion: Combining Similarity and Importance for Video Token Reduction on Large Vision Language
Models", ICCV 2025 (arXiv 2501.01986). Written from the paper's description (§4), its rules:

1. Similarity: each vision token is compared (cosine) only with the token at the same spatial position in the
   previous frame, the pair most likely to be redundant.
2. Merging: a token at least S_th similar to its predecessor merges into it; a run of such tokens merges into the
   run's first token, which becomes the run's mean. If more tokens pass S_th than the budget allows, only the most
   similar ones merge, and merging ends.
3. Cascade: merging is applied at successive shallow layers, each on the tokens the previous one left, until a layer
   merges less than a share (0.1) of the tokens.
4. Pruning: at the layer after merging ends, the merged sequence is pruned to the budget by importance, the
   cumulative attention each token receives (averaged over heads and every query), keeping the top ones; the others
   are dropped for every later layer.

The kit implements rules 1-4 before the LLM, on the LLM's input video-token embeddings:
- The paper merges hidden states after the first layers' attention; here each cascade round (rule 3) merges on the
  input embeddings, a merged token standing for its run's mean, compared with the nearest earlier token still in the
  sequence at its position. A merged token is the mean of every original token of its run (the paper averages the
  run's current hidden states, so a token merged at an earlier layer counts once).
- Importance (rule 4) is the attention the last prompt token (not every query) gives each video token at layer
  `fastv_layer`, averaged over heads (baselines.last_token_scores, shared with FastV across ratios), read with every
  token present; a merged token's importance is the sum of its run's. The paper's budget is a compute cost over the
  layers; here it is exactly k = floor(ρ·N) tokens, and merging never leaves fewer than k.
- The merged and kept tokens enter the LLM at its first layer: the harness's in-LLM path
  (VideoLLM.forward_pruned_inside) drops tokens after a layer but cannot merge them.
- S_th: 0.6 is the authors' setting for LLaVA-Video-7B, not tuned on this kit's models.
- A merged token sits at its run's first position, so the kept tokens keep their order and position ids.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cacovid_lib.compare.baselines import merge_into_heads, token_budget, top_k_mask
from cacovid_lib.compare.keep import Selection


def framefusion_heads(video_tokens: torch.Tensor, grid, importance: torch.Tensor, k: int, threshold: float = 0.6,
                      ratio_floor: float = 0.1) -> torch.Tensor:
    """FrameFusion's grouping of one video: (N, D), importance (N,) -> head_of (N,), each token's kept head (-1:
    dropped), with exactly k heads."""
    t, h, w = grid
    hw, n = h * w, t * h * w
    device = video_tokens.device
    x = video_tokens.float()
    frame = torch.arange(t, device=device)[:, None].expand(t, hw)  # (t, hw) each token's frame
    position = torch.arange(hw, device=device).expand(t, hw)  # (t, hw) each token's place in its frame
    head_of = torch.arange(n, device=device)  # each token's run head: the earliest token of its merged run
    alive = torch.ones(t, hw, dtype=torch.bool, device=device)  # the heads: tokens still in the sequence
    while True:  # rule 3: one merging round per shallow layer
        sums = torch.zeros_like(x).index_add_(0, head_of, x)
        current = (sums / torch.bincount(head_of, minlength=n).clamp(min=1)[:, None]).view(t, hw, -1)  # runs' means
        # rule 1: the nearest earlier token still in the sequence at the same position
        latest = torch.where(alive, frame, -1).cummax(0).values  # (t, hw) the latest alive frame up to f
        previous = torch.cat([torch.full((1, hw), -1, device=device), latest[:-1]])  # ... before f
        similarity = F.cosine_similarity(current, current[previous.clamp(min=0), position], dim=-1)  # (t, hw)
        similarity = similarity.masked_fill(~alive | (previous < 0), float("-inf"))
        above = int((similarity >= threshold).sum())
        count = min(above, int(alive.sum()) - k)  # rule 2: the most similar first, never below the budget
        if count <= 0:
            break
        merging = top_k_mask(similarity.view(1, -1), count).view(t, hw)
        # a merging token joins the nearest earlier token at its position that stays (its run's head; the first
        # alive token of a position has no predecessor, so it always stays)
        anchor = torch.where(alive & ~merging, frame, -1).cummax(0).values  # (t, hw)
        target = torch.where(merging, anchor * hw + position, frame * hw + position).flatten()  # (N,)
        head_of = target[head_of]
        tokens_before = int(alive.sum())
        alive &= ~merging
        if count < above or above < ratio_floor * tokens_before:  # the budget is reached, or too few merged
            break
    # rule 4: the k heads with the most importance (a run's importance is its members' together)
    score = torch.zeros(n, device=device).index_add_(0, head_of, importance.float().to(device))
    kept = top_k_mask(score.masked_fill(~alive.flatten(), float("-inf"))[None], k)[0]  # (N,)
    return torch.where(kept[head_of], head_of, -1)


def framefusion_rule(grid, retention: float, scores, threshold: float = 0.6, ratio_floor: float = 0.1):
    """FrameFusion as a keep rule; scores(idx, video_embeds) -> (B, N), the attention each video token gets from the
    prompt (registry: the shared baselines.last_token_scores)."""

    def rule(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        k = token_budget(n, retention)
        importance = scores(idx, video_embeds)  # (B, N)
        keeps, merged = [], video_embeds.clone()
        for row, tokens in enumerate(video_embeds[:, :n]):
            keep, merged[row, :n] = merge_into_heads(tokens, framefusion_heads(tokens, grid, importance[row], k,
                                                                               threshold, ratio_floor))
            keeps.append(keep.to(video_embeds.device))
        return Selection(torch.stack(keeps), video_embeds=merged)

    return rule
