"""FastV's scoring computes the last prompt token's attention row alone: the same numbers as eager attention's full
forward with every attention map (kept here as the reference), from decoder layers 0..K-1 run as the model runs
them and no attention map anywhere."""
import pytest
import torch

from cacovid_lib.compare import baselines
from cacovid_lib.compare.efficiency import LLMShape
from cacovid_lib.compare.profile import build_llava_onevision, build_qwen2_5_vl, padded_item
from cacovid_lib.io_utils import KitInputError

SHAPE = LLMShape(layers=4, hidden=64, intermediate=128, heads=4, kv_heads=2, vocab=0)  # grouped-query, as 7B's 28:4


def _peaked(vlm):
    """Random weights attend almost uniformly; larger query and key weights make the rows uneven, so that parity
    is tested on attention that ranks tokens."""
    with torch.no_grad():
        for layer in vlm.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    return vlm


@pytest.fixture(scope="module", params=["llava_onevision", "qwen2_5_vl"])
def backend(request):
    """A tiny random model of the real class, two items whose prompts differ in length (so one is left-padded) and
    their video-token embeddings (2, N+1, D)."""
    torch.manual_seed(0)
    build = {"llava_onevision": build_llava_onevision, "qwen2_5_vl": build_qwen2_5_vl}[request.param]
    vlm = _peaked(build(SHAPE, 2, 2, "cpu", torch.float32))
    items = [padded_item(vlm, 40), padded_item(vlm, 47)]
    video = torch.randn(2, vlm.num_video_tokens + 1, SHAPE.hidden, generator=torch.Generator().manual_seed(1))
    return vlm, items, video


def eager_reference(vlm, items, video_embeds, layer):
    """The scoring as it was: the whole LLM under eager attention with every attention map, then layer `layer`'s
    last row, head-averaged, at the video columns -> (B, N)."""
    prompts = [vlm.prompt(item) for item in items]
    n = video_embeds.shape[1] - 1
    seqs = [vlm.assemble(p, v, torch.ones(n, dtype=torch.bool)) for p, v in zip(prompts, video_embeds)]
    embeds, positions, mask, pads = vlm.left_padded(seqs)
    with torch.no_grad(), baselines.eager_attention(vlm.model):
        attn = vlm.language_model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                  output_attentions=True).attentions[layer]
    last = attn[:, :, -1].float().mean(1)  # (B, L)
    starts = [pad + len(p.prefix_ids) for p, pad in zip(prompts, pads)]
    return torch.stack([row[s:s + n] for row, s in zip(last, starts)])


@pytest.mark.parametrize("layer", range(SHAPE.layers))
def test_the_attention_row_equals_eager_attentions_full_forward(backend, layer):
    vlm, items, video = backend
    scores = baselines.last_token_attention(vlm, items, video, layer)  # (B, N)
    reference = eager_reference(vlm, items, video, layer)
    assert scores.shape == (2, vlm.num_video_tokens) and scores.dtype == torch.float32
    assert (reference.amax(1) > 3 * reference.amin(1)).all()  # uneven rows: the tokens' ranking is tested
    torch.testing.assert_close(scores, reference, rtol=1e-4, atol=1e-6)
    assert vlm.model.config._attn_implementation == "sdpa"  # nothing switched the model to eager and left it there


def test_the_row_is_a_distribution_over_the_real_tokens_only(backend):
    vlm, items, video = backend
    prompts = [vlm.prompt(item) for item in items]
    n = vlm.num_video_tokens
    embeds, positions, mask, pads = vlm.left_padded([vlm.assemble(p, v, torch.ones(n, dtype=torch.bool))
                                                     for p, v in zip(prompts, video)])
    row = baselines.last_query_attention(vlm.language_model, embeds, positions, mask, layer=2)  # (B, L)
    assert pads[0] > 0 and row[0, :pads[0]].eq(0).all()  # the padding gets nothing
    torch.testing.assert_close(row.sum(1), torch.ones(2))


def test_only_the_layers_before_the_scored_one_run_and_no_attention_map_is_made(backend):
    vlm, items, video = backend
    lm, layer = vlm.language_model, 2
    ran, weights, implementations, q_inputs, k_inputs = [], [], [], [], []
    hooks = [block.register_forward_hook(lambda m, a, o, i=i: ran.append(i)) for i, block in enumerate(lm.layers)]
    for block in lm.layers:
        hooks.append(block.self_attn.register_forward_pre_hook(
            lambda m, a, kw: implementations.append((m.config._attn_implementation, kw.get("output_attentions"))),
            with_kwargs=True))
        hooks.append(block.self_attn.register_forward_hook(lambda m, a, o: weights.append(o[1])))
    hooks.append(lm.layers[layer].self_attn.q_proj.register_forward_hook(lambda m, a, o: q_inputs.append(a[0].shape)))
    hooks.append(lm.layers[layer].self_attn.k_proj.register_forward_hook(lambda m, a, o: k_inputs.append(a[0].shape)))
    try:
        baselines.last_token_attention(vlm, items, video, layer)
    finally:
        for hook in hooks:
            hook.remove()
    assert ran == list(range(layer))  # layers 0..K-1 in full, once each; layer K and later never run their forward
    assert implementations == [("sdpa", None)] * layer  # the model's own attention, no attention weights asked for
    assert weights == [None] * layer  # and none returned
    length = k_inputs[0][1]
    assert q_inputs == [(2, 1, SHAPE.hidden)] and k_inputs == [(2, length, SHAPE.hidden)]  # one query, every key


def test_a_layer_outside_the_model_is_a_one_line_error(backend):
    vlm, items, video = backend
    with pytest.raises(KitInputError, match=r"FastV's layer: 4 is outside the language model's layers 0\.\.3"):
        baselines.last_token_attention(vlm, items, video, SHAPE.layers)
