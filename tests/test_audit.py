"""The audit measures what it says: a token's contribution is the fall in log p(correct option) when that one token
is dropped, and the agreement table ranks a score by how well it recovers the contributions and the target object."""
import numpy as np
import pytest
import torch

from cacovid_lib.compare.audit import audit_sample, rank_agreement, spearman_correlation, token_contributions
from cacovid_lib.embedded.split import load_split


def test_rank_agreement_scores_a_perfect_a_reversed_and_an_oracle_ranking():
    contribution = torch.arange(20.0).repeat(3, 1)  # (B, N): token j contributes j
    target = torch.zeros(3, 20, dtype=torch.bool)
    target[:, :4] = True  # the asked-about object: the 4 least contributing tokens
    maps = {"contribution": contribution, "same_order": 2 * contribution + 1, "reversed": -contribution,
            "oracle": target.float()}
    table = rank_agreement(maps, target, k=4)
    assert table.loc["same_order"].tolist() == [pytest.approx(1.0), 1.0, 0.0]
    assert table.loc["reversed"].tolist() == [pytest.approx(-1.0), 0.0, 1.0]
    assert table.loc["oracle", "top4_on_target_object"] == 1.0
    assert list(table.columns) == ["spearman_with_contribution", "top4_overlap_with_contribution", "top4_on_target_object"]


def test_spearman_handles_ties_and_constant_scores():
    assert spearman_correlation(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0.0, 0.0, 5.0])) == pytest.approx(1.0)
    assert np.isnan(spearman_correlation(torch.ones(5), torch.arange(5.0)))


@pytest.mark.slow
def test_a_contribution_is_the_drop_of_log_p_correct_when_that_token_is_removed(tiny_vlm, tiny_world):
    split = load_split(tiny_world, "test", 8)
    sample = audit_sample(tiny_vlm, split, num_items=2, seed=0)
    assert list(sample.idx) == sorted(sample.idx) and sample.target.shape == (2, tiny_vlm.num_video_tokens)
    item, answer, video = sample.items[0], int(sample.answers[0]), sample.video_embeds[0]
    contribution = token_contributions(tiny_vlm, item, answer, video)  # (N,) from one batched forward
    n = tiny_vlm.num_video_tokens
    for j in (0, 17, n - 1):  # the same quantity, one token at a time
        keeps = torch.ones(2, n, dtype=torch.bool)
        keeps[1, j] = False
        logp = torch.log_softmax(tiny_vlm.score_options(item, video, keeps).float(), dim=-1)[:, answer]
        assert contribution[j] == pytest.approx(float(logp[0] - logp[1]), abs=1e-4)
    assert contribution.abs().max() > 0  # the untrained model still reads its video tokens
