"""PruneVid as a keep rule: merge static and similar tokens, then keep the merged tokens the question attends to.

Huang, Zhou and Han, "PruneVid: Visual Token Pruning for Efficient Video Large Language Models", Findings of ACL
2025 (arXiv 2412.16117). Written from the paper's description (§3), its rules:

1. Temporal segmentation: each frame's global feature (the mean of its tokens) is clustered by density peaks (DPC-KNN)
   into c = γ·t clusters (γ = 0.25); the clusters are made contiguous in time (each cluster keeps its longest run of
   frames, and the other runs join the longer neighbouring run), so each run is a segment of similar frames.
2. Static/dynamic split: inside a segment of W frames, a spatial position is static when its tokens' mean pairwise
   cosine similarity over the segment's frames exceeds τ (0.8); a static position's W tokens merge into one, their
   mean (temporal merging); the other, dynamic, tokens stay one per frame.
3. Spatial merging: the segment's static tokens, and each frame's dynamic tokens, are clustered by DPC-KNN into β
   (0.5) as many clusters as tokens; each cluster becomes one token, the mean of its members.
4. Question-guided selection, inside the LLM: at layer M (10 of 32), the attention from the question's tokens to each
   video token ranks them; the top α (0.4) are kept and the others' key-value cache is dropped.

The kit implements rules 1-3 as written, on the LLM's input video-token embeddings, and rule 4 before the LLM:
- DPC-KNN is baselines.density_peaks (cosine distance, 5 neighbours; the paper's code uses Euclidean distance and 7),
  and every member joins its most similar centre (cosine); c = max(1, round(γ·t)), at least one segment.
- Rule 4's ranking is the attention the last prompt token gives each video token at layer `fastv_layer`, averaged
  over heads (baselines.last_token_scores, shared with FastV across ratios), not the question tokens' attention at
  layer M; a merged token's attention is the sum of its members'. The kept tokens enter the LLM at its first layer:
  the harness's in-LLM path (VideoLLM.forward_pruned_inside) drops tokens after a layer but cannot carry merged ones.
- Exact budget: the paper's count follows from τ, β and α; here k = floor(ρ·N) is fixed, so spatial merging makes
  max(k, β·U) clusters (U: the tokens left after temporal merging; split over the segments' static sets and the
  frames' dynamic sets in proportion to their sizes) and the selection keeps k of them (in effect α = k / clusters).
  If temporal merging alone leaves fewer than k tokens, the least similar static positions stay dynamic.
- A merged token sits at its earliest member's position, so the kept tokens keep their order and position ids.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cacovid_lib.compare.baselines import (cosine_matrix, density_peaks, merge_into_heads, split_budget, token_budget,
                                           top_k_mask)
from cacovid_lib.compare.keep import Selection


def contiguous_segments(labels: list[int]) -> list[tuple[int, int]]:
    """Rule 1's contiguity: frames' cluster labels -> segments [(first frame, last + 1), ...] in order. Each cluster's
    longest run (every one of equal length, if 2+ frames) is a segment; the runs between two segments join the longer
    of the two (the left one on ties, the only one at either end)."""
    bounds = [0] + [f for f in range(1, len(labels)) if labels[f] != labels[f - 1]] + [len(labels)]
    runs = [(labels[a], a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    longest: dict[int, int] = {}
    for label, a, b in runs:
        longest[label] = max(longest.get(label, 0), b - a)
    segments: list[list[int]] = []
    loose_from = None  # first frame of the runs waiting to join a neighbouring segment
    for label, a, b in runs:
        if b - a < 2 or b - a < longest[label]:
            loose_from = a if loose_from is None else loose_from
            continue
        if loose_from is not None:
            if segments and segments[-1][1] - segments[-1][0] >= b - a:
                segments[-1][1] = a  # the loose runs join the segment on their left
            else:
                a = loose_from  # ... or this one
            loose_from = None
        segments.append([a, b])
    if loose_from is not None:  # loose runs at the end join the last segment, or are the whole video
        if segments:
            segments[-1][1] = len(labels)
        else:
            segments = [[0, len(labels)]]
    return [(a, b) for a, b in segments]


def temporal_segments(frame_features: torch.Tensor, num_clusters: int) -> list[tuple[int, int]]:
    """Rule 1: (t, D) frame features -> segments [(first frame, last + 1), ...] in order."""
    centres = density_peaks(frame_features, min(num_clusters, frame_features.shape[0]))  # (c,)
    labels = cosine_matrix(frame_features, frame_features[centres]).argmax(1)  # (t,) the most similar centre
    labels[centres] = torch.arange(len(centres), device=labels.device)  # a centre is in its own cluster
    return contiguous_segments(labels.tolist())


def static_similarity(frames: torch.Tensor) -> torch.Tensor:
    """Rule 2: each position's mean pairwise cosine similarity over a segment's frames: (W, hw, D) -> (hw,);
    -inf for a one-frame segment (nothing to merge). |Σ x_i|² = W + Σ_{i≠j} cos(x_i, x_j) for unit x."""
    w = frames.shape[0]
    if w < 2:
        return torch.full(frames.shape[1:2], float("-inf"), device=frames.device)
    total = F.normalize(frames.float(), dim=-1).sum(0)  # (hw, D)
    return ((total * total).sum(-1) - w) / (w * (w - 1))


def temporal_units(video_tokens: torch.Tensor, grid, k: int, threshold: float = 0.8, segment_share: float = 0.25):
    """Rules 1-2 on one video: (N, D) -> (unit_of (N,): the token each token is temporally merged into, itself if
    dynamic; set_of (N,): the set it is spatially merged within, its segment's static set (0..S-1) or its frame's
    dynamic set (S..S+t-1)), leaving at least k units."""
    t, h, w = grid
    hw, n = h * w, t * h * w
    device = video_tokens.device
    frames = video_tokens.view(t, hw, -1)
    segments = temporal_segments(frames.float().mean(1), max(1, round(segment_share * t)))  # rule 1
    similarity = torch.stack([static_similarity(frames[a:b]) for a, b in segments])  # (S, hw)
    lengths = torch.tensor([b - a for a, b in segments], device=device)  # (S,)
    static = (similarity > threshold).flatten()  # (S*hw,) rule 2
    saving = ((lengths[:, None] - 1) * static.view(len(segments), hw)).flatten()  # tokens each static position saves
    deficit = k - (n - int(saving.sum()))
    if deficit > 0:  # too few tokens would be left: the least similar static positions stay dynamic
        order = torch.where(static, similarity.flatten(), float("inf")).argsort()
        static[order[:int(torch.searchsorted(saving[order].cumsum(0), deficit)) + 1]] = False
    segment_of = torch.repeat_interleave(torch.arange(len(segments), device=device), lengths)  # (t,) each frame's
    starts = torch.tensor([a for a, _ in segments], device=device)  # (S,)
    is_static = static.view(len(segments), hw)[segment_of]  # (t, hw)
    position = torch.arange(hw, device=device)
    token = torch.arange(n, device=device).view(t, hw)
    # a static token joins the token at its position in its segment's first frame
    unit_of = torch.where(is_static, starts[segment_of][:, None] * hw + position, token).flatten()  # (N,)
    dynamic_set = len(segments) + torch.arange(t, device=device)  # (t,) numbered after the S static sets
    set_of = torch.where(is_static, segment_of[:, None], dynamic_set[:, None]).flatten()  # (N,)
    return unit_of, set_of


def prunevid_heads(video_tokens: torch.Tensor, grid, attention: torch.Tensor, k: int, threshold: float = 0.8,
                   segment_share: float = 0.25, cluster_share: float = 0.5) -> torch.Tensor:
    """PruneVid's grouping of one video: (N, D), attention (N,) -> head_of (N,), each token's kept head (-1: dropped),
    with exactly k heads."""
    n = video_tokens.shape[0]
    device = video_tokens.device
    unit_of, set_of = temporal_units(video_tokens, grid, k, threshold, segment_share)
    units, members = torch.unique(unit_of, return_counts=True)  # (U,) sorted
    unit_means = torch.zeros(n, video_tokens.shape[1], device=device).index_add_(
        0, unit_of, video_tokens.float())[units] / members[:, None]  # (U, D) rule 2's temporal means
    unit_set = set_of[units]  # (U,)
    sizes = torch.bincount(unit_set, minlength=int(set_of.max()) + 1)  # units per set
    num_clusters = min(len(units), max(k, round(cluster_share * len(units))))
    clusters = split_budget(num_clusters, sizes, sizes)  # per set, in proportion to its size
    cluster_of = torch.full((len(units),), -1, dtype=torch.long, device=device)  # each unit's cluster, by a unit index
    for one_set in torch.nonzero(clusters).flatten().tolist():  # rule 3, one set at a time
        inside = torch.nonzero(unit_set == one_set).flatten()  # (M,) indices into units
        centres = density_peaks(unit_means[inside], int(clusters[one_set]))  # (c,)
        nearest = cosine_matrix(unit_means[inside], unit_means[inside[centres]]).argmax(1)  # (M,)
        nearest[centres] = torch.arange(len(centres), device=device)  # a centre is in its own cluster
        cluster_of[inside] = inside[centres][nearest]
    group_of = cluster_of[torch.searchsorted(units, unit_of)]  # (N,) each token's cluster (-1: its set got none)
    grouped = group_of >= 0
    # rule 4: a cluster's attention is its members' together; the k with the most are kept
    score = torch.zeros(len(units), device=device).index_add_(0, group_of[grouped],
                                                              attention.float().to(device)[grouped])
    is_cluster = torch.zeros(len(units), dtype=torch.bool, device=device)
    is_cluster[group_of[grouped]] = True
    chosen = top_k_mask(score.masked_fill(~is_cluster, float("-inf"))[None], k)[0]  # (U,)
    earliest = torch.full((len(units),), n, device=device).scatter_reduce(
        0, group_of[grouped], torch.arange(n, device=device)[grouped], "amin")  # (U,) each cluster's first token
    kept = grouped & chosen[group_of.clamp(min=0)]
    return torch.where(kept, earliest[group_of.clamp(min=0)], -1)


def prunevid_rule(grid, retention: float, scores, threshold: float = 0.8, segment_share: float = 0.25,
                  cluster_share: float = 0.5):
    """PruneVid as a keep rule; scores(idx, video_embeds) -> (B, N), the attention each video token gets from the
    prompt (registry: the shared baselines.last_token_scores)."""

    def rule(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        k = token_budget(n, retention)
        attention = scores(idx, video_embeds)  # (B, N)
        keeps, merged = [], video_embeds.clone()
        for row, tokens in enumerate(video_embeds[:, :n]):
            heads = prunevid_heads(tokens, grid, attention[row], k, threshold, segment_share, cluster_share)
            keep, merged[row, :n] = merge_into_heads(tokens, heads)
            keeps.append(keep.to(video_embeds.device))
        return Selection(torch.stack(keeps), video_embeds=merged)

    return rule
