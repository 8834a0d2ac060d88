"""The optimiser learns: with a planted reward (no LLM) the policy's per-frame top-k finds hidden key tokens,
and does not when the rewards (hence the advantages) are shuffled across rollouts."""
import numpy as np
import torch
from conftest import inputs_for, planted_world, qwen2_llm, top_k_recovers_keys

from cacovid_lib.method.policy import CompressionPolicy
from cacovid_lib.method.train_loop import PolicyTrainConfig, train_policy


def run(shuffle: bool, steps=300, gens=16, rate=0.25, lr=5e-3, items=4):
    llm = qwen2_llm()
    policy = CompressionPolicy.from_llm(llm, seed=0)
    video, keys = planted_world(32, seed=0)
    rng = np.random.default_rng(0)

    def reward_fn(idx, inputs, masks):  # (B, G, N) -> (B, G): 1 only if every key token is kept
        r = torch.stack([masks[b][:, keys[i]].all(-1) for b, i in enumerate(idx)]).float()
        return r[:, rng.permutation(r.shape[1])] if shuffle else r

    cfg = PolicyTrainConfig(steps=steps, items_per_step=items, num_generations=gens, num_iter_for_item=5, sample_rate=rate,
                            min_sample_rate=rate, max_sample_rate=rate, lr=lr, layer_lr_scale=0.1, seed=0)
    before = top_k_recovers_keys(policy, *planted_world(64, seed=1))
    train_policy(policy, inputs_for(video), reward_fn, len(video), cfg, progress=False)
    return before, top_k_recovers_keys(policy, *planted_world(64, seed=1))  # held-out items


def test_policy_learns_planted_keys_and_not_with_shuffled_advantages():
    before, after = run(shuffle=False)
    _, shuffled = run(shuffle=True)
    assert before < 0.1
    assert after >= 0.8, after
    assert shuffled < 0.2, shuffled
