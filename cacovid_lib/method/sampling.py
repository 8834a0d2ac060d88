"""Online combination space sampling (docs/method.md §3): the training rollouts of one item.

G rollouts are split into three modes, every one spending the same budget of k tokens per frame:
content (1, no policy: density-peak picks), token (3G/4 - 1: grouped rank-band sampling from the
token head) and frame (G/4: frames from the frame head, density-peak picks inside them).
Two ablation switches (defaults = the release): which modes produce rollouts, and an independent-Bernoulli
token sampler in place of the grouped rank bands. One fidelity option: the frame mode's clipping as the paper
describes it (cap 3/t per item, "kit") or as the release computes it (on the (rollouts, t) tensor, "release").
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.selection import clip_max_probability, clip_max_probability_over_rollouts, density_peak_scores


@dataclass
class Rollouts:
    """G keep-masks of one item and what each mode needs for its loss."""

    masks: torch.Tensor  # (G, N) bool, all modes, in order content | token | frame
    mode: list[str]  # (G,) "content" / "token" / "frame"
    frame_actions: torch.Tensor  # (G_frame, t) bool, the frames chosen by each frame-mode rollout


MODES = ("content", "token", "frame")  # the online sampling modes, in rollout order
SAMPLERS = ("grouped", "independent")  # token-mode samplers: the method's rank bands, the ablation's baseline
FRAME_CLIPPINGS = ("kit", "release")  # frame-mode clipping: cap 3/t on the item's distribution, or the release's form


def mode_counts(num_generations: int, modes: tuple[str, ...] = MODES) -> dict[str, int]:
    """Split of G rollouts over the enabled modes. The release (all three): content 1, token 3G/4 - 1, frame G/4
    (32 -> 1 / 23 / 8). An enabled content or frame mode keeps its release share, a disabled one gets 0 and its
    rollouts go to the token mode: token only -> G; token + frame -> 3G/4 + G/4; content + token -> 1 + (G - 1)."""
    frame = num_generations // 4 if "frame" in modes else 0
    content = 1 if "content" in modes else 0
    return {"content": content, "token": num_generations - frame - content, "frame": frame}


def tokens_per_frame(sample_rate: float, hw: int) -> int:
    """k = round(r·h·w), at least 1 (the release's r = 0.02 on 14x14 = 4 tokens; tiny grids need the floor)."""
    return max(round(sample_rate * hw), 1)


def release_density_peaks(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Density-peak score ρ·δ of each row of x (n, D), as the release computes it (selection.density_peak_scores):
    distances are Euclidean / √D; ρ from the 4 nearest rows, the row itself included; ties broken by a random
    nudge from `generator`. -> (n,)."""
    dist = torch.cdist(x.float(), x.float()) / x.shape[-1] ** 0.5  # (n, n)
    return density_peak_scores(dist, 4, include_self=True, ties="jitter", generator=generator)


def group_lengths(n: int, num_groups: int) -> list[int]:
    """Split n ranked tokens into contiguous groups, the first n % num_groups one longer."""
    base, extra = divmod(n, num_groups)
    return [base + (i < extra) for i in range(num_groups)]


def grouped_rank_band_sample(scores: torch.Tensor, k: int, num_rollouts: int, sample_rate: float, group_size: int,
                             max_group_prob: float, generator=None) -> torch.Tensor:
    """Token-mode masks for one frame (docs/method.md §3 token mode): (hw,) scores -> (num_rollouts, hw) bool,
    k True per row. Each rollout draws one rank band (group) of the policy's ranking, then k tokens
    without replacement inside it; rollout 0 is the deterministic top-k."""
    hw = scores.shape[0]
    p = torch.softmax(scores.float(), dim=0)
    order = p.argsort(descending=True)  # (hw,) token indices, most likely first
    num_groups = min(max(int(1 / sample_rate / group_size), 1), hw)
    lengths = group_lengths(hw, num_groups)
    starts = [sum(lengths[:i]) for i in range(num_groups)]
    group_p = torch.stack([p[order[s:s + n]].sum() for s, n in zip(starts, lengths)])
    cap = max(min(max_group_prob / num_groups, 0.9), 0.1) if num_groups > 1 else 1.0
    group_p = clip_max_probability(group_p, cap)
    m = hw // num_groups
    masks = torch.zeros(num_rollouts, hw, dtype=torch.bool, device=scores.device)
    masks[0, order[:k]] = True
    picks = torch.multinomial(group_p, num_rollouts - 1, replacement=True, generator=generator) if num_rollouts > 1 else []
    for row, g in enumerate(picks.tolist() if num_rollouts > 1 else [], start=1):  # Python ints index the lists
        start = min(starts[g], hw - max(k, lengths[g]))  # a band narrower than k is widened downwards
        band = order[start:start + max(k, lengths[g])]
        # renormalised in-band probabilities, as a softmax over the band: p[band] / p[band].sum() is 0/0 once a
        # confident policy's tail probabilities underflow
        inner = torch.softmax(scores.float()[band], dim=0).clamp(1 / (2 * m), 2 / m)
        masks[row, band[torch.multinomial(inner, k, replacement=False, generator=generator)]] = True
    return masks


def independent_bernoulli_sample(probs: torch.Tensor, num_rollouts: int, generator=None) -> torch.Tensor:
    """Token-mode masks of the paper's convergence baseline: every token kept with its own probability π(keep),
    independently per token and rollout: (N,) probabilities -> (num_rollouts, N) bool. No rank bands, no clipping,
    no budget (a row keeps any number of tokens) and no deterministic rollout 0."""
    draws = torch.rand(num_rollouts, probs.shape[0], generator=generator,
                       device=generator.device if generator is not None else probs.device)
    return draws.to(probs.device) < probs.float()  # (G_token, N)


def frame_distributions(frame_scores: torch.Tensor, num_rollouts: int, frame_clipping: str = "kit") -> torch.Tensor:
    """The distribution each frame-mode rollout draws its frames from: (t,) scores -> (num_rollouts, t).
    "kit": softmax clipped at 3/t (floor 1/t²), the same for every rollout; "release": the release's clipping on the
    (rollouts, t) tensor (floor 1/num_rollouts², no cap in practice; selection.clip_max_probability_over_rollouts)."""
    t = frame_scores.shape[0]
    p = torch.softmax(frame_scores.float(), dim=0)  # (t,)
    if frame_clipping == "release":
        return clip_max_probability_over_rollouts(p, max(num_rollouts, 1), 3 / t)
    if frame_clipping != "kit":
        raise KitInputError(f"frame_clipping: {frame_clipping!r} is unknown; valid: {', '.join(FRAME_CLIPPINGS)}")
    return clip_max_probability(p, 3 / t).expand(num_rollouts, -1)  # (rollouts, t)


def sample_rollouts(token_scores: torch.Tensor, frame_scores: torch.Tensor, raw_video: torch.Tensor, grid,
                    num_generations: int, sample_rate: float, group_size: int = 2, max_group_prob: float = 2.0,
                    frame_ratio: float = 0.125, generator=None, modes: tuple[str, ...] = MODES,
                    sampler: str = "grouped", frame_clipping: str = "kit") -> Rollouts:
    """All G rollouts of one item from the frozen policy's scores.

    token_scores (N,), frame_scores (t,): scores z[1]-z[0] of π_old; raw_video (N, D): the video tokens as
    the LLM receives them (for the density-peak picks); sample_rate r: k = round(r·h·w) tokens per frame.
    modes: the enabled sampling modes (split by `mode_counts`); sampler: "grouped" (rank bands, §3) or
    "independent" (Bernoulli per token from π_old(keep) = sigmoid(score)), for the token mode only.
    frame_clipping: "kit" caps each frame at 3/t and floors it at 1/t² (clip_max_probability on the item's (t,)
    distribution, as the paper describes); "release" floors each frame at 1/G_frame² and in effect never caps
    (clip_max_probability_over_rollouts, as the release computes it).
    """
    t, h, w = grid
    hw, n = h * w, t * h * w
    k = tokens_per_frame(sample_rate, hw)
    counts = mode_counts(num_generations, modes)
    raw = raw_video.view(t, hw, -1)

    # content: per frame, the k density peaks of the raw tokens
    content = torch.zeros(counts["content"], n, dtype=torch.bool, device=raw_video.device)  # (0 or 1, N)
    for j in range(t if counts["content"] else 0):
        top = release_density_peaks(raw[j], generator).topk(k).indices
        content[0, j * hw + top] = True

    if sampler == "independent":  # ablation baseline: plain Bernoulli keep/drop per token, from π_old
        token = independent_bernoulli_sample(torch.sigmoid(token_scores.float()), counts["token"], generator)  # (G_token, N)
    else:  # token: per frame, grouped rank-band sampling; rollout 0 = per-frame top-k
        per_frame = [grouped_rank_band_sample(token_scores[j * hw:(j + 1) * hw], k, counts["token"], sample_rate,
                                              group_size, max_group_prob, generator) for j in range(t)]
        token = torch.cat(per_frame, dim=1)  # (G_token, N)

    # frame: frames from the frame head (clipped), then k·t density-peak tokens inside them; rollout 0 = top frames
    num_frames = min(max(math.ceil(t * frame_ratio), math.ceil(k * t / hw), 1), t)
    frame_p = frame_distributions(frame_scores, counts["frame"], frame_clipping)  # (G_frame, t)
    frame_actions = torch.zeros(counts["frame"], t, dtype=torch.bool, device=frame_scores.device)
    frame_masks = torch.zeros(counts["frame"], n, dtype=torch.bool, device=raw_video.device)
    for row in range(counts["frame"]):
        chosen = frame_scores.topk(num_frames).indices if row == 0 else \
            torch.multinomial(frame_p[row], num_frames, replacement=False, generator=generator)
        frame_actions[row, chosen] = True
        candidates = torch.nonzero(frame_actions[row].repeat_interleave(hw), as_tuple=True)[0]  # tokens of chosen frames
        top = release_density_peaks(raw_video[candidates], generator).topk(min(k * t, candidates.numel())).indices
        frame_masks[row, candidates[top]] = True

    mode = [m for m in MODES for _ in range(counts[m])]  # (G,) content | token | frame
    return Rollouts(torch.cat([content, token, frame_masks]), mode, frame_actions)
