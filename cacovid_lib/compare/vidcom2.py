"""VidCom² as a keep rule: per-frame budgets by frame uniqueness, then the most unique tokens of each frame.

Liu, Wang, Ma and Zhang, "Video Compression Commander: Plug-and-Play Inference Acceleration for Video Large
Language Models", EMNLP 2025 (arXiv 2505.14454). Written from the paper's description (§3), two stages:

1. Frame Compression Adjustment (§3.2): the video's global token g is the mean of all its tokens; a frame's
   uniqueness u_t is minus the mean cosine similarity of its tokens to g; the frames' budget shares are
   softmax((u_t - max u) / τ) = σ_t, and frame t keeps the share (1 + σ_t - 1/T) / T of the budget (the paper's
   r_t = r·(1 + σ_t - 1/T), whose mean over frames is r). A frame unlike the rest of the video gets more tokens.
2. Adaptive Token Compression (§3.3): inside each frame, a token's uniqueness is minus its cosine similarity to its
   frame's mean token plus to the video's mean token; each frame keeps its budget of the most unique tokens.

VidCom² needs no attention weights (its design principle: compatible with efficient attention kernels), so it
reads only the video-token embeddings and runs on every backend unchanged.
Simplifications: the per-frame counts are rounded by largest remainders (and capped at a frame's token count,
the overflow going to the other frames) so that the video keeps exactly floor(ρ·N) tokens; τ = 0.01 by default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cacovid_lib.compare.baselines import split_budget, token_budget
from cacovid_lib.compare.keep import Selection


def frame_budgets(video_tokens: torch.Tensor, grid, k: int, temperature: float = 0.01) -> torch.Tensor:
    """Stage 1: how many of the k kept tokens each frame gets. video_tokens (N, D) -> (t,) long summing to k."""
    t, h, w = grid
    x = F.normalize(video_tokens.float().view(t, h * w, -1), dim=-1)  # (t, hw, D)
    video_mean = F.normalize(video_tokens.float().mean(0), dim=-1)  # (D,)
    uniqueness = -(x @ video_mean).mean(1)  # (t,) minus the mean similarity to the whole video
    sigma = torch.softmax((uniqueness - uniqueness.max()) / temperature, dim=0)  # (t,)
    shares = (1 + sigma - 1 / t) / t  # (t,) sums to 1
    return split_budget(k, shares, torch.full((t,), h * w, device="cpu"))  # split_budget counts on the CPU


def token_uniqueness(video_tokens: torch.Tensor, grid) -> torch.Tensor:
    """Stage 2's score: -(cos(token, its frame's mean) + cos(token, the video's mean)). (N, D) -> (N,)."""
    t, h, w = grid
    x = video_tokens.float().view(t, h * w, -1)
    to_frame = F.cosine_similarity(x, x.mean(1, keepdim=True), dim=-1)  # (t, hw)
    to_video = F.cosine_similarity(x, x.mean((0, 1))[None, None], dim=-1)  # (t, hw)
    return -(to_frame + to_video).flatten()


def vidcom2_select(video_tokens: torch.Tensor, grid, k: int, temperature: float = 0.01) -> torch.Tensor:
    """VidCom²'s keep mask for one video: (N, D) -> (N,) bool with exactly k True."""
    t, h, w = grid
    counts = frame_budgets(video_tokens, grid, k, temperature)  # (t,)
    score = token_uniqueness(video_tokens, grid).view(t, h * w).cpu()  # (t, hw)
    keep = torch.zeros(t, h * w, dtype=torch.bool, device="cpu")  # filled in a Python loop from the CPU scores
    for frame, c in enumerate(counts.tolist()):
        keep[frame, score[frame].topk(c).indices] = True
    return keep.flatten()


def vidcom2_rule(grid, retention: float, temperature: float = 0.01):
    """VidCom² as a keep rule over batches (B, N+1, D)."""

    def rule(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        k = token_budget(n, retention)
        return Selection(torch.stack([vidcom2_select(v[:n], grid, k, temperature) for v in video_embeds]))

    return rule
