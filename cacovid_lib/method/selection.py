"""Any-ratio inference selection (docs/method.md §5) and max-probability clipping (docs/method.md §3 step 3), plus
the release's form of that clipping on a (rollouts, t) tensor (its frame mode, an option of the training loop).

The selection and the 1-D clipping reproduce the release's behaviour exactly (tests/test_selection.py checks them against
tests/data/release_vectors.json).
"""
from __future__ import annotations

import math

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


def frame_budgets(frame_scores: torch.Tensor, grid, retention: float, imp_ratio: float, max_frame_ratio: float) -> torch.Tensor:
    """Per-frame counts of top-scored tokens (docs/method.md §5 steps 1-2): (t,) ints summing to
    floor(imp_ratio·ρ·t·h·w)."""
    t, h, w = grid
    f = frame_scores.float()
    f = f / f.abs().max().clamp(min=1e-12) * 3
    p = torch.softmax(f, dim=0).clip(min=1 / (2 * t), max=1 / (t * retention) * max_frame_ratio)
    p = p / p.sum()
    # the products are written in the release's order so that float rounding matches it exactly
    counts = (p * round(imp_ratio * retention * h * w * t)).round().clip(min=1, max=int(imp_ratio * h * w * max_frame_ratio)).long()
    target = math.floor(imp_ratio * retention * h * w * t)
    while counts.sum() > target:  # take one from the frame that has most
        counts[counts.argmax()] -= 1
    while counts.sum() < target:  # give one to the frame that has fewest
        counts[counts.argmin()] += 1
    return counts


def select_tokens(frame_scores: torch.Tensor, token_scores: torch.Tensor, grid: tuple[int, int, int],
                  retention: float, imp_ratio: float = 0.5, max_frame_ratio: float | None = None) -> torch.Tensor:
    """Keep mask over t·h·w video tokens with exactly floor(retention·t·h·w) True (docs/method.md §5).

    frame_scores: (t,) frame-head scores f; token_scores: (t·h·w,) token-head scores s, time-then-space order.
    max_frame_ratio: the per-frame cap `msr` (release: 1.5 × retention when None).
    """
    t, h, w = grid
    hw = h * w
    if not 0 < retention <= 1:
        raise KitInputError(f"retention: {retention} is outside (0, 1]")
    if token_scores.shape[0] != t * hw or frame_scores.shape[0] != t:
        raise KitInputError(f"scores: expected {t} frame and {t * hw} token scores, got {frame_scores.shape[0]} and {token_scores.shape[0]}")
    msr = 1.5 * retention if max_frame_ratio is None else max_frame_ratio
    n_total = math.floor(retention * t * h * w)
    counts = frame_budgets(frame_scores, grid, retention, imp_ratio, msr)  # (t,)
    order = token_scores.float().view(t, hw).sort(dim=-1, descending=True).indices  # (t, h*w) best first
    take = torch.arange(hw, device=order.device)[None] < counts[:, None].to(order.device)  # (t, h*w)
    keep = torch.zeros(t * hw, dtype=torch.bool, device=token_scores.device)
    keep[(order + torch.arange(t, device=order.device)[:, None] * hw)[take]] = True  # step 3: per-frame top-n_j
    rest = n_total - int(keep.sum())
    # step 4: evenly spaced fill among the tokens not kept yet. The release fills only when imp_ratio < 1,
    # so a frame budget above h*w (possible at high retention) left it short of N; we always fill.
    if rest > 0:
        free = torch.nonzero(~keep, as_tuple=True)[0]
        keep[free[torch.linspace(0, free.numel() - 1, rest, device=free.device).round().long()]] = True
    return keep
