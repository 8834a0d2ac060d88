"""Online combination space sampling (docs/method.md §3): exact budgets, no duplicates, valid probabilities."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cacovid_lib.method.sampling import (
    grouped_rank_band_sample, mode_counts, release_density_peaks, sample_rollouts, tokens_per_frame
)
from cacovid_lib.method.selection import clip_max_probability


def test_mode_counts_follow_the_release_split():
    assert mode_counts(32) == {"content": 1, "token": 23, "frame": 8}
    assert sum(mode_counts(8).values()) == 8


@settings(max_examples=60, deadline=None)
@given(hw=st.sampled_from([4, 16, 49, 196]), rate=st.floats(0.01, 0.5), group_size=st.integers(1, 4),
       max_group_prob=st.floats(0.5, 4.0), rollouts=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_grouped_rank_band_sample_spends_exactly_k_distinct_tokens(hw, rate, group_size, max_group_prob, rollouts, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(hw, generator=g) * 3
    k = tokens_per_frame(rate, hw)
    masks = grouped_rank_band_sample(s, k, rollouts, rate, group_size, max_group_prob, g)
    assert masks.shape == (rollouts, hw) and masks.dtype == torch.bool
    assert (masks.sum(1) == k).all()  # a bool mask cannot hold an index twice: k True = k distinct tokens
    assert set(torch.nonzero(masks[0]).flatten().tolist()) == set(s.topk(k).indices.tolist())  # rollout 0 = top-k


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 40), cap_scale=st.floats(1.0, 5.0), seed=st.integers(0, 10_000))
def test_clipped_probabilities_are_a_valid_distribution_under_the_cap(n, cap_scale, seed):
    p = torch.softmax(torch.randn(n, generator=torch.Generator().manual_seed(seed)) * 4, 0)
    cap = min(cap_scale / n, 1.0)
    q = clip_max_probability(p, cap)
    assert torch.isclose(q.sum(), torch.tensor(1.0), atol=1e-5)
    assert (q >= 0).all() and float(q.max()) <= cap + 1e-5


@settings(max_examples=25, deadline=None)
@given(t=st.integers(1, 6), side=st.sampled_from([2, 4, 5]), gens=st.sampled_from([4, 8, 12]), rate=st.floats(0.05, 0.5),
       seed=st.integers(0, 1000))
def test_every_rollout_spends_the_same_budget_k_per_frame(t, side, gens, rate, seed):
    g = torch.Generator().manual_seed(seed)
    hw = side * side
    raw = torch.randn(t * hw, 8, generator=g)
    r = sample_rollouts(torch.randn(t * hw, generator=g), torch.randn(t, generator=g), raw, (t, side, side), gens, rate,
                        generator=g)
    k = tokens_per_frame(rate, hw)
    assert r.masks.shape == (gens, t * hw)
    assert r.mode.count("content") == 1 and r.mode.count("frame") == gens // 4
    assert (r.masks.sum(1) == min(k * t, t * hw)).all() or all(  # frame mode may have fewer tokens than k·t in its frames
        m.sum() == min(k * t, int(f.sum()) * hw) for m, f in zip(r.masks[[i for i, x in enumerate(r.mode) if x == "frame"]], r.frame_actions))
    token_rows = r.masks[[i for i, x in enumerate(r.mode) if x == "token"]].view(-1, t, hw)
    assert (token_rows.sum(-1) == k).all()  # token and content modes: exactly k per frame
    assert (r.masks[0].view(t, hw).sum(-1) == k).all()
    frames = min(max(math.ceil(t * 0.125), math.ceil(k * t / hw), 1), t)
    assert (r.frame_actions.sum(1) == frames).all()
    for mask, chosen in zip(r.masks[[i for i, x in enumerate(r.mode) if x == "frame"]], r.frame_actions):
        assert not mask.view(t, hw)[~chosen].any()  # frame-mode tokens lie inside the chosen frames


def test_density_peaks_pick_one_token_per_cluster_not_an_outlier():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(10, 4, generator=g) * 0.05, torch.tensor([[5.0, 5, 5, 5]]), torch.randn(6, 4, generator=g) * 0.05 + 2])
    top = sorted(release_density_peaks(x, g).topk(2).indices.tolist())
    assert top[0] < 10 and top[1] >= 11  # one peak in each cluster; the lone outlier (index 10) has no density


def test_a_confident_policy_still_samples_valid_masks():
    """Scores far apart underflow the tail's softmax probabilities to 0; sampling must still work."""
    s = torch.tensor([400.0, 300.0] + [-400.0] * 14)
    masks = grouped_rank_band_sample(s, 2, 16, 0.25, 2, 2.0, torch.Generator().manual_seed(0))
    assert (masks.sum(1) == 2).all()
