"""The optimiser learns: with a planted reward (no LLM) the policy's per-frame top-k finds hidden key tokens,
and does not when the rewards (hence the advantages) are shuffled across rollouts."""
import numpy as np
import torch
from transformers import Qwen2Config, Qwen2Model

from cacovid_lib.method.policy import CompressionPolicy, PolicyInputs, scores
from cacovid_lib.method.train_loop import PolicyTrainConfig, train_policy

GRID = (4, 4, 4)  # t, h, w
D = 64


NUM_KEYS = 2


def planted_world(num_items, seed):
    """Random video tokens; in NUM_KEYS of the 4 frames one 'key' token has a large first coordinate. The mark
    is one coordinate of 64, not an outlier direction, so a random walk of the weights cannot find it."""
    g = torch.Generator().manual_seed(seed)
    t, h, w = GRID
    video = torch.randn(num_items, t * h * w, D, generator=g)
    keys = []
    for i in range(num_items):
        frames = torch.randperm(t, generator=g)[:NUM_KEYS]
        k = frames * h * w + torch.randint(0, h * w, (NUM_KEYS,), generator=g)
        video[i, k, 0] = 4.0
        keys.append(k)
    return video, torch.stack(keys)


def inputs_for(video):
    def inputs_fn(idx):
        v = video[torch.as_tensor(idx)]  # (B, N, D): a prompt of video tokens only
        b, n, _ = v.shape
        return PolicyInputs(v, torch.arange(n).expand(b, n), torch.ones(b, n, dtype=torch.long), torch.ones(b, n, dtype=torch.bool),
                            v, GRID)
    return inputs_fn


def top_k_recovers_keys(policy, video, keys):
    t, h, w = GRID
    inp = inputs_for(video)(np.arange(len(video)))
    with torch.no_grad():
        tok, _ = policy(inp.embeds, inp.positions, inp.attention_mask, inp.video_mask, GRID)
    top = scores(tok).view(len(video), t, h * w).topk(2, dim=-1).indices + torch.arange(t)[:, None] * h * w  # (B, t, 2)
    top = top.view(len(video), -1)
    return float(np.mean([set(k.tolist()) <= set(tp.tolist()) for k, tp in zip(keys, top)]))


def qwen2_llm():
    return Qwen2Model(Qwen2Config(hidden_size=D, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                  num_key_value_heads=2, vocab_size=16)).eval()


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
