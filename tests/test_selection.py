"""Inference selection and max-probability clipping reproduce the release exactly (golden vectors)."""
import json

import pytest
import torch
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.selection import clip_max_probability, clip_max_probability_over_rollouts, select_tokens

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
                         c["retention"], c["imp_ratio"], c["max_sample_ratio_for_each_frame"])
    assert keep.tolist() == [bool(x) for x in c["keep_mask"]]


@settings(max_examples=60, deadline=None)
@given(t=st.integers(1, 12), side=st.integers(1, 7), retention=st.floats(0.01, 1.0), imp_ratio=st.sampled_from([0.25, 0.5, 1.0]),
       seed=st.integers(0, 10**6))
def test_selection_meets_the_budget_exactly(t, side, retention, imp_ratio, seed):
    g = torch.Generator().manual_seed(seed)
    n = t * side * side
    keep = select_tokens(torch.randn(t, generator=g), torch.randn(n, generator=g), (t, side, side), retention, imp_ratio)
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
