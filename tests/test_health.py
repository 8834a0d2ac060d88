"""Training health (method/health.py): each function on hand-made inputs, and the loop logs them per step."""
import math

import numpy as np
import pytest
import torch

from cacovid_lib.method.grpo import clipped_objective
from cacovid_lib.method.health import (
    bernoulli_entropy, bernoulli_kl, clip_fractions, mean_kept_tokens, zero_spread_fraction
)
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.train_loop import PolicyTrainConfig, train_policy

HEALTH_COLUMNS = ["grad_norm", "zero_spread_all", "zero_spread_token", "zero_spread_frame", "kept_tokens", "clip_low",
                  "clip_high", "entropy_token", "entropy_frame", "kl_token", "kl_frame"]


def test_zero_spread_fraction_counts_groups_whose_rewards_are_all_equal():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.25]])
    assert zero_spread_fraction(rewards) == 0.5
    assert math.isnan(zero_spread_fraction(torch.zeros(2, 0)))  # a disabled mode has no rollouts


def test_clip_fractions_count_the_decisions_the_clipped_objective_stops():
    logp_old = torch.zeros(3, 3)
    logp_new = torch.log(torch.tensor([0.5, 1.0, 2.0])).expand(3, -1).clone()  # ratios 0.5, 1, 2 in every row
    adv = torch.tensor([1.0, -1.0, 0.0])
    low, high = clip_fractions(logp_new, logp_old, adv, eps_low=0.2, eps_high=0.28)
    assert (low, high) == (pytest.approx(1 / 9), pytest.approx(1 / 9))  # A < 0 at ratio 0.5; A > 0 at ratio 2
    # the same decisions are those whose gradient the clipped objective zeroes (A = 0 has none anyway)
    x = logp_new.clone().requires_grad_(True)
    clipped_objective(x, logp_old, adv, 0.2, 0.28).sum().backward()
    assert int((x.grad[:2] == 0).sum()) == 2


def test_bernoulli_entropy_is_log2_when_undecided_and_zero_when_collapsed():
    assert bernoulli_entropy(torch.zeros(5, 2)) == pytest.approx(math.log(2))
    assert bernoulli_entropy(torch.tensor([[0.0, 50.0], [50.0, 0.0]])) == pytest.approx(0.0, abs=1e-12)
    p = 0.75  # logits (0, log 3): keep with 0.75
    assert bernoulli_entropy(torch.tensor([[0.0, math.log(3)]])) == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


def test_bernoulli_kl_by_hand():
    assert bernoulli_kl(torch.ones(4, 2), torch.ones(4, 2)) == 0.0
    keep75, half = torch.tensor([[0.0, math.log(3)]]), torch.zeros(1, 2)
    assert bernoulli_kl(keep75, half) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    # mean over decisions: one unchanged decision halves it
    assert bernoulli_kl(torch.cat([keep75, half]), torch.zeros(2, 2)) == pytest.approx(bernoulli_kl(keep75, half) / 2)


def test_mean_kept_tokens_per_rollout():
    masks = torch.zeros(2, 3, 8, dtype=torch.bool)  # (B, G, N)
    masks[0, :, :2] = True
    masks[1, :, :4] = True
    assert mean_kept_tokens(masks) == 3.0


def test_the_loop_logs_health_every_step_and_it_is_zero_change_at_iteration_0():
    from conftest import inputs_for, planted_world, qwen2_llm

    torch.manual_seed(0)
    video, keys = planted_world(4, seed=0)
    rng = np.random.default_rng(0)

    def reward_fn(idx, inputs, masks):
        return torch.as_tensor(rng.random(masks.shape[:2]) < 0.5).float()

    cfg = PolicyTrainConfig(steps=6, items_per_step=2, num_generations=8, num_iter_for_item=3, sample_rate=0.25,
                            min_sample_rate=0.25, max_sample_rate=0.25, lr=5e-2)
    state = train_policy(CompressionPolicy.from_llm(qwen2_llm()), inputs_for(video), reward_fn, 4, cfg, progress=False)
    for row in state.history:
        assert set(HEALTH_COLUMNS) <= set(row)
        assert row["kept_tokens"] == 4 * 4  # k = 0.25 x 16 = 4 tokens per frame, 4 frames, every mode
        assert 0 <= row["entropy_token"] <= math.log(2) + 1e-9 and row["grad_norm"] > 0
    first, later = state.history[0], state.history[1:3]
    # iteration 0 of an item batch: the policy is π_old, so nothing has moved and no ratio is clipped
    assert first["kl_token"] == pytest.approx(0.0, abs=1e-9) and first["clip_low"] == first["clip_high"] == 0.0
    assert all(r["kl_token"] > 0 for r in later)  # after a step at this learning rate the policy has moved


def test_policy_training_figure_draws_rewards_and_health_from_a_small_history():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from cacovid_lib.stages.policy_training import policy_training_figure

    steps = np.arange(30)
    history = pd.DataFrame({"step": steps, "reward_token": steps / 30, "reward_frame": 0.5, "reward_content": np.nan,
                            "loss": -0.01, "sample_rate": 0.125, "lr": 1e-3} | {c: 0.1 for c in HEALTH_COLUMNS})
    fig = policy_training_figure(history, window=5)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(titles) == 9 and any("zero reward spread" in t for t in titles) and any("KL" in t for t in titles)
    rewards = next(ax for ax in fig.axes if ax.get_title().startswith("reward per mode"))
    assert {line.get_label() for line in rewards.get_lines()} == {"reward_token", "reward_frame", "reward_content"}
    # a history from before the health columns draws only the panels it has
    old = policy_training_figure(history[["step", "reward_token", "reward_frame", "reward_content", "loss", "sample_rate", "lr"]])
    assert len([ax for ax in old.axes if ax.get_visible() and ax.get_title()]) == 3
