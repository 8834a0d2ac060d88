"""The baselines keep exactly the budget, follow their papers' rules on inputs whose answer is known, and the
in-LLM pruning forward agrees with the plain one when nothing is pruned."""
import numpy as np
import pytest
import torch

from cacovid_lib.compare import baselines
from cacovid_lib.compare.evaluation import option_scores, predict
from cacovid_lib.compare.keep import Selection, random_keep_rule
from cacovid_lib.io_utils import KitInputError


def _rules(vlm, split, ratio):
    return {
        "random": random_keep_rule(ratio),
        "uniform": baselines.uniform_rule(vlm, ratio),
        "fastv": baselines.fastv_rule(vlm, split.items, ratio, layer=0),
        "fastv_input": baselines.fastv_rule(vlm, split.items, ratio, layer=0, inside_llm=False),
        "visionzip": baselines.visionzip_rule(vlm, split, ratio),
        "divprune": baselines.divprune_rule(ratio),
        "temporal_merge": baselines.temporal_merge_rule(vlm, split.items, ratio, layer=0),
    }


@pytest.mark.parametrize("ratio", [0.25, 0.1, 0.05])
def test_every_baseline_keeps_exactly_the_budget_and_answers(tiny_vlm, test_split, embeds, ratio):
    idx = np.arange(3)
    batch = embeds[test_split.video_of_item[idx]]
    n = tiny_vlm.num_video_tokens
    for name, rule in _rules(tiny_vlm, test_split, ratio).items():
        sel = rule(idx, batch)
        sel = sel if isinstance(sel, Selection) else Selection(sel)  # random_keep_rule returns a bare mask
        keeps = sel.keeps
        assert keeps.shape == (3, n) and keeps.dtype == torch.bool, name
        assert (keeps.sum(1) == int(ratio * n)).all(), name
        scores = option_scores(tiny_vlm, [test_split.items[i] for i in idx], batch, sel)
        assert scores.shape == (3, 4) and torch.isfinite(scores).all(), name
    assert tiny_vlm.model.config._attn_implementation == "sdpa"  # the attention baselines switched back


def test_retention_outside_range_is_a_clear_error():
    with pytest.raises(KitInputError, match="outside"):
        baselines.token_budget(128, 1.5)


@torch.no_grad()
def test_pruning_inside_the_llm_equals_the_plain_forward_when_nothing_is_pruned(tiny_vlm, test_split, embeds):
    items = test_split.items[:2]
    batch = embeds[test_split.video_of_item[:2]]
    prompts = [tiny_vlm.prompt(it) for it in items]
    everything = torch.ones(2, tiny_vlm.num_video_tokens, dtype=torch.bool)
    plain = tiny_vlm.option_logprobs(prompts, batch, everything)
    inside = tiny_vlm.option_logprobs_pruned_inside(prompts, batch, everything, after_layer=0)
    torch.testing.assert_close(inside, plain, rtol=1e-4, atol=1e-4)
    # pruning after the last layer changes nothing either: the kept set only matters to later layers
    some = torch.zeros_like(everything)
    some[:, :10] = True
    last = len(tiny_vlm.language_model.layers) - 1
    torch.testing.assert_close(tiny_vlm.option_logprobs_pruned_inside(prompts, batch, some, after_layer=last), plain,
                               rtol=1e-4, atol=1e-4)
    # pruning after layer 0 differs from both keeping everything and pruning at the input
    mid = tiny_vlm.option_logprobs_pruned_inside(prompts, batch, some, after_layer=0)
    assert not torch.allclose(mid, plain) and not torch.allclose(mid, tiny_vlm.option_logprobs(prompts, batch, some))


def test_fastv_keeps_the_tokens_the_last_token_attends_to(tiny_vlm, test_split, embeds):
    batch = embeds[test_split.video_of_item[:1]]
    attention = baselines.last_token_attention(tiny_vlm, test_split.items[:1], batch, layer=0)  # (1, N)
    assert attention.shape == (1, tiny_vlm.num_video_tokens) and (attention >= 0).all()
    sel = baselines.fastv_rule(tiny_vlm, test_split.items, 0.1, layer=0)(np.arange(1), batch)
    k = int(0.1 * tiny_vlm.num_video_tokens)
    assert set(torch.nonzero(sel.keeps[0]).flatten().tolist()) == set(attention[0].topk(k).indices.tolist())


def test_divprune_picks_one_token_per_cluster():
    """Three tight clusters of near-identical tokens: a max-min diverse set of 3 takes one from each."""
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 10
    tokens = torch.cat([c + 0.01 * torch.randn(5, 8, generator=g) for c in centres])  # (15, 8)
    keep = baselines.divprune_select(tokens, 3)
    assert sorted((torch.nonzero(keep).flatten() // 5).tolist()) == [0, 1, 2]


def test_visionzip_keeps_dominant_tokens_and_merges_the_rest_into_contextual_ones():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(1, 21, 8, generator=g)  # 20 video tokens + newline
    attention = torch.zeros(1, 20)
    attention[0, [3, 7, 11]] = 1.0
    sel = baselines.visionzip_select(attention, video, k=5, dominant_share=0.6)
    kept = torch.nonzero(sel.keeps[0]).flatten().tolist()
    assert len(kept) == 5 and {3, 7, 11} <= set(kept)
    contextual = [i for i in kept if i not in (3, 7, 11)]
    assert len(contextual) == 2  # the 15 other tokens are merged into them
    assert any(not torch.equal(sel.video_embeds[0, i], video[0, i]) for i in contextual)
    assert torch.equal(sel.video_embeds[0, [3, 7, 11]], video[0, [3, 7, 11]])
    assert torch.equal(sel.video_embeds[0, 20], video[0, 20])  # the newline is untouched


def test_temporal_merge_folds_static_tokens_and_keeps_moving_ones():
    """Position 0 is static over 4 frames, the others change every frame: the static chain merges into its
    first token, and with importance on a moving token both survive at k = 2."""
    g = torch.Generator().manual_seed(0)
    t, h, w = 4, 1, 3
    tokens = torch.randn(t, h * w, 16, generator=g)
    tokens[:, 0] = tokens[0, 0]  # static
    importance = torch.zeros(t * h * w)
    importance[5] = 1.0  # frame 1, position 2
    keep, merged = baselines.temporal_merge_select(tokens.view(-1, 16), (t, h, w), importance, k=2, threshold=0.99)
    assert keep.sum() == 2 and keep[5]
    torch.testing.assert_close(merged[0], tokens[0, 0])


def _temporal_merge_loop(video_tokens, grid, importance, k, threshold):
    """The temporal merge as it was written before it was vectorised, kept as the reference: pairs merge one by one
    in similarity order until the budget, then each token's chain head is looked up in time order."""
    t, h, w = grid
    hw, n = h * w, t * h * w
    x = torch.nn.functional.normalize(video_tokens.float(), dim=-1).view(t, hw, -1)
    sim = (x[1:] * x[:-1]).sum(-1).flatten()
    parent, alive = torch.arange(n), n
    for pair in sim.argsort(descending=True).tolist():
        if sim[pair] < threshold or alive <= k:
            break
        parent[pair + hw] = parent[pair]
        alive -= 1
    for j in range(n):
        parent[j] = parent[parent[j]]
    heads = torch.unique(parent)
    chain_importance = torch.zeros(n).index_add_(0, parent, importance.float())
    keep = torch.zeros(n, dtype=torch.bool)
    keep[heads[chain_importance[heads].topk(k).indices]] = True
    merged = torch.zeros_like(video_tokens).index_add_(0, parent, video_tokens)
    return keep, merged / torch.bincount(parent, minlength=n).clamp(min=1)[:, None].to(video_tokens.dtype)


def test_temporal_merge_equals_the_merge_loop_on_random_videos():
    """Random grids, redundancy, budgets and thresholds: budget-bound, threshold-bound and merge-free cases."""
    g = torch.Generator().manual_seed(0)
    budget_bound = threshold_bound = 0
    for _ in range(200):
        t, h, w = (int(torch.randint(1, hi, (1,), generator=g)) for hi in (10, 4, 4))
        n = t * h * w
        noise = float(torch.rand(1, generator=g))
        tokens = (torch.randn(1, h * w, 8, generator=g) + noise * torch.randn(t, h * w, 8, generator=g)).view(n, 8)
        importance = torch.rand(n, generator=g)
        k = int(torch.randint(1, n + 1, (1,), generator=g))
        threshold = float(torch.rand(1, generator=g)) * 1.2 - 0.1
        keep, merged = baselines.temporal_merge_select(tokens, (t, h, w), importance, k, threshold)
        ref_keep, ref_merged = _temporal_merge_loop(tokens, (t, h, w), importance, k, threshold)
        assert torch.equal(keep, ref_keep) and keep.sum() == k
        torch.testing.assert_close(merged, ref_merged, rtol=0, atol=1e-6)
        above = int((torch.nn.functional.cosine_similarity(tokens.view(t, h * w, 8)[1:], tokens.view(t, h * w, 8)[:-1], dim=-1)
                     >= threshold).sum())
        budget_bound += above > n - k
        threshold_bound += 0 < above < n - k
    assert budget_bound > 20 and threshold_bound > 20  # both stopping rules were exercised


def test_temporal_merge_makes_every_tensor_on_the_tokens_device():
    """On meta (no values, so no host reads either): the outputs are there too."""
    tokens, importance = torch.empty(4 * 6, 16, device="meta"), torch.empty(4 * 6, device="meta")
    keep, merged = baselines.temporal_merge_select(tokens, (4, 2, 3), importance, k=5)
    assert keep.device.type == merged.device.type == "meta" and keep.shape == (24,) and merged.shape == (24, 16)


def test_predict_takes_selections_and_cached_videos(tiny_vlm, test_split, embeds):
    preds, kept = predict(tiny_vlm, test_split, baselines.divprune_rule(0.25), batch_size=5, video_embeds=embeds)
    assert preds.shape == (len(test_split),) and (kept.sum(1) == int(0.25 * tiny_vlm.num_video_tokens)).all()


def test_last_token_attention_is_the_same_batched_as_one_by_one(tiny_vlm, test_split, embeds):
    items = [test_split.items[0], test_split.items[5]]  # different prompt lengths -> left padding
    batch = embeds[test_split.video_of_item[[0, 5]]]
    batched = baselines.last_token_attention(tiny_vlm, items, batch, layer=1)
    single = torch.cat([baselines.last_token_attention(tiny_vlm, [it], v[None], layer=1) for it, v in zip(items, batch)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-6)


def test_remembered_scores_give_the_same_selections_and_are_computed_once_per_batch(tiny_vlm, test_split, embeds):
    calls = []
    llm = baselines.last_token_scores(tiny_vlm, test_split.items, 0)
    shared_llm = baselines.remembered(lambda idx, v: calls.append(tuple(idx)) or llm(idx, v))
    shared_vision = baselines.remembered(baselines.vision_scores(tiny_vlm, test_split))
    for ratio in (0.25, 0.1):
        for idx in (np.arange(2), np.arange(2, 4)):
            batch = embeds[test_split.video_of_item[idx]]
            pairs = [(baselines.fastv_rule(tiny_vlm, test_split.items, ratio, 0, scores=shared_llm),
                      baselines.fastv_rule(tiny_vlm, test_split.items, ratio, 0)),
                     (baselines.temporal_merge_rule(tiny_vlm, test_split.items, ratio, layer=0, scores=shared_llm),
                      baselines.temporal_merge_rule(tiny_vlm, test_split.items, ratio, layer=0)),
                     (baselines.visionzip_rule(tiny_vlm, test_split, ratio, scores=shared_vision),
                      baselines.visionzip_rule(tiny_vlm, test_split, ratio))]
            for shared, fresh in pairs:
                a, b = shared(idx, batch), fresh(idx, batch)
                assert torch.equal(a.keeps, b.keeps) and a.prune_after_layer == b.prune_after_layer
                assert (a.video_embeds is None) == (b.video_embeds is None)
                if a.video_embeds is not None:
                    torch.testing.assert_close(a.video_embeds, b.video_embeds)
    assert calls == [(0, 1), (2, 3)]  # two batches, scored once each for two ratios and two methods
