"""Training health of the policy loop: small pure functions that say why a reward curve is flat or moving.

Each takes tensors the loop already has and returns one float for the step's history row (and so for
reports/plots/policy_training_seed_<s>.csv). None of them feeds back into training: the loop calls them on detached
values, so a run logs the same policy weights with or without them.
"""
from __future__ import annotations

import math

import torch

from cacovid_lib.method.grpo import mean_bernoulli_entropy


def zero_spread_fraction(rewards: torch.Tensor) -> float:
    """Fraction of rows (items of one iteration) whose rewards are all equal: (B, G) -> float.
    Such a group has zero advantages, so its rollouts teach the policy nothing. NaN when a row has no rollout
    (a disabled mode)."""
    if rewards.numel() == 0:
        return math.nan
    spread = rewards.max(dim=1).values - rewards.min(dim=1).values  # (B,)
    return float((spread == 0).float().mean())


def clip_fractions(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                   eps_low: float = 0.2, eps_high: float = 0.28) -> tuple[float, float]:
    """Fractions of decisions whose ratio ρ = π_θ(a)/π_old(a) is clipped in the objective, so their gradient is zero:
    low = ρ < 1 - ε_low with A < 0, high = ρ > 1 + ε_high with A > 0 (grpo.clipped_objective takes the clipped
    term exactly there). logp_new, logp_old (G, n); advantages (G,) -> (low, high), each over all G·n decisions."""
    if logp_new.numel() == 0:
        return math.nan, math.nan
    ratio = torch.exp(logp_new - logp_old)  # (G, n)
    adv = advantages[:, None]  # (G, 1)
    low = (ratio < 1 - eps_low) & (adv < 0)
    high = (ratio > 1 + eps_high) & (adv > 0)
    return float(low.float().mean()), float(high.float().mean())


def bernoulli_entropy(logits: torch.Tensor) -> float:
    """Mean entropy (nats) of the keep/drop distributions softmax(z) of logits (..., 2): log 2 for an undecided
    policy, 0 for a collapsed one."""
    return float(mean_bernoulli_entropy(logits))


def bernoulli_kl(logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """Mean exact KL(π_θ ‖ π_ref) per decision between the keep/drop distributions of logits (..., 2) and reference
    logits (..., 2) (two outcomes: exact, no sampling estimator). The policy is a product of independent Bernoullis,
    so this is the KL of the whole policy divided by the number of decisions."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    logq = torch.log_softmax(reference_logits.float(), dim=-1)
    return float((logp.exp() * (logp - logq)).sum(-1).mean())


def mean_kept_tokens(masks: torch.Tensor) -> float:
    """Mean number of kept tokens per rollout: (..., N) bool keep-masks -> float."""
    return float(masks.float().sum(-1).mean())
