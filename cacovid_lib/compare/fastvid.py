"""FastVID as a keep rule: cut the video where adjacent frames differ, then prune and merge by density per segment.

Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large Language Models", NeurIPS 2025
(arXiv 2503.11187). Written from the paper's description (§4), two stages:

1. Dynamic Temporal Segmentation (DySeg, §4.1): frame i's global feature f_i (here: the mean of its video tokens);
   t_i = cos(f_i, f_{i+1}); the video is cut after the c-1 least similar transitions (S1: at least c segments)
   and after every transition with t_i < τ (S2: every scene change), so segments hold similar, ordered frames.
2. Density Spatiotemporal Pruning (STPrune, §4.2), per segment, whose share of the budget follows its size:
   - Attention-based selection (ATS): a share d of the segment's budget, split evenly over its frames, goes to
     each frame's most salient tokens, kept as they are;
   - Density-based token merging (DTM): the rest of the budget goes to anchor tokens, chosen by density-peaks
     clustering (DPC-kNN) among the tokens of the segment's anchor frames (every p-th frame); every other token of
     the segment merges into its most similar anchor (the anchor's embedding becomes the mean of its group), so
     the anchors keep their frames' order and positions while summarising the whole segment.

Stand-ins and simplifications:
- Saliency: FastVID ranks by the vision encoder's [CLS] attention; SigLIP (LLaVA-OneVision) has no [CLS] token, so
  on LLaVA-OneVision with pixels at hand the saliency is the attention each token receives in SigLIP's last layer
  (baselines.vision_attention_received, as VisionZip here); elsewhere (no pixels, Qwen2.5-VL) it is the
  embedding-only baselines.frame_distinctiveness.
- c: the paper's c = 8 is for 32 frames; here c = max(1, round(share·t)) with share 0.25 (8 of 32), so the
  8-frame embedded model gets 2. τ = 0.9, d = 0.4, p = 4 as the paper's defaults; DPC uses cosine distance
  and 5 neighbours; if the anchor frames hold fewer candidates than the anchor budget, every frame's do.
- Counts are rounded by largest remainders so that the video keeps exactly floor(ρ·N) tokens.
"""
from __future__ import annotations

import torch

from cacovid_lib.compare.baselines import cosine_matrix, density_peaks, merging_rule, split_budget


def segment_video(frame_features: torch.Tensor, min_segments: int, threshold: float = 0.9) -> list[tuple[int, int]]:
    """DySeg: (t, D) frame features -> segments [(first frame, last frame + 1), ...] in order."""
    t = frame_features.shape[0]
    if t == 1:
        return [(0, 1)]
    x = torch.nn.functional.normalize(frame_features.float(), dim=-1)
    similarity = (x[:-1] * x[1:]).sum(-1)  # (t-1,) frame i vs frame i+1
    cuts = set(similarity.topk(min(max(min_segments, 1) - 1, t - 1), largest=False).indices.tolist())  # S1
    cuts |= set(torch.nonzero(similarity < threshold).flatten().tolist())  # S2
    bounds = [0] + sorted(c + 1 for c in cuts) + [t]
    return list(zip(bounds[:-1], bounds[1:]))


def fastvid_heads(video_tokens: torch.Tensor, grid, saliency: torch.Tensor, k: int, segment_share: float = 0.25,
                  threshold: float = 0.9, salient_share: float = 0.4, anchor_interval: int = 4) -> torch.Tensor:
    """FastVID's grouping of one video: (N, D), saliency (N,) -> head_of (N,) (each token's kept head, -1: dropped),
    with exactly k heads."""
    t, h, w = grid
    hw = h * w
    frames = video_tokens.view(t, hw, -1)
    segments = segment_video(frames.float().mean(1), max(1, round(segment_share * t)), threshold)
    # the grouping is Python-side bookkeeping (loops, small index sets): its index tensors live on the CPU, and
    # video_tokens (any device) is only indexed with them
    sizes = torch.tensor([(b - a) * hw for a, b in segments], device="cpu")
    head_of = torch.full((t * hw,), -1, dtype=torch.long, device="cpu")  # CPU bookkeeping, as split_budget's counts
    saliency = saliency.float().cpu().view(t, hw)
    for (a, b), k_seg in zip(segments, split_budget(k, sizes, sizes).tolist()):
        k_salient = round(salient_share * k_seg)
        # split_budget works on the CPU (its counts are Python-side bookkeeping)
        per_frame = split_budget(k_salient, torch.ones(b - a, device="cpu"), torch.full((b - a,), hw, device="cpu"))
        chosen = [f * hw + saliency[f].topk(c).indices for f, c in zip(range(a, b), per_frame.tolist())]  # ATS
        salient = torch.cat(chosen)
        head_of[salient] = salient
        span = torch.arange(a * hw, b * hw, device="cpu")  # indexes head_of (CPU)
        rest = span[head_of[span] < 0]  # (R,) the segment's tokens not kept by ATS
        k_anchor = k_seg - k_salient
        if k_anchor == 0:
            continue  # the rest of the segment is dropped
        in_anchor_frame = (rest // hw - a) % anchor_interval == 0
        candidates = rest[in_anchor_frame] if int(in_anchor_frame.sum()) >= k_anchor else rest
        anchors = candidates[density_peaks(video_tokens[candidates], k_anchor).cpu()]  # DTM: density peaks
        nearest = cosine_matrix(video_tokens[rest], video_tokens[anchors]).argmax(1).cpu()  # (R,)
        head_of[rest] = anchors[nearest]
        head_of[anchors] = anchors  # an anchor is its own head even if an identical anchor ties with it
    return head_of


def fastvid_rule(grid, retention: float, saliency=None, segment_share: float = 0.25, threshold: float = 0.9,
                 salient_share: float = 0.4, anchor_interval: int = 4):
    """FastVID as a keep rule; `saliency(idx, video_embeds) -> (B, N)` (None: baselines.frame_distinctiveness)."""
    return merging_rule(grid, retention, lambda tokens, s, k: fastvid_heads(
        tokens, grid, s, k, segment_share, threshold, salient_share, anchor_interval), saliency)
