"""The ablation switches of policy training (PolicyTrainConfig.sampling_modes, .sampler): the defaults keep the
release's rollouts bit for bit, a subset of modes splits G as documented in `mode_counts`, the independent
sampler keeps each token with its policy probability, and short training runs work with every switch."""
import math
import re

import numpy as np
import pytest
import torch
from conftest import inputs_for, planted_world, qwen2_llm

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy, action_logprobs, scores
from cacovid_lib.method.sampling import (
    MODES, independent_bernoulli_sample, mode_counts, sample_rollouts, tokens_per_frame
)
from cacovid_lib.method.train_loop import PolicyTrainConfig, train_policy

# sample_rollouts of the code before the switches existed (commit 373beff), on the seeded item of `item` below:
# each mask row as the integer of its bits, first token = most significant bit
RELEASE_MODES = ["content"] + ["token"] * 8 + ["frame"] * 3
RELEASE_MASKS = [2309137146325500198, 13875661963170284184, 801676218711280776, 43172332690808869, 4654481284763222424,
                 13871440080746578584, 329120389242462304, 9230480409060444682, 658662650200197650, 65535,
                 281470681743360, 4294901760]
RELEASE_FRAME_ACTIONS = [1, 4, 2]


def item(seed=7, t=4, side=4):
    """Token scores (N,), frame scores (t,), raw video (N, 8) and the generator that drew them."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(t * side * side, 8, generator=g)
    return torch.randn(t * side * side, generator=g), torch.randn(t, generator=g), raw, (t, side, side), g


def as_ints(masks: torch.Tensor) -> list[int]:
    return [int("".join("1" if b else "0" for b in row.tolist()), 2) for row in masks]


def test_default_switches_reproduce_the_release_rollouts_bit_for_bit():
    tok, fr, raw, grid, g = item()
    r = sample_rollouts(tok, fr, raw, grid, 12, 0.25, generator=g)
    assert r.mode == RELEASE_MODES
    assert as_ints(r.masks) == RELEASE_MASKS and as_ints(r.frame_actions) == RELEASE_FRAME_ACTIONS
    tok, fr, raw, grid, g = item()
    explicit = sample_rollouts(tok, fr, raw, grid, 12, 0.25, generator=g, modes=MODES, sampler="grouped")
    assert torch.equal(explicit.masks, r.masks) and explicit.mode == r.mode


def test_mode_counts_give_disabled_modes_rollouts_to_the_token_mode():
    assert mode_counts(32, ("token",)) == {"content": 0, "token": 32, "frame": 0}
    assert mode_counts(32, ("token", "frame")) == {"content": 0, "token": 24, "frame": 8}
    assert mode_counts(32, ("content", "token")) == {"content": 1, "token": 31, "frame": 0}
    assert mode_counts(32, ("frame", "token", "content")) == mode_counts(32)  # order does not matter


@pytest.mark.parametrize("modes", [("token",), ("token", "frame"), ("content", "token")])
def test_a_subset_of_modes_draws_only_those_rollouts(modes):
    tok, fr, raw, grid, g = item()
    t, hw = grid[0], grid[1] * grid[2]
    r = sample_rollouts(tok, fr, raw, grid, 12, 0.25, generator=g, modes=modes)
    counts = mode_counts(12, modes)
    assert r.masks.shape == (12, t * hw) and len(r.mode) == 12
    assert {m: r.mode.count(m) for m in MODES} == counts
    assert r.frame_actions.shape == (counts["frame"], t)
    token_rows = r.masks[[i for i, m in enumerate(r.mode) if m == "token"]].view(-1, t, hw)
    assert (token_rows.sum(-1) == tokens_per_frame(0.25, hw)).all()  # grouped sampling keeps its exact budget


def test_independent_sampler_keeps_each_token_with_its_policy_probability():
    probs = torch.linspace(0.01, 0.99, 40)
    masks = independent_bernoulli_sample(probs, 20_000, torch.Generator().manual_seed(0))  # (20000, 40)
    assert masks.shape == (20_000, 40) and masks.dtype == torch.bool
    # binomial std <= sqrt(0.25 / 20000) = 0.0035: 0.02 is > 5 std, and the seed is fixed
    assert (masks.float().mean(0) - probs).abs().max() < 0.02


def test_independent_token_rollouts_sample_the_distribution_the_ratio_code_scores():
    """The token mode samples keep with sigmoid(z1 - z0), which is exactly exp(action_logprobs(z, keep)): the loss's
    ratio π_θ(a)/π_old(a) is the likelihood ratio of the sampled actions, with no change to the loss code."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 2, generator=g) * 2  # π_old of 4 frames x 4x4 tokens
    p_keep = torch.exp(action_logprobs(logits, torch.ones(64, dtype=torch.bool)))
    assert torch.allclose(torch.sigmoid(scores(logits)), p_keep, atol=1e-6)
    tok, fr, raw, grid, _ = item()
    r = sample_rollouts(scores(logits), fr, raw, grid, 4000, 0.25, generator=g, sampler="independent")
    token_rows = r.masks[[i for i, m in enumerate(r.mode) if m == "token"]]  # (2999, 64)
    assert (token_rows.float().mean(0) - p_keep).abs().max() < 0.04  # std <= 0.0092 at 2999 draws
    assert token_rows.sum(1).unique().numel() > 1  # no exact budget
    assert r.mode.count("content") == 1 and r.mode.count("frame") == 1000  # the other modes are unchanged


@pytest.mark.parametrize("switch", [{"sampling_modes": ("token",)}, {"sampling_modes": ["token", "frame"]},
                                    {"sampling_modes": ("content", "token")}, {"sampler": "independent"}])
def test_short_training_runs_with_each_switch(switch):
    torch.manual_seed(0)
    video, keys = planted_world(8, seed=0)

    def reward_fn(idx, inputs, masks):  # (B, G, N) -> (B, G): 1 only if every key token is kept
        return torch.stack([masks[b][:, keys[i]].all(-1) for b, i in enumerate(idx)]).float()

    cfg = PolicyTrainConfig(steps=30, items_per_step=2, num_generations=8, num_iter_for_item=5, sample_rate=0.25,
                            min_sample_rate=0.125, max_sample_rate=0.5, lr=5e-3, seed=0, **switch)
    state = train_policy(CompressionPolicy.from_llm(qwen2_llm(), seed=0), inputs_for(video), reward_fn, len(video), cfg,
                         progress=False)
    assert len(state.history) == 30
    assert all(math.isfinite(r["loss"]) for r in state.history)
    assert any(r["loss"] != 0 for r in state.history)  # the token mode's advantages are not all zero
    for mode in MODES:  # every mode keeps its column; a disabled mode's is NaN
        values = np.array([r[f"reward_{mode}"] for r in state.history])
        assert np.isfinite(values).all() if mode in cfg.sampling_modes else np.isnan(values).all(), mode


@pytest.mark.parametrize("bad, message", [
    ({"sampling_modes": ("tokens",)}, "sampling_modes: ('tokens',) has unknown mode 'tokens'; valid: content, token, frame"),
    ({"sampling_modes": ()}, "must include 'token'"),
    ({"sampling_modes": ("content", "frame")}, "must include 'token'"),
    ({"sampling_modes": ("token", "token")}, "names a mode twice"),
    ({"sampler": "bernoulli"}, "sampler: 'bernoulli' is unknown; valid: grouped, independent"),
])
def test_bad_switch_values_are_refused_with_the_valid_ones(bad, message):
    with pytest.raises(KitInputError, match=re.escape(message)):
        PolicyTrainConfig(**bad)
