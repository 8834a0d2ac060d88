"""Inference selection and max-probability clipping reproduce the release exactly (golden vectors)."""
import json

import pytest
import torch
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.selection import (SelectionRule, clip_max_probability, clip_max_probability_over_rollouts,
                                         frame_budgets, select_tokens, top_tokens)

# Inputs and outputs of the authors' release on seeded inputs, committed with the tests so they run in every clone.
GOLDEN = json.loads((ROOT / "tests" / "data" / "release_vectors.json").read_text())


@pytest.mark.parametrize("case", range(40))
def test_clip_max_probability_matches_release(case):
    c = GOLDEN["clip_max_probability"][case]
    out = clip_max_probability(torch.tensor(c["p"]), c["max_prob"])
    torch.testing.assert_close(out.double(), torch.tensor(c["out"], dtype=torch.float64), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", range(40))
def test_inference_selection_matches_release(case):
    c = GOLDEN["inference_selection"][case]
    keep = select_tokens(torch.tensor(c["frame_scores"]), torch.tensor(c["token_scores"]), (c["t"], c["h"], c["w"]),
                         c["retention"], SelectionRule(imp_ratio=c["imp_ratio"]))
    assert c["max_sample_ratio_for_each_frame"] == 1.5 * c["retention"]  # the release's msr, SelectionRule's default
    assert keep.tolist() == [bool(x) for x in c["keep_mask"]]


@settings(max_examples=60, deadline=None)
@given(t=st.integers(1, 12), side=st.integers(1, 7), retention=st.floats(0.01, 1.0), imp_ratio=st.sampled_from([0.25, 0.5, 1.0]),
       seed=st.integers(0, 10**6))
def test_selection_meets_the_budget_exactly(t, side, retention, imp_ratio, seed):
    g = torch.Generator().manual_seed(seed)
    n = t * side * side
    keep = select_tokens(torch.randn(t, generator=g), torch.randn(n, generator=g), (t, side, side), retention,
                         SelectionRule(imp_ratio=imp_ratio))
    assert int(keep.sum()) == int(retention * n)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 40), cap=st.floats(0.06, 0.9), seed=st.integers(0, 10**6))
def test_clipped_probabilities_are_valid(n, cap, seed):
    p = torch.rand(n, generator=torch.Generator().manual_seed(seed)) ** 4
    out = clip_max_probability(p, cap)
    assert torch.all(out >= 0) and abs(float(out.sum()) - 1) < 1e-5
    if cap * n > 1:
        assert float(out.max()) <= min(cap, 0.999) + 1e-6


@pytest.mark.parametrize("retention", [0.0, -0.1, 1.5])
def test_retention_outside_range_is_a_clear_error(retention):
    with pytest.raises(KitInputError, match=r"retention: .* is outside \(0, 1\]"):
        select_tokens(torch.randn(2), torch.randn(8), (2, 2, 2), retention)


@settings(max_examples=60, deadline=None)
@given(t=st.integers(2, 80), rollouts=st.integers(1, 12), peak=st.floats(0.0, 8.0), seed=st.integers(0, 10_000))
def test_release_frame_clipping_gives_valid_rows_floored_at_one_over_rollouts_squared(t, rollouts, peak, seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(t, generator=g) * peak, dim=0)
    rows = clip_max_probability_over_rollouts(p, rollouts, 3 / t)  # (rollouts, t)
    assert rows.shape == (rollouts, t) and (rows >= 0).all()
    assert torch.allclose(rows.sum(1), torch.ones(rollouts), atol=1e-5)
    floored = p.clamp(min=1 / rollouts**2)
    floored = floored / floored.sum()
    if t <= 3 * rollouts:  # every entry of the tensor is below 1/rollouts <= 3/t: the cap cannot act, only the floor
        assert torch.allclose(rows[0], floored, atol=1e-6)
    else:  # the cap on an entry of the tensor (summing to `rollouts`) is a cap of 3/t·rollouts on a row
        assert float(rows[0].max()) <= min(3 / t * rollouts, 0.999) + 1e-6


RULES = [SelectionRule(cap_multiple=None), SelectionRule(cap_multiple=4.0, frame_floor=0.0),
         SelectionRule(imp_ratio=1.0, frame_floor=0.25, frame_sharpness=10.0), SelectionRule(frame_sharpness=1.0),
         SelectionRule(allocation="global"), SelectionRule(imp_ratio=0.75, allocation="global")]


@settings(max_examples=80, deadline=None)
@given(t=st.integers(1, 12), side=st.integers(1, 7), retention=st.floats(0.01, 1.0), which=st.integers(0, len(RULES) - 1),
       seed=st.integers(0, 10**6))
def test_every_rule_variant_meets_the_budget_and_respects_its_cap(t, side, retention, which, seed):
    g = torch.Generator().manual_seed(seed)
    hw, rule = side * side, RULES[which]
    frame_scores, token_scores = torch.randn(t, generator=g) * 3, torch.randn(t * hw, generator=g)
    keep = select_tokens(frame_scores, token_scores, (t, side, side), retention, rule)
    assert keep.shape == (t * hw,) and int(keep.sum()) == int(retention * t * hw)
    top = top_tokens(frame_scores, token_scores, (t, side, side), retention, rule)
    assert bool((keep | ~top).all())  # the fill only adds
    if rule.allocation == "global":
        assert int(top.sum()) == int(rule.imp_ratio * retention * t * hw)
    else:  # a frame's count may exceed its h*w tokens at high retention (the fill makes up the rest)
        counts = frame_budgets(frame_scores, (t, side, side), retention, rule)
        assert int(counts.sum()) == int(rule.imp_ratio * retention * t * hw)
        assert torch.equal(top.view(t, hw).sum(1), counts.clamp(max=hw))
        if rule.frame_floor == 0 and rule.cap_multiple is None:
            assert counts.max() <= hw


def test_the_cap_and_the_floor_move_budget_to_the_best_frame():
    """8 frames of 36 tokens at 5%: the release caps each frame at 2 top tokens and gives every frame at least one;
    without the cap and the floor, a frame scored far above the rest takes the whole top-token budget."""
    frame_scores, grid = torch.tensor([5.0, 0, 0, 0, 0, 0, 0, 0]), (8, 6, 6)
    release = frame_budgets(frame_scores, grid, 0.05, SelectionRule(imp_ratio=1.0))
    assert release.tolist() == [2, 2, 2, 2, 2, 2, 1, 1] and SelectionRule(imp_ratio=1.0).frame_cap(0.05, 36) == 2
    free = frame_budgets(frame_scores, grid, 0.05, SelectionRule(imp_ratio=1.0, cap_multiple=None, frame_floor=0.0,
                                                                  frame_sharpness=10.0))
    assert free.tolist() == [14, 0, 0, 0, 0, 0, 0, 0]


def test_global_allocation_ranks_tokens_by_token_plus_frame_score():
    token_scores = torch.tensor([0.0, 1.0, 0.5, 2.0])  # 2 frames of 2 tokens
    keep = top_tokens(torch.tensor([3.0, 0.0]), token_scores, (2, 1, 2), 0.5, SelectionRule(imp_ratio=1.0, allocation="global"))
    assert keep.tolist() == [True, True, False, False]  # 3.0, 4.0 beat 0.5, 2.0


@pytest.mark.parametrize("field, value, message", [("imp_ratio", 0.0, "imp_ratio"), ("cap_multiple", 0.0, "cap_multiple"),
                                                   ("frame_floor", 1.5, "frame_floor"), ("frame_sharpness", 0.0, "frame_sharpness"),
                                                   ("allocation", "per_video", "allocation")])
def test_a_bad_rule_setting_is_a_one_line_error(field, value, message):
    with pytest.raises(KitInputError, match=message):
        SelectionRule(**{field: value})
