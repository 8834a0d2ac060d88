"""A supervised upper bound of the policy network (a diagnosis, not part of CaCoVID): the same network (the copied
decoder layer, the same heads, the same inputs) trained by plain supervision to score the tokens a target mask names
(e.g. the tokens of the object a question asks about), then selected with the same any-ratio rule (§5).

If this network finds the target, a policy that RL trains to a worse selection is limited by the RL loop; if it does
not, its inputs or its capacity are the limit. Model-agnostic: the caller hands `inputs_fn(idx) -> PolicyInputs` and
`targets_fn(idx) -> (B, N) bool`, as the RL loop gets its inputs and rewards.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from cacovid_lib.method.policy import CompressionPolicy, PolicyInputs, cosine_schedule, policy_optimizer, scores


def balanced_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of keep logits (B, n) against 0/1 targets (B, n), each row's positives and negatives
    weighing half each (a target of ~2% of the tokens would otherwise be learned as "never"). A row without
    positives (or without negatives) counts only the half it has."""
    t = targets.float()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")  # (B, n)
    pos = (loss * t).sum(1) / t.sum(1).clamp(min=1)
    neg = (loss * (1 - t)).sum(1) / (1 - t).sum(1).clamp(min=1)
    return (0.5 * (pos + neg)).mean()


def frame_targets(token_targets: torch.Tensor, grid) -> torch.Tensor:
    """A frame is a target where any of its tokens is: (B, t*h*w) bool -> (B, t) bool."""
    t, h, w = grid
    return token_targets.view(token_targets.shape[0], t, h * w).any(-1)


def supervised_loss(token_logits: torch.Tensor, frame_logits: torch.Tensor, token_targets: torch.Tensor, grid) -> torch.Tensor:
    """Both heads' scores z[1] - z[0] as logits of "is a target": token logits (B, N, 2), frame logits (B, t, 2),
    token targets (B, N) bool -> the balanced BCE of the tokens plus that of the frames."""
    return (balanced_bce(scores(token_logits), token_targets)
            + balanced_bce(scores(frame_logits), frame_targets(token_targets, grid)))


TargetsFn = Callable[[np.ndarray], torch.Tensor]  # item indices (B,) -> (B, N) bool


def train_supervised_policy(policy: CompressionPolicy, inputs_fn: Callable[[np.ndarray], PolicyInputs], targets_fn: TargetsFn,
                            num_items: int, steps: int, items_per_step: int, lr: float, layer_lr_scale: float = 0.1,
                            weight_decay: float = 0.01, seed: int = 0, progress: bool = True) -> list[dict]:
    """Train `policy` in place on `supervised_loss` for `steps` AdamW steps of `items_per_step` items (reshuffled each
    epoch, seeded), heads at `lr` and the copied layer at `lr · layer_lr_scale` as in the RL loop, cosine decay.
    Returns the loss per step."""
    opt, sched = policy_optimizer(policy, lr, layer_lr_scale, weight_decay, lambda s: cosine_schedule(s, steps))
    per_epoch = max(num_items // items_per_step, 1)
    history = []
    policy.train()
    for step in tqdm(range(steps), desc="train policy (supervised)", disable=not progress, mininterval=5):
        epoch, pos = divmod(step, per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(num_items)
        idx = order[pos * items_per_step:(pos + 1) * items_per_step]
        inputs = inputs_fn(idx)
        token_logits, frame_logits = policy(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask,
                                            inputs.grid)  # (B, N, 2), (B, t, 2)
        loss = supervised_loss(token_logits, frame_logits, targets_fn(idx), inputs.grid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 5.0)
        opt.step()
        sched.step()
        history.append({"step": step, "loss": loss.item()})
    policy.eval()
    return history
