"""FlashVID as a keep rule: attention- and diversity-based tokens per frame, then tree-based spatiotemporal merging.

Fan et al., "FlashVID: Efficient Video Large Language Models via Training-free Tree-Based Spatiotemporal Token
Merging", ICLR 2026 (arXiv 2602.08024). Written from the paper's description (§3), two stages:

1. Attention and Diversity-based Token Selection (ADTS, §3.2): in each frame, a max-min diversity selection whose
   distances are calibrated by each token's attention and event relevance: greedy max-min, started as the max-min
   greedy is (DivPrune's too) at the token farthest from its nearest neighbour, calibrated: argmax_j w_j · min over
   i ≠ j of (1 - cos(x_i, x_j)); then repeatedly the token j maximising w_j · min over chosen i of (1 - cos(x_i, x_j)), where w_j =
   saliency_j · relevance_j (each divided by its largest value in the frame). Relevance = cosine similarity to the video's
   mean token, mapped to [0, 1] (tokens of the video's main event). These tokens are kept as they are.
2. Tree-based Spatiotemporal Token Merging (TSTM, §3.3): every other token links to its most similar token in the
   previous frame, at any position (objects move, which a same-position temporal merge misses), when the cosine
   similarity is at least the threshold; the links form redundancy trees rooted in their earliest frame, and each
   tree becomes one token at its root: the mean of all its tokens.

Stand-ins and simplifications:
- Saliency: FlashVID reads the vision encoder's [CLS] attention; SigLIP (LLaVA-OneVision) has none, so on
  LLaVA-OneVision with pixels the saliency is the attention each token receives in SigLIP's last layer
  (baselines.vision_attention_received, as VisionZip here); elsewhere baselines.frame_distinctiveness.
- Budget: ADTS keeps the share `selected_share` of floor(ρ·N) (split evenly over frames), the trees the rest.
  Links are made most similar first and stop when the trees left equal the trees' budget (so there are never
  fewer trees than it); if more trees are left, those with the largest summed saliency are kept and the others
  dropped. The share (0.7) and threshold (0.8) are this kit's settings, not tuned on its data.
"""
from __future__ import annotations

import torch

from cacovid_lib.compare.baselines import cosine_matrix, merging_rule, split_budget
from cacovid_lib.io_utils import KitInputError


def _scaled(x: torch.Tensor) -> torch.Tensor:
    """Non-negative scores divided by their largest (all ones when every score is 0)."""
    x = x.clamp(min=0)
    return x / x.max() if x.max() > 0 else torch.ones_like(x)


def adts_select(frame_tokens: torch.Tensor, saliency: torch.Tensor, relevance: torch.Tensor, k: int,
                first_pick: str = "isolated") -> torch.Tensor:
    """ADTS in one frame: the calibrated max-min diversity selection. (M, D), (M,), (M,) -> (M,) bool with k True.
    first_pick: "isolated", the token whose calibrated distance to its nearest other token is largest (the max-min
    greedy's start; the authors' release starts there too); "weight", the token of largest weight (an earlier reading
    of the kit, kept for the diagnosis in compare/peer_diagnosis.py: with 1-3 tokens per frame it chose background)."""
    m = frame_tokens.shape[0]
    keep = torch.zeros(m, dtype=torch.bool, device="cpu")  # the greedy loop's bookkeeping, on the CPU
    if k == 0:
        return keep
    weight = _scaled(saliency.float().cpu()) * _scaled(relevance.float().cpu())  # (M,) either may come on the GPU
    dist = (1 - cosine_matrix(frame_tokens)).clamp(min=0).cpu()  # (M, M)
    if first_pick == "isolated":
        isolation = (dist + torch.eye(m, device=dist.device) * 1e9).amin(0) if m > 1 else torch.ones(m, device=dist.device)  # (M,)
        first = int((weight * isolation).argmax())
    elif first_pick == "weight":
        first = int(weight.argmax())
    else:
        raise KitInputError(f"first_pick: {first_pick!r} is unknown; valid: isolated, weight")
    keep[first] = True
    nearest = dist[first].clone()  # (M,) distance to the chosen set
    for _ in range(k - 1):
        nxt = int((weight * nearest).masked_fill(keep, -1).argmax())
        keep[nxt] = True
        nearest = torch.minimum(nearest, dist[nxt])
    return keep


def tstm_heads(video_tokens: torch.Tensor, grid, eligible: torch.Tensor, saliency: torch.Tensor, num_trees: int,
               threshold: float = 0.8) -> torch.Tensor:
    """TSTM over the `eligible` tokens (N,) bool: link, resolve trees to their roots, keep `num_trees` trees.
    -> head_of (N,): each eligible token's root if its tree is kept, else -1 (non-eligible tokens: -1)."""
    t, h, w = grid
    hw = h * w
    n = t * hw
    eligible = eligible.cpu()
    parent = torch.arange(n, device="cpu")  # the trees are built in a Python loop: their bookkeeping lives on the CPU
    links = []  # (similarity, child, parent) candidates
    for f in range(1, t):
        now = torch.nonzero(eligible[f * hw:(f + 1) * hw]).flatten() + f * hw
        before = torch.nonzero(eligible[(f - 1) * hw:f * hw]).flatten() + (f - 1) * hw
        if len(now) == 0 or len(before) == 0:
            continue
        best, where = cosine_matrix(video_tokens[now], video_tokens[before]).cpu().max(1)  # (len(now),)
        links += [(s, c, p) for s, c, p in zip(best.tolist(), now.tolist(), before[where].tolist()) if s >= threshold]
    trees = int(eligible.sum())
    for s, child, par in sorted(links, reverse=True):  # most similar first, until the trees' budget
        if trees <= num_trees:
            break
        parent[child] = par
        trees -= 1
    for f in range(1, t):  # roots: parents lie one frame earlier, so resolving frame by frame suffices
        span = slice(f * hw, (f + 1) * hw)
        parent[span] = parent[parent[span]]
    roots = parent[eligible]
    weight = torch.zeros(n, device="cpu").index_add_(0, roots, saliency.float().cpu()[eligible])  # (N,) at the roots
    candidates = torch.unique(roots)
    kept_roots = candidates[weight[candidates].topk(num_trees).indices]
    head_of = torch.full((n,), -1, dtype=torch.long, device="cpu")  # as parent: CPU bookkeeping
    kept = torch.zeros(n, dtype=torch.bool, device="cpu")  # as head_of: CPU bookkeeping
    kept[kept_roots] = True
    head_of[eligible] = torch.where(kept[roots], roots, -1)
    return head_of


def flashvid_heads(video_tokens: torch.Tensor, grid, saliency: torch.Tensor, k: int, selected_share: float = 0.7,
                   threshold: float = 0.8) -> torch.Tensor:
    """FlashVID's grouping of one video: (N, D), saliency (N,) -> head_of (N,) with exactly k heads."""
    t, h, w = grid
    hw = h * w
    k_selected = round(selected_share * k)
    per_frame = split_budget(k_selected, torch.ones(t, device="cpu"), torch.full((t,), hw, device="cpu"))  # CPU counts
    relevance = ((1 + cosine_matrix(video_tokens, video_tokens.float().mean(0, keepdim=True))[:, 0]) / 2).cpu()  # (N,)
    frames = video_tokens.view(t, hw, -1)
    selected = torch.cat([adts_select(frames[f], saliency[f * hw:(f + 1) * hw], relevance[f * hw:(f + 1) * hw], c)
                          for f, c in enumerate(per_frame.tolist())])  # (N,) bool
    head_of = tstm_heads(video_tokens, grid, ~selected, saliency, k - k_selected, threshold)
    head_of[selected] = torch.nonzero(selected).flatten()
    return head_of


def flashvid_rule(grid, retention: float, saliency=None, selected_share: float = 0.7, threshold: float = 0.8):
    """FlashVID as a keep rule; `saliency(idx, video_embeds) -> (B, N)` (None: baselines.frame_distinctiveness)."""
    return merging_rule(grid, retention, lambda tokens, s, k: flashvid_heads(
        tokens, grid, s.cpu(), k, selected_share, threshold), saliency)
