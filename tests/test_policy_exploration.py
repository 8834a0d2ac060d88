"""The exploration options of the policy loop (entropy bonus, sampling temperature) and the rollout
statistics that say whether the reward signal is there (the share of rollouts keeping the asked object)."""
import math

import pytest
import torch
from conftest import inputs_for, planted_world, qwen2_llm

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.grpo import mean_bernoulli_entropy
from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.train_loop import PolicyTrainConfig, item_loss, train_policy
from cacovid_lib.stages.policy_training import join_rollout_log, rollout_stats


def test_rollout_stats_split_the_reward_by_whether_an_asked_token_is_kept():
    masks = torch.tensor([[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]]], dtype=torch.bool)  # (B=1, G=3, N=4)
    asked = torch.tensor([[False, True, True, False]])
    stats = rollout_stats(masks, asked, torch.tensor([[1.0, 0.0, 1.0]]))
    assert stats == {"asked_in_rollouts": pytest.approx(2 / 3), "reward_with_asked": 0.5, "reward_without_asked": 1.0}
    assert math.isnan(rollout_stats(masks, torch.zeros(1, 4, dtype=torch.bool), torch.ones(1, 3))["reward_with_asked"])


def test_join_rollout_log_fills_the_last_rows_of_a_resumed_history():
    history = [{"step": s} for s in range(4)]
    join_rollout_log(history, [{"asked_in_rollouts": 0.2}, {"asked_in_rollouts": 0.3}])
    assert [h.get("asked_in_rollouts") for h in history] == [None, None, 0.2, 0.3]


def test_entropy_bonus_subtracts_its_weight_times_the_token_heads_entropy():
    g = torch.Generator().manual_seed(0)
    token_logits, old_tok = torch.randn(12, 2, generator=g), torch.randn(12, 2, generator=g)
    frame_logits, old_fr = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    memory = {"token_masks": list(torch.rand(4, 12, generator=g) < 0.3), "token_rewards": [1.0, 0.0, 1.0, 0.0],
              "frame_actions": [], "frame_rewards": []}
    plain = item_loss(token_logits, frame_logits, old_tok, old_fr, memory, PolicyTrainConfig())
    bonus = item_loss(token_logits, frame_logits, old_tok, old_fr, memory, PolicyTrainConfig(entropy_weight=0.3))
    assert torch.isclose(bonus, plain - 0.3 * mean_bernoulli_entropy(token_logits))


def planted_history(**options):
    video, keys = planted_world(8, seed=0)

    def reward_fn(idx, inputs, masks):  # 1 only if every key token is kept
        return torch.stack([masks[b][:, keys[i]].all(-1) for b, i in enumerate(idx)]).float()

    policy = CompressionPolicy.from_llm(qwen2_llm(), seed=0)
    cfg = PolicyTrainConfig(steps=5, items_per_step=4, num_generations=8, num_iter_for_item=5, sample_rate=0.25,
                            min_sample_rate=0.25, max_sample_rate=0.25, lr=5e-3, seed=0, **options)
    return train_policy(policy, inputs_for(video), reward_fn, len(video), cfg, progress=False).history


def test_sampling_temperature_draws_other_rollouts_from_the_same_start():
    hot, cold = planted_history(sampling_temperature=4.0), planted_history()
    assert hot[0]["entropy_token"] == pytest.approx(cold[0]["entropy_token"], rel=1e-4)  # the same start is logged ...
    assert [h["loss"] for h in hot] != [h["loss"] for h in cold]  # ... but the tempered one sampled other rollouts


@pytest.mark.parametrize("field,value", [("entropy_weight", -0.1), ("sampling_temperature", 0.0)])
def test_bad_anti_collapse_values_are_one_line_errors(field, value):
    with pytest.raises(KitInputError, match=field):
        PolicyTrainConfig(**{field: value})
