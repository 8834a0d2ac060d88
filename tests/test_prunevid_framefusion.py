"""PruneVid and FrameFusion follow their papers' rules on hand-made tokens whose answer is known, keep exactly
floor(ρ·N) tokens, merge into means, stay on the input's device, and run through the registry on both backends."""
import math

import numpy as np
import pytest
import torch
from conftest import QWEN_FRAME, scenes

from cacovid_lib.compare import baselines, registry
from cacovid_lib.compare.evaluation import option_scores
from cacovid_lib.compare.framefusion import framefusion_heads, framefusion_rule
from cacovid_lib.compare.keep import Selection
from cacovid_lib.compare.prunevid import (contiguous_segments, prunevid_heads, prunevid_rule, static_similarity,
                                          temporal_segments)
from cacovid_lib.io_utils import KitInputError

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def turned(angles_deg, dim=8):
    """Unit tokens e_0 turned by each angle towards e_1: cosine(token i, token j) = cos(angle i - angle j)."""
    out = torch.zeros(len(angles_deg), dim)
    for i, a in enumerate(angles_deg):
        out[i, 0], out[i, 1] = math.cos(math.radians(a)), math.sin(math.radians(a))
    return out


# ---- PruneVid ------------------------------------------------------------------------------------------------
def test_prunevid_segments_keep_each_clusters_longest_run_and_fold_the_rest_into_a_neighbour():
    assert contiguous_segments([0, 0, 0, 1, 0, 0, 2, 2]) == [(0, 6), (6, 8)]  # [3, 6) joins the longer left run
    assert contiguous_segments([0, 0, 1, 2, 2, 2]) == [(0, 2), (2, 6)]  # a lone frame joins the longer right run
    assert contiguous_segments([0, 0, 1, 1, 1, 0]) == [(0, 2), (2, 6)]  # a trailing fragment joins the last run
    assert contiguous_segments([0, 1, 0, 1]) == [(0, 4)] and contiguous_segments([3]) == [(0, 1)]


def test_prunevid_cuts_segments_where_frame_similarity_drops():
    frames = scenes((3, 5)).view(8, 6, 16).mean(1)
    assert temporal_segments(frames, 2) == [(0, 3), (3, 8)]
    assert temporal_segments(frames, 1) == [(0, 8)]
    assert temporal_segments(scenes((2, 3, 3)).view(8, 6, 16).mean(1), 3) == [(0, 2), (2, 5), (5, 8)]


def test_prunevid_merges_a_static_position_into_one_token_the_mean_of_its_frames():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(4, 4, 16, generator=g)  # 4 frames of 4 positions; positions 0 and 1 do not move
    tokens[:, :2] = tokens[0, :2] + 0.01 * torch.randn(4, 2, 16, generator=g)
    flat = tokens.view(16, 16)
    similarity = static_similarity(tokens)
    assert (similarity[:2] > 0.99).all() and (similarity[2:] < 0.8).all()
    # every frame is one segment (one cluster); no spatial merging (share 1): 2 static + 8 dynamic tokens are left
    heads = prunevid_heads(flat, (4, 2, 2), torch.ones(16), k=10, segment_share=0.25, cluster_share=1.0)
    assert heads[[0, 4, 8, 12]].tolist() == [0] * 4 and heads[[1, 5, 9, 13]].tolist() == [1] * 4
    dynamic = torch.tensor([2, 3, 6, 7, 10, 11, 14, 15])
    assert torch.equal(heads[dynamic], dynamic)
    keep, merged = baselines.merge_into_heads(flat, heads)
    assert int(keep.sum()) == 10
    torch.testing.assert_close(merged[0], flat[[0, 4, 8, 12]].mean(0))
    # a one-frame segment has nothing to merge over time
    assert (static_similarity(tokens[:1]) == float("-inf")).all()


def test_prunevid_merges_similar_tokens_of_a_frame_and_keeps_the_cluster_the_question_attends_to():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 16, generator=g)
    frame = torch.stack([a, b, a + 0.01 * torch.randn(16, generator=g), b + 0.01 * torch.randn(16, generator=g)])
    heads = prunevid_heads(frame, (1, 2, 2), torch.ones(4), k=2)  # β = 0.5: 4 tokens -> 2 clusters, both kept
    assert heads.tolist() == [0, 1, 0, 1]  # each cluster sits at its earliest member
    attention = torch.tensor([0.0, 0.1, 0.0, 0.2])  # the question looks at the b tokens
    assert prunevid_heads(frame, (1, 2, 2), attention, k=1).tolist() == [-1, 1, -1, 1]
    _, merged = baselines.merge_into_heads(frame, prunevid_heads(frame, (1, 2, 2), attention, k=1))
    torch.testing.assert_close(merged[1], frame[[1, 3]].mean(0))


def test_prunevid_leaves_static_positions_dynamic_when_the_budget_needs_them():
    still = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(2)).repeat(4, 1, 1).view(16, 16)
    heads = prunevid_heads(still, (4, 2, 2), torch.ones(16), k=1)  # 4 static tokens, 2 clusters of them, 1 kept
    assert torch.unique(heads).tolist() == [-1, 0] and int((heads == 0).sum()) == 8
    heads = prunevid_heads(still, (4, 2, 2), torch.ones(16), k=8)  # 4 tokens would be too few: 2 positions split
    assert len(torch.unique(heads[heads >= 0])) == 8


# ---- FrameFusion ---------------------------------------------------------------------------------------------
def two_frames():
    """2 frames x 4 positions; position p of frame 1 is cos = 0.99, 0.9, 0.7, 0.2 similar to frame 0's."""
    first = torch.eye(8)[:4]
    angles = torch.tensor([0.99, 0.9, 0.7, 0.2]).acos()
    second = angles.cos()[:, None] * first + angles.sin()[:, None] * torch.eye(8)[4:]
    return torch.cat([first, second])  # (8, 8)


def test_framefusion_merges_the_most_similar_adjacent_tokens_first_up_to_its_threshold():
    tokens, grid, flat = two_frames(), (2, 2, 2), torch.ones(8)
    # room for two merges: the two most similar, not position 2 (0.7, above S_th too)
    assert framefusion_heads(tokens, grid, flat, k=6, threshold=0.6).tolist() == [0, 1, 2, 3, 0, 1, 6, 7]
    assert framefusion_heads(tokens, grid, flat, k=5, threshold=0.6).tolist() == [0, 1, 2, 3, 0, 1, 2, 7]
    # below the budget, the three similar pairs merge, position 3 (0.2) never does: the rest is pruned by importance
    importance = torch.tensor([1.0, 0.0, 0.2, 0.0, 1.0, 0.0, 0.2, 5.0])
    heads = framefusion_heads(tokens, grid, importance, k=3, threshold=0.6)
    assert heads.tolist() == [0, -1, 2, -1, 0, -1, 2, 7]  # runs' importance: 2.0, 0.0, 0.4, 0.0 and 5.0
    keep, merged = baselines.merge_into_heads(tokens, heads)
    assert int(keep.sum()) == 3
    torch.testing.assert_close(merged[0], tokens[[0, 4]].mean(0))


def test_framefusion_cascade_merges_into_the_run_mean_until_a_round_merges_too_few():
    tokens = turned([0, 18.19, -41.81])  # b ~ a (0.95); c unlike b (0.5), but like the mean of a and b (0.63)
    importance = torch.tensor([0.0, 0.0, 1.0])
    # round 1 merges b into a; round 2 compares c with a's run, now their mean, and merges it too
    assert framefusion_heads(tokens, (3, 1, 1), importance, k=1, threshold=0.6).tolist() == [0, 0, 0]
    # a round merging 1 of 3 tokens is below a floor of 0.5: no second round, and c is kept for its importance
    assert framefusion_heads(tokens, (3, 1, 1), importance, k=1, threshold=0.6, ratio_floor=0.5).tolist() == [-1, -1, 2]


# ---- both: the budget, positions, means and devices ------------------------------------------------------------
def _rules(grid, ratio, scores):
    return {"prunevid": prunevid_rule(grid, ratio, scores), "framefusion": framefusion_rule(grid, ratio, scores)}


def random_attention(idx, video_embeds):
    g = torch.Generator().manual_seed(int(idx[0]))
    return torch.rand(video_embeds.shape[0], video_embeds.shape[1] - 1, generator=g).to(video_embeds.device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("grid", [(1, 1, 1), (1, 3, 3), (4, 2, 3), (8, 3, 3)])
@pytest.mark.parametrize("repeated", [False, True])
def test_each_keeps_exactly_the_budget_at_every_ratio_on_the_inputs_device(device, grid, repeated):
    t, h, w = grid
    n = t * h * w
    video = torch.randn(2, n + 1, 8, generator=torch.Generator().manual_seed(n)).to(device)
    if repeated:  # a still video: every position static, every pair of frames identical
        video[:, :-1] = video[:, :h * w].repeat(1, t, 1)
    for ratio in (1.0, 0.5, 0.25, 0.1, 0.05):
        for name, rule in _rules(grid, ratio, random_attention).items():
            sel = rule(np.array([3, 4]), video)
            assert sel.keeps.shape == (2, n) and sel.keeps.dtype == torch.bool, name
            assert sel.keeps.sum(1).tolist() == [max(1, math.floor(ratio * n))] * 2, (name, ratio)
            assert sel.keeps.device == video.device and sel.video_embeds.device == video.device, name
            assert torch.isfinite(sel.video_embeds).all() and torch.equal(sel.video_embeds[:, -1], video[:, -1]), name
            if ratio == 1.0:  # every token kept: nothing merged
                torch.testing.assert_close(sel.video_embeds, video)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("heads_of", [prunevid_heads, framefusion_heads])
def test_each_merged_embedding_is_the_mean_of_its_group_at_a_kept_position(heads_of, device):
    grid = (6, 2, 2)
    tokens = (scenes((3, 3), hw=4) + 0.1 * torch.randn(24, 16, generator=torch.Generator().manual_seed(1))).to(device)
    attention = torch.rand(24, generator=torch.Generator().manual_seed(2)).to(device)
    heads = heads_of(tokens, grid, attention, 7)
    assert heads.device == tokens.device and ((heads >= -1) & (heads < 24)).all()
    keep, merged = baselines.merge_into_heads(tokens, heads)
    kept = torch.nonzero(keep).flatten().to(device)
    assert len(kept) == 7 and (heads[kept] == kept).all()  # a head is its own head
    for h in kept:
        torch.testing.assert_close(merged[h], tokens[heads == h].mean(0))
        assert int(torch.nonzero(heads == h).min()) == int(h)  # a group sits at its earliest member
    assert (heads >= 0).sum() > 7  # something was merged, not only pruned


# ---- the registry, on both backends -----------------------------------------------------------------------------
def test_the_registry_names_both_methods_and_checks_their_settings():
    for key, name in (("prunevid", "PruneVid"), ("framefusion", "FrameFusion")):
        m = registry.method(key)
        assert m.name == name and m.year == 2025 and "arXiv" in m.paper and not m.llava_only and not m.trained
    merge = registry.method("temporal_merge")
    assert merge.name == "Temporal merge" and "PruneVid" not in merge.paper and "kit" in merge.paper
    for bad in ({"prunevid_threshold": 1.5}, {"prunevid_segment_share": 0.0}, {"prunevid_cluster_share": 2.0},
                {"framefusion_threshold": -2.0}, {"framefusion_ratio_floor": -0.1}):
        with pytest.raises(KitInputError, match=f"^{next(iter(bad))}: "):
            registry.MethodSettings(**bad)


def test_both_run_through_the_registry_on_the_tiny_llava_model_with_shared_scores(tiny_vlm, test_split, embeds):
    idx = np.arange(2)
    batch = embeds[test_split.video_of_item[idx]]
    n = tiny_vlm.num_video_tokens
    alone = registry.MethodContext(tiny_vlm, test_split.items)
    shared = registry.MethodContext(tiny_vlm, test_split.items)
    shared.shared = registry.shared_scores(shared, registry.MethodSettings(fastv_layer=0))
    for key in ("prunevid", "framefusion"):
        first = registry.build(key, alone, 0.1, registry.MethodSettings(fastv_layer=0))(idx, batch)
        again = registry.build(key, shared, 0.1, registry.MethodSettings(fastv_layer=0))(idx, batch)
        assert isinstance(first, Selection) and (first.keeps.sum(1) == int(0.1 * n)).all(), key
        assert torch.equal(first.keeps, again.keeps) and torch.equal(first.video_embeds, again.video_embeds), key
        scores = option_scores(tiny_vlm, [test_split.items[i] for i in idx], batch, first)
        assert torch.isfinite(scores).all(), key
    assert tiny_vlm.model.config._attn_implementation == "sdpa"  # the attention forward switched back


def test_both_run_on_qwen2_5_vl_whose_attention_scores_they_read(qwen_dir):
    from cacovid_lib.models.loader import load_video_llm

    vlm = load_video_llm(qwen_dir, 4, frame_size=QWEN_FRAME)
    items = [{"problem": "what colour is the circle ?", "options": ["A. red circle", "B. blue square", "C. green cross",
                                                                     "D. red ring"],
              "problem_type": "multiple choice", "solution": "<answer>A</answer>"}] * 2
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, *QWEN_FRAME, 3), dtype=np.uint8)
    video = vlm.encode_video(torch.stack([vlm.preprocess(f) for f in frames]))  # (2, N+1, D)
    n = vlm.num_video_tokens
    for key in ("prunevid", "framefusion"):
        sel = registry.build(key, registry.MethodContext(vlm, items), 0.25)(np.arange(2), video)
        assert (sel.keeps.sum(1) == n // 4).all(), key
        assert torch.isfinite(vlm.option_logprobs([vlm.prompt(it) for it in items], sel.video_embeds, sel.keeps)).all()
