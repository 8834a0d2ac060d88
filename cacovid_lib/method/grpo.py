"""Combinatorial policy optimisation (docs/method.md §4): small pure functions for advantages and the clipped
objective, and the adaptive sample rate. The training loop that uses them is
cacovid_lib/method/train_loop.py."""
from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """A_g = (R_g - mean R) / (std R + eps) over one mode's memory of rollouts: (G,) -> (G,)."""
    if rewards.numel() < 2:
        return torch.zeros_like(rewards)
    return (rewards - rewards.mean()) / (rewards.std() + eps)


def clipped_objective(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                      eps_low: float = 0.2, eps_high: float = 0.28) -> torch.Tensor:
    """Per-decision loss ℓ = -min(ρ·A, clip(ρ, 1-ε_low, 1+ε_high)·A), ρ = π_θ(a)/π_old(a).
    logp_new, logp_old: (G, n) log-probabilities of the taken actions; advantages (G,) -> (G, n)."""
    # the log-ratio is bounded before exp: a confident policy's logits can move far within one item's
    # iterations, and an overflowing ratio (inf·A) would turn the whole loss into NaN
    ratio = torch.exp((logp_new - logp_old).clamp(-20.0, 20.0))
    adv = advantages[:, None]
    return -torch.minimum(ratio * adv, ratio.clamp(1 - eps_low, 1 + eps_high) * adv)


def balance_weights(actions: torch.Tensor) -> torch.Tensor:
    """w = a(1-ā) + (1-a)ā with ā the kept fraction of each rollout, so kept and dropped tokens weigh the
    same in total: (G, n) 0/1 -> (G, n)."""
    a = actions.float()
    kept = a.mean(dim=1, keepdim=True)
    return a * (1 - kept) + (1 - a) * kept


def token_loss(per_decision: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """L_tok = mean_g Σ_i w_gi ℓ_gi / Σ_i w_gi."""
    w = balance_weights(actions)
    return ((w * per_decision).sum(1) / w.sum(1).clamp(min=1e-8)).mean()


def kl_to_uniform(logp_new: torch.Tensor) -> torch.Tensor:
    """k3 estimate of KL(π_θ || Bernoulli(0.5)) on the taken actions: r - log r - 1, r = 0.5 / π_θ(a)."""
    log_r = torch.log(torch.tensor(0.5, device=logp_new.device)) - logp_new
    return (torch.exp(log_r) - log_r - 1).mean()


def mean_bernoulli_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the keep/drop distributions softmax(z) of logits (..., 2), differentiable: log 2 for an
    undecided policy, 0 for a collapsed one. An entropy bonus subtracts `entropy_weight ·` this from the loss."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (..., 2)
    return -(logp.exp() * logp).sum(-1).mean()


SAMPLE_RATE_SCHEDULES = ("kit", "release")  # what the adaptive rate reads and where each item starts


def sample_rate_signal(iteration_token_rewards: torch.Tensor, memory_token_rewards: torch.Tensor, schedule: str) -> float:
    """The token-mode mean reward the adaptive rate reacts to after an iteration: "kit" reads this iteration's
    token rollouts, "release" the item's whole token-mode memory (every iteration so far, this one included)."""
    return float((memory_token_rewards if schedule == "release" else iteration_token_rewards).mean())


def adapt_sample_rate(rate: float, token_mode_mean_reward: float, high: float = 0.875, low: float = 0.125,
                      floor: float = 0.01, cap: float = 0.12) -> float:
    """Halve r when the token mode almost always succeeds, double it when it almost never does."""
    if token_mode_mean_reward >= high:
        return max(rate / 2, floor)
    if token_mode_mean_reward <= low:
        return min(rate * 2, cap)
    return rate
