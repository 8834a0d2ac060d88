"""The policy network (docs/method.md §2) and its checkpoints (policy tensors only)."""
import copy
import json

import pytest
import torch
from transformers import Qwen2Config, Qwen2Model

from cacovid_lib.io_utils import KitInputError
from cacovid_lib.method.policy import CompressionPolicy, action_logprobs, load_policy, save_policy, scores


def qwen2(hidden=64):
    return Qwen2Model(Qwen2Config(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, vocab_size=32)).eval()


def test_policy_is_a_copy_of_the_first_layer_with_release_tensor_names():
    llm = qwen2()
    policy = CompressionPolicy.from_llm(llm)
    for name, tensor in llm.layers[0].state_dict().items():
        assert torch.equal(policy.state_dict()[f"layers.0.{name}"], tensor)
    names = set(policy.state_dict())
    assert {"layernorm.weight", "token_compress.8.weight", "frame_compress.0.bias"} <= names
    assert policy.token_compress[8].out_features == 2 and policy.token_compress[6].out_features == 64 // 16


def test_video_token_scores_see_the_question_after_them():
    """Bidirectional attention: changing a text token *after* the video changes the video tokens' scores."""
    policy = CompressionPolicy.from_llm(qwen2())
    grid = (2, 2, 2)
    x = torch.randn(1, 3 + 8 + 4, 64)
    pos = torch.arange(15)[None]
    mask = torch.ones(1, 15, dtype=torch.long)
    video = torch.zeros(1, 15, dtype=torch.bool)
    video[0, 3:11] = True
    tok1, fr1 = policy(x, pos, mask, video, grid)
    x2 = x.clone()
    x2[0, -1] += 1.0  # the last question token
    tok2, fr2 = policy(x2, pos, mask, video, grid)
    assert tok1.shape == (1, 8, 2) and fr1.shape == (1, 2, 2)
    assert not torch.allclose(tok1, tok2)
    lp = action_logprobs(tok1, torch.ones(1, 8))
    assert torch.allclose(lp, torch.log_softmax(tok1, -1)[..., 1]) and scores(tok1).shape == (1, 8)


def test_checkpoint_round_trip_and_clear_errors(tmp_path):
    llm = qwen2()
    policy = CompressionPolicy.from_llm(llm, seed=3)
    save_policy(policy, tmp_path / "ckpt", "tiny-qwen2", {"step": 7})
    config = json.loads((tmp_path / "ckpt" / "policy_config.json").read_text())
    assert config["hidden_size"] == 64 and config["base_model"] == "tiny-qwen2" and config["step"] == 7
    loaded = load_policy(tmp_path / "ckpt", llm)
    for name, tensor in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with pytest.raises(KitInputError, match="trained for hidden size 64 .*the model has 32"):
        load_policy(tmp_path / "ckpt", qwen2(hidden=32))
    with pytest.raises(KitInputError, match="not a policy checkpoint"):
        load_policy(tmp_path, llm)


def padded_batch(d=64):
    """Two prompts of 3 text + 8 video + 4 question tokens; the second has 3 padding tokens at the end."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 18, d, generator=g)
    mask = torch.ones(2, 18, dtype=torch.long)
    mask[0, 15:] = 0  # the first one is shorter: padding after its question
    video = torch.zeros(2, 18, dtype=torch.bool)
    video[:, 3:11] = True
    return x, torch.arange(18).expand(2, -1), mask, video


def layer_output(policy, x, pos, mask, video, grid):
    """The copied layer's hidden states (B, L, D) on this batch (the heads of an untrained policy flatten differences)."""
    seen = []
    hook = policy.layers[0].register_forward_hook(lambda module, args, out: seen.append(out[0] if isinstance(out, tuple) else out))
    tok, _ = policy(x, pos, mask, video, grid)
    hook.remove()
    return tok, seen[0]


def test_the_bidirectional_mask_means_the_same_under_eager_and_sdpa():
    grid = (2, 2, 2)
    sdpa = CompressionPolicy.from_llm(qwen2())
    eager = copy.deepcopy(sdpa)
    eager.layers[0].self_attn.config._attn_implementation = "eager"
    assert sdpa.layers[0].self_attn.config._attn_implementation == "sdpa"
    x, pos, mask, video = padded_batch()
    tok_s, hid_s = layer_output(sdpa, x, pos, mask, video, grid)
    tok_e, hid_e = layer_output(eager, x, pos, mask, video, grid)
    assert torch.allclose(tok_s, tok_e, atol=1e-5) and torch.allclose(hid_s[:, :15], hid_e[:, :15], atol=1e-5)
    # padding is invisible: the padded prompt's real tokens come out as they do alone, unpadded
    for policy, hid in ((sdpa, hid_s), (eager, hid_e)):
        _, alone = layer_output(policy, x[:1, :15], pos[:1, :15], mask[:1, :15], video[:1, :15], grid)
        assert torch.allclose(alone[0], hid[0, :15], atol=1e-5)
    # and the mask is what makes that so: attending to the padding changes them
    _, unmasked = layer_output(sdpa, x, pos, torch.ones_like(mask), video, grid)
    assert (unmasked[0, :15] - hid_s[0, :15]).abs().max() > 100 * 1e-5  # far above the tolerance above


def test_flash_attention_2_is_refused_with_a_one_line_error():
    policy = CompressionPolicy.from_llm(qwen2())
    policy.layers[0].self_attn.config._attn_implementation = "flash_attention_2"
    x, pos, mask, video = padded_batch()
    with pytest.raises(KitInputError, match="attn_implementation: 'flash_attention_2' .*valid: eager, sdpa"):
        policy(x, pos, mask, video, (2, 2, 2))
