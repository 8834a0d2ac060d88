"""The GRPO pieces are small pure functions (docs/method.md §4); each is checked against its definition."""
import torch

from cacovid_lib.method.grpo import (
    adapt_sample_rate, balance_weights, clipped_objective, group_advantages, kl_to_uniform, token_loss
)


def test_group_advantages_are_normalised_and_zero_for_a_single_or_constant_group():
    a = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0]))
    assert abs(float(a.mean())) < 1e-6 and abs(float(a.std()) - 1) < 1e-3
    assert (a[[0, 3, 4]] > 0).all() and (a[[1, 2]] < 0).all()
    assert torch.equal(group_advantages(torch.tensor([1.0])), torch.zeros(1))
    assert torch.equal(group_advantages(torch.ones(4)), torch.zeros(4))


def test_clipped_objective_clips_the_ratio_asymmetrically_on_the_side_the_advantage_favours():
    logp_old = torch.zeros(2, 3)
    logp_new = torch.log(torch.tensor([[0.5, 1.0, 2.0], [0.5, 1.0, 2.0]]))  # ratios 0.5, 1, 2
    loss = clipped_objective(logp_new, logp_old, torch.tensor([1.0, -1.0]), eps_low=0.2, eps_high=0.28)
    # A > 0: -min(ρ, clip(ρ)) -> ratio 2 is clipped to 1.28, ratio 0.5 is not (the min keeps 0.5)
    assert torch.allclose(loss[0], torch.tensor([-0.5, -1.0, -1.28]))
    # A < 0: -min(-ρ, -clip(ρ)) = max(ρ, clip(ρ)) -> ratio 0.5 is clipped to 0.8, ratio 2 is not
    assert torch.allclose(loss[1], torch.tensor([0.8, 1.0, 2.0]))


def test_balance_weights_give_kept_and_dropped_tokens_equal_total_weight():
    actions = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 0, 0, 0, 0, 0]])
    w = balance_weights(actions)
    for row, a in zip(w, actions.bool()):
        assert torch.isclose(row[a].sum(), row[~a].sum())
    # the loss is a weighted mean: a constant per-decision loss comes out unchanged
    assert torch.isclose(token_loss(torch.full((2, 8), 3.0), actions), torch.tensor(3.0))


def test_kl_to_uniform_is_zero_at_one_half_and_positive_elsewhere():
    assert float(kl_to_uniform(torch.log(torch.full((4,), 0.5)))) == 0.0
    assert float(kl_to_uniform(torch.log(torch.tensor([0.9, 0.1])))) > 0


def test_adaptive_sample_rate_halves_on_success_doubles_on_failure_within_bounds():
    assert adapt_sample_rate(0.08, 0.9, floor=0.01, cap=0.12) == 0.04
    assert adapt_sample_rate(0.08, 0.1, floor=0.01, cap=0.12) == 0.12
    assert adapt_sample_rate(0.08, 0.5, floor=0.01, cap=0.12) == 0.08
    assert adapt_sample_rate(0.015, 1.0, floor=0.01, cap=0.12) == 0.01


def test_clipped_objective_stays_finite_when_the_policy_moved_far():
    loss = clipped_objective(torch.tensor([[0.0, -3000.0]]), torch.tensor([[-3000.0, 0.0]]), torch.tensor([-1.0]))
    assert torch.isfinite(loss).all()


def test_mean_bernoulli_entropy_is_log2_undecided_zero_collapsed_and_differentiable():
    from cacovid_lib.method.grpo import mean_bernoulli_entropy

    assert torch.isclose(mean_bernoulli_entropy(torch.zeros(3, 2)), torch.log(torch.tensor(2.0)))
    assert mean_bernoulli_entropy(torch.tensor([[0.0, 40.0]])) < 1e-6
    logits = torch.tensor([[0.0, 2.0]], requires_grad=True)
    mean_bernoulli_entropy(logits).backward()
    assert logits.grad[0, 1] < 0 < logits.grad[0, 0]  # more entropy = the two logits closer together
