"""Any-ratio inference selection (docs/method.md §5) and max-probability clipping (docs/method.md §3 step 3), plus
the release's form of that clipping on a (rollouts, t) tensor (its frame mode, an option of the training loop).

The selection and the 1-D clipping reproduce the release's behaviour exactly (tests/test_selection.py checks them against
tests/data/release_vectors.json).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cacovid_lib.io_utils import KitInputError


def clip_max_probability(p: torch.Tensor, cap: float) -> torch.Tensor:
    """Max-probability clipping of a 1-D distribution (docs/method.md §3 step 3): floor every entry at 1/n²,
    renormalise; if the largest entry exceeds `cap`, fix it at `cap` and clip the rest, renormalised to
    the remaining mass, with the cap scaled to match (recursively). p: (n,) -> (n,) summing to 1."""
    return _clip_free(p, cap, torch.ones_like(p, dtype=torch.bool), p.shape[0])


def clip_max_probability_over_rollouts(p: torch.Tensor, num_rollouts: int, cap: float) -> torch.Tensor:
    """The release's frame-mode clipping (docs/method.md §3 frame mode): its max-probability clipping called on the whole
    (rollouts, t) tensor, every row the item's frame distribution, instead of on one (t,) row. The rule then reads
    n = the tensor's first dimension, the rollouts, so every frame is floored at 1/rollouts² (1/64 with the
    release's 8 frame rollouts), and it compares the cap with entries of a tensor that sums to `rollouts`, which is
    a cap of cap·rollouts on a row: 3·8/32 = 0.75 at the release's t = 32, above any floored row's top (at most
    1/(1 + 31/64) = 0.67), so in effect there is no cap. Where it would act (t > 3·rollouts) we cap each row
    alike (the release's code indexes the 2-D tensor by a flat position there, which has no row-wise meaning).
    p: (t,) -> (num_rollouts, t), the distribution each rollout draws from, rows summing to 1."""
    row = _clip_free(p, cap * num_rollouts, torch.ones_like(p, dtype=torch.bool), num_rollouts)  # (t,)
    return row.expand(num_rollouts, -1)  # (rollouts, t)


def _clip_free(p, cap, free, n):
    p = torch.where(free, p.clamp(min=1.0 / n**2), torch.zeros_like(p))  # floored, fixed entries zeroed
    p = p / p.sum()
    cap = min(cap, 0.999)
    top = int(p.argmax())
    if int(free.sum()) == 1 or p[top] <= cap:
        return p
    free = free.clone()
    free[top] = False
    rest = 1 - max(cap, 0.001)
    out = _clip_free(p, cap / rest, free, n) * rest
    out[top] = cap
    return out


def density_peak_scores(dist: torch.Tensor, neighbours: int, include_self: bool = True, ties: str = "jitter",
                        generator=None) -> torch.Tensor:
    """Density-peak score ρ·δ of each of n points from their pairwise distances dist (n, n) (density-peaks
    clustering with a k-nearest-neighbour density): ρ = exp(-mean d² to the `neighbours` nearest points, the point
    itself counted among them or, include_self=False, left out); δ = distance to the nearest point of higher
    density, the largest distance of all for the densest point. Equal densities: ties="jitter" adds a random
    1e-6 nudge drawn from `generator` (the release's content picks), ties="index" orders them by index (exactly
    one densest point). -> (n,)."""
    n = dist.shape[0]
    nearest = dist.topk(min(neighbours if include_self else neighbours + 1, n), dim=-1, largest=False).values
    density = torch.exp(-((nearest if include_self else nearest[:, 1:]) ** 2).mean(-1))  # (n,)
    if ties == "jitter":
        nudge = torch.rand(n, generator=generator, device=generator.device if generator is not None else dist.device)
        density = density + nudge.to(dist.device) * 1e-6
        denser = density[None, :] > density[:, None]  # (n, n): point j denser than point i
    elif ties == "index":
        rank = density.argsort().argsort()
        denser = rank[None, :] > rank[:, None]
    else:
        raise KitInputError(f"ties: {ties!r} is unknown; valid: jitter, index")
    delta = torch.where(denser, dist, dist.max()).min(dim=-1).values  # (n,)
    return delta * density


@dataclass(frozen=True)
class SelectionRule:
    """How policy scores become a keep mask (docs/method.md §5). The defaults are the release's rule; the embedded
    pipeline chooses its own values on the validation split (stage evaluate_policy, docs/method.md §9 D11)."""

    imp_ratio: float = 0.5
    """share of the budget given to the policy's top tokens (per frame, or over the video with allocation="global");
    the rest is an evenly spaced fill"""
    cap_multiple: float | None = 1.5
    """per-frame cap msr = cap_multiple·ρ, so a frame takes at most int(imp_ratio·h·w·msr) top tokens; None: no cap
    (a frame may take all its tokens)"""
    frame_floor: float = 0.5
    """every frame's share is floored at frame_floor/t and its count at one token; 0: no floor, a frame may get none"""
    frame_sharpness: float = 3.0
    """frame scores are scaled to a largest magnitude of this before the softmax (an inverse temperature)"""
    allocation: str = "per_frame"
    """"per_frame": frame budgets from the frame head, then each frame's top tokens (the release); "global": every
    token ranked by its token score plus its frame's score, no per-frame budget"""

    def __post_init__(self):
        if not 0 < self.imp_ratio <= 1:
            raise KitInputError(f"imp_ratio: {self.imp_ratio} is outside (0, 1]")
        if self.cap_multiple is not None and not self.cap_multiple > 0:
            raise KitInputError(f"cap_multiple: {self.cap_multiple} must be positive (or null: no cap)")
        if not 0 <= self.frame_floor <= 1:
            raise KitInputError(f"frame_floor: {self.frame_floor} is outside [0, 1]")
        if not self.frame_sharpness > 0:
            raise KitInputError(f"frame_sharpness: {self.frame_sharpness} must be positive")
        if self.allocation not in ("per_frame", "global"):
            raise KitInputError(f"allocation: {self.allocation!r} is unknown; valid: per_frame, global")

    def frame_cap(self, retention: float, tokens_per_frame: int) -> int:
        """Most top tokens one frame may take: int(imp_ratio·h·w·msr), or every token of the frame without a cap."""
        if self.cap_multiple is None:
            return tokens_per_frame
        return int(self.imp_ratio * tokens_per_frame * (self.cap_multiple * retention))  # the release's order of products


RELEASE_RULE = SelectionRule()


def frame_budgets(frame_scores: torch.Tensor, grid, retention: float, rule: SelectionRule = RELEASE_RULE) -> torch.Tensor:
    """Per-frame counts of top-scored tokens (docs/method.md §5 steps 1-2): (t,) ints summing to
    floor(imp_ratio·ρ·t·h·w)."""
    t, h, w = grid
    imp_ratio = rule.imp_ratio
    msr = math.inf if rule.cap_multiple is None else rule.cap_multiple * retention
    f = frame_scores.float()
    f = f / f.abs().max().clamp(min=1e-12) * rule.frame_sharpness
    p = torch.softmax(f, dim=0).clip(min=rule.frame_floor / t, max=1 / (t * retention) * msr)  # release: [1/(2t), msr/(tρ)]
    p = p / p.sum()
    # the products are written in the release's order so that float rounding matches it exactly
    counts = (p * round(imp_ratio * retention * h * w * t)).round().clip(min=1 if rule.frame_floor > 0 else 0,
                                                                          max=rule.frame_cap(retention, h * w)).long()
    target = math.floor(imp_ratio * retention * h * w * t)
    while counts.sum() > target:  # take one from the frame that has most
        counts[counts.argmax()] -= 1
    while counts.sum() < target:  # give one to the frame that has fewest
        counts[counts.argmin()] += 1
    return counts


def top_tokens(frame_scores: torch.Tensor, token_scores: torch.Tensor, grid, retention: float,
               rule: SelectionRule = RELEASE_RULE) -> torch.Tensor:
    """Steps 1-3 of the selection: the policy's top tokens, before the even fill -> (t·h·w,) bool mask with
    floor(imp_ratio·ρ·t·h·w) True."""
    t, h, w = grid
    hw = h * w
    keep = torch.zeros(t * hw, dtype=torch.bool, device=token_scores.device)
    if rule.allocation == "global":  # one ranking over the video: token score plus its frame's score
        combined = token_scores.float().view(t, hw) + frame_scores.float().to(token_scores.device)[:, None]  # (t, h*w)
        target = math.floor(rule.imp_ratio * retention * hw * t)
        keep[combined.flatten().topk(target).indices] = True
        return keep
    counts = frame_budgets(frame_scores, grid, retention, rule)  # (t,)
    order = token_scores.float().view(t, hw).sort(dim=-1, descending=True).indices  # (t, h*w) best first
    take = torch.arange(hw, device=order.device)[None] < counts[:, None].to(order.device)  # (t, h*w)
    keep[(order + torch.arange(t, device=order.device)[:, None] * hw)[take]] = True  # step 3: per-frame top-n_j
    return keep


def select_tokens(frame_scores: torch.Tensor, token_scores: torch.Tensor, grid: tuple[int, int, int],
                  retention: float, rule: SelectionRule = RELEASE_RULE) -> torch.Tensor:
    """Keep mask over t·h·w video tokens with exactly floor(retention·t·h·w) True (docs/method.md §5).

    frame_scores: (t,) frame-head scores f; token_scores: (t·h·w,) token-head scores s, time-then-space order;
    rule: the selection's settings (the release's by default).
    """
    t, h, w = grid
    hw = h * w
    if not 0 < retention <= 1:
        raise KitInputError(f"retention: {retention} is outside (0, 1]")
    if token_scores.shape[0] != t * hw or frame_scores.shape[0] != t:
        raise KitInputError(f"scores: expected {t} frame and {t * hw} token scores, got {frame_scores.shape[0]} and {token_scores.shape[0]}")
    n_total = math.floor(retention * t * h * w)
    keep = top_tokens(frame_scores, token_scores, grid, retention, rule)  # steps 1-3
    rest = n_total - int(keep.sum())
    # step 4: evenly spaced fill among the tokens not kept yet. The release fills only when imp_ratio < 1,
    # so a frame budget above h*w (possible at high retention) left it short of N; we always fill.
    if rest > 0:
        free = torch.nonzero(~keep, as_tuple=True)[0]
        keep[free[torch.linspace(0, free.numel() - 1, rest, device=free.device).round().long()]] = True
    return keep
