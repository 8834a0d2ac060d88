"""HoliTom as a keep rule: redundancy-aware temporal segmentation and merging, then spatial merging, before the LLM.

Shao et al., "HoliTom: Holistic Token Merging for Fast Video Large Language Models", NeurIPS 2025
(arXiv 2505.21334). Written from the paper's description (§3), the outer-LLM part:

1. Temporal merging (§3.2): a token is temporally redundant inside a segment of frames when it stays similar
   (cosine ≥ τ) to the token at the same position in the previous frame across the whole segment; merging it into
   its first occurrence saves (segment length - 1) tokens. The segmentation maximises the total saving over the
   whole video (global, not a fixed window), solved exactly by dynamic programming over segment end points (the
   paper's Eq. 5 objective); each redundant position of a segment becomes one token: the mean of its run.
2. Spatial merging (§3.3): the budget is split between the redundant (merged) tokens and the others in proportion
   to their counts. The redundant ones are clustered by density peaks (DPC-kNN), each cluster merging into its
   centre (the mean of every original token it holds); of the others, the most salient are kept and each remaining
   one merges into its most similar kept one (attention-based selection with merging, VisionZip-like).

Stand-ins and simplifications:
- Saliency: HoliTom reads the vision encoder's attention; on LLaVA-OneVision with pixels it is the attention each
  token receives in SigLIP's last layer (baselines.vision_attention_received), elsewhere
  baselines.frame_distinctiveness.
- Exact budget: if temporal merging alone leaves fewer than floor(ρ·N) tokens, the runs with the lowest minimum
  similarity are undone until enough are left; DPC uses cosine distance and 5 neighbours; τ = 0.8 is this kit's
  setting, not tuned on its data; spatial merging is over the whole video rather than per segment.
- HoliTom's inner-LLM merging (merging hidden states of similar tokens at an LLM layer) is not built: the
  harness's in-LLM path (VideoLLM.forward_pruned_inside) can drop tokens after a layer but not merge them, nor
  start from a pre-reduced set; only the outer-LLM HoliTom is registered.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cacovid_lib.compare.baselines import cosine_matrix, density_peaks, merging_rule, split_budget


def adjacent_similarity(video_tokens: torch.Tensor, grid) -> torch.Tensor:
    """Cosine similarity of each token to the same position in the previous frame: (N, D) -> (t-1, hw)."""
    t, h, w = grid
    x = F.normalize(video_tokens.float().view(t, h * w, -1), dim=-1)
    return (x[1:] * x[:-1]).sum(-1).cpu()


def best_segments(similar: torch.Tensor) -> list[tuple[int, int]]:
    """The segmentation [(first frame, last + 1), ...] saving the most tokens: a segment of L frames saves (L - 1)
    tokens per position similar across all its transitions. similar (t-1, hw) bool. Dynamic programming:
    best[b] = max over a < b of best[a] + saving(a, b)."""
    t = similar.shape[0] + 1
    best = [0] * (t + 1)
    start = [0] * (t + 1)
    saving = {}
    for a in range(t):
        run = torch.ones(similar.shape[1], dtype=torch.bool, device=similar.device)
        for b in range(a + 1, t + 1):
            if b - a >= 2:
                run &= similar[b - 2]  # transition (b-2) -> (b-1) is inside the segment
            saving[a, b] = int(run.sum()) * (b - a - 1)
    for b in range(1, t + 1):
        start[b], best[b] = max(((a, best[a] + saving[a, b]) for a in range(b)), key=lambda pair: pair[1])
    bounds, b = [], t
    while b > 0:
        bounds.append((start[b], b))
        b = start[b]
    return bounds[::-1]


def temporal_heads(video_tokens: torch.Tensor, grid, k: int, threshold: float = 0.8) -> torch.Tensor:
    """Stage 1: each token's first occurrence in its segment if it is temporally redundant, else itself; at least k
    distinct heads are left. (N, D) -> (N,) long."""
    t, h, w = grid
    hw = h * w
    sim = adjacent_similarity(video_tokens, grid)  # (t-1, hw)
    runs = []  # (minimum similarity, first frame, last + 1, position)
    for a, b in best_segments(sim >= threshold):
        if b - a < 2:
            continue
        low = sim[a:b - 1].min(0).values  # (hw,) the run's weakest transition
        runs += [(float(low[p]), a, b, p) for p in torch.nonzero(low >= threshold).flatten().tolist()]
    heads = torch.arange(t * hw, device="cpu")  # Python-side bookkeeping over the runs (sim is on the CPU too)
    left = t * hw - sum(b - a - 1 for _, a, b, _ in runs)
    runs.sort(reverse=True)  # undo the weakest runs first while too few tokens are left
    while left < k:
        _, a, b, _ = runs.pop()
        left += b - a - 1
    for _, a, b, p in runs:
        heads[torch.arange(a, b, device="cpu") * hw + p] = a * hw + p  # heads is CPU bookkeeping
    return heads


def holitom_heads(video_tokens: torch.Tensor, grid, saliency: torch.Tensor, k: int, threshold: float = 0.8) -> torch.Tensor:
    """HoliTom's (outer-LLM) grouping of one video: (N, D), saliency (N,) -> head_of (N,) with exactly k heads."""
    n = video_tokens.shape[0]
    heads = temporal_heads(video_tokens, grid, k, threshold)  # (N,)
    units, size = torch.unique(heads, return_counts=True)
    redundant, single = units[size > 1], units[size == 1]
    counts = torch.tensor([len(redundant), len(single)], device="cpu")  # split_budget counts on the CPU
    k_red, k_single = split_budget(k, counts, counts).tolist()
    # the grouping is CPU bookkeeping (heads, units come from temporal_heads on the CPU); video_tokens is only indexed
    final = torch.full((n,), -1, dtype=torch.long, device="cpu")
    if k_red:  # redundant runs: DPC-kNN over the runs' means, each run merging into its cluster's centre
        # on the CPU with the grouping it averages (heads index it there)
        means = torch.zeros(n, video_tokens.shape[1], device="cpu").index_add_(
            0, heads, video_tokens.float().cpu())[redundant]
        means = means / size[size > 1][:, None]  # (R, D)
        centres = density_peaks(means, k_red).cpu()
        nearest = cosine_matrix(means, means[centres]).argmax(1)  # (R,)
        nearest[centres] = torch.arange(k_red, device=nearest.device)  # a centre stays its own cluster
        centre_of_run = torch.full((n,), -1, dtype=torch.long, device="cpu")  # CPU bookkeeping, as final
        centre_of_run[redundant] = redundant[centres][nearest]
        in_run = size[torch.searchsorted(units, heads)] > 1  # (N,) token belongs to a redundant run
        final[in_run] = centre_of_run[heads[in_run]]
    if k_single:  # the others: the most salient kept, each other one merging into its most similar kept one
        salient = single[saliency.float().cpu()[single].topk(k_single).indices]
        nearest = cosine_matrix(video_tokens[single], video_tokens[salient]).argmax(1).cpu()  # (S,)
        final[single] = salient[nearest]
        final[salient] = salient
    return final


def holitom_rule(grid, retention: float, saliency=None, threshold: float = 0.8):
    """HoliTom as a keep rule; `saliency(idx, video_embeds) -> (B, N)` (None: baselines.frame_distinctiveness)."""
    return merging_rule(grid, retention, lambda tokens, s, k: holitom_heads(tokens, grid, s, k, threshold), saliency)
