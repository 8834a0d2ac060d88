"""The peer-diagnosis ablations (compare/peer_diagnosis.py) keep exactly floor(ρ·N) video tokens, never the newline,
reduce to the original method where they should, and change the selection where they should; the table and the
geometry probe run on the tiny model."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import scenes

from cacovid_lib.compare import baselines, registry
from cacovid_lib.compare.benchmark import split_context
from cacovid_lib.compare.flashvid import flashvid_heads
from cacovid_lib.compare.peer_diagnosis import (flashvid_relevance, flashvid_variant_heads, peer_ablation_table,
                                               peer_geometry_probe, peer_rules, released_vidcom2_scores,
                                               vidcom2_variant_select)
from cacovid_lib.compare.registry import MethodSettings
from cacovid_lib.compare.vidcom2 import frame_budgets, vidcom2_select

SETTINGS = MethodSettings(fastv_layer=0)


@pytest.fixture(scope="module")
def ctx(tiny_vlm, test_split):
    c = split_context(tiny_vlm, test_split)
    return replace(c, shared=registry.shared_scores(c, SETTINGS))


@pytest.mark.parametrize("retention", [0.25, 0.1, 0.05])
def test_every_rule_keeps_exactly_the_budget_inside_the_video(tiny_vlm, test_split, embeds, ctx, retention):
    idx = np.arange(len(test_split))[:3]
    batch = embeds[test_split.video_of_item[idx]]  # (B, N+1, D)
    n = tiny_vlm.num_video_tokens
    k = baselines.token_budget(n, retention)
    for name, rule in peer_rules(ctx, retention, SETTINGS).items():
        sel = rule(idx, batch)
        assert sel.keeps.shape == (3, n) and sel.keeps.dtype == torch.bool, name  # video tokens only, no newline slot
        assert sel.keeps.sum(1).tolist() == [k] * 3, name
        if sel.video_embeds is not None:  # merging rules leave the newline as it is
            assert torch.equal(sel.video_embeds[:, -1], batch[:, -1]), name


def test_the_flashvid_variant_with_both_weights_on_is_flashvid_and_the_ablations_differ(embeds, tiny_vlm):
    grid = tiny_vlm.grid
    differs = {"released_v2": 0, "no_saliency": 0, "weight_first": 0}  # uniform relevance: the planted test below
    for video in embeds:
        tokens = video[:-1]
        saliency = baselines.frame_distinctiveness(tokens, grid)
        k = baselines.token_budget(tokens.shape[0], 0.1)
        original = flashvid_heads(tokens, grid, saliency, k)
        assert torch.equal(flashvid_variant_heads(tokens, grid, saliency, k), original)
        differs["released_v2"] += not torch.equal(flashvid_variant_heads(tokens, grid, saliency, k, "released_v2"), original)
        differs["weight_first"] += not torch.equal(flashvid_variant_heads(tokens, grid, saliency, k, first_pick="weight"), original)
        differs["no_saliency"] += not torch.equal(flashvid_variant_heads(tokens, grid, saliency, k, use_saliency=False), original)
    assert all(v > 0 for v in differs.values()), differs


def test_adts_skips_a_token_opposite_to_the_mean_and_uniform_relevance_keeps_it():
    g = torch.Generator().manual_seed(0)
    tokens = torch.ones(8, 16) + 0.1 * torch.randn(8, 16, generator=g)  # one frame of 4 x 2 tokens
    tokens[5] = -tokens[5]
    ones = torch.ones(8)
    kit = flashvid_variant_heads(tokens, (1, 4, 2), ones, 2, selected_share=1.0)
    uniform = flashvid_variant_heads(tokens, (1, 4, 2), ones, 2, "uniform", selected_share=1.0)
    assert kit[5] < 0 and uniform[5] == 5


def test_adts_starts_at_the_most_isolated_token_and_the_earlier_reading_at_the_heaviest():
    g = torch.Generator().manual_seed(0)
    tokens = torch.ones(8, 16) + 0.1 * torch.randn(8, 16, generator=g)  # one frame of 4 x 2 tokens
    tokens[5] = -tokens[5]  # far from every other token
    saliency = torch.ones(8)
    saliency[2] = 2.0  # the heaviest token, not isolated
    earlier = flashvid_variant_heads(tokens, (1, 4, 2), saliency, 1, "uniform", selected_share=1.0, first_pick="weight")
    isolated = flashvid_variant_heads(tokens, (1, 4, 2), saliency, 1, "uniform", selected_share=1.0)
    assert earlier.tolist().index(2) == 2 and (earlier >= 0).sum() == 1
    assert isolated[5] == 5 and (isolated >= 0).sum() == 1


def test_flashvid_relevance_readings_rank_an_anti_mean_token_last_or_not_at_all():
    """A token opposite to the video's mean gets the lowest relevance under both readings of the paper, and 1 under
    the uniform ablation: the mechanism by which ADTS skips the embedded world's objects."""
    g = torch.Generator().manual_seed(0)
    tokens = torch.ones(8, 16) + 0.1 * torch.randn(8, 16, generator=g)  # (t*hw, D), grid (2, 2, 2)
    tokens[5] = -tokens[5]
    for mode in ("video_mean", "released_v2"):
        assert int(flashvid_relevance(tokens, (2, 2, 2), mode).argmin()) == 5, mode
    assert torch.equal(flashvid_relevance(tokens, (2, 2, 2), "uniform"), torch.ones(8))


def test_vidcom2_uniform_frames_split_evenly_and_the_original_does_not():
    tokens = scenes((5, 1), noise=0.01)  # five near-copies of one frame, then one unlike them: frame 5 is unique
    grid = (6, 2, 3)
    t = grid[0]
    k = 12
    original = frame_budgets(tokens, grid, k)
    assert int(original.max() - original.min()) > 1  # frame uniqueness moves budget (τ = 0.01: almost one-hot)
    uniform = vidcom2_variant_select(tokens, grid, k, uniform_frames=True).view(t, -1).sum(1)
    assert int(uniform.sum()) == k and int(uniform.max() - uniform.min()) <= 1
    assert torch.equal(vidcom2_variant_select(tokens, grid, k), vidcom2_select(tokens, grid, k))  # all on: VidCom²
    random = vidcom2_variant_select(tokens, grid, k, token_score="random", seed_key=[0, 1])
    assert torch.equal(random.view(t, -1).sum(1), original) and not torch.equal(random, vidcom2_select(tokens, grid, k))


def test_released_vidcom2_scores_find_the_outlier_token():
    g = torch.Generator().manual_seed(0)
    tokens = torch.ones(4, 8) + 0.01 * torch.randn(4, 8, generator=g)  # grid (1, 2, 2)
    tokens[2] = -tokens[2]
    token_score, frame_score = released_vidcom2_scores(tokens, (1, 2, 2))
    assert token_score.shape == (1, 4) and frame_score.shape == (1,)
    assert int(token_score.argmin()) == 2  # lowest similarity to the means = most unique
    assert vidcom2_variant_select(tokens, (1, 2, 2), 1, token_score="released").nonzero().flatten().tolist() == [2]


def test_visionzip_ablations_change_the_dominant_tokens(tiny_vlm, test_split, embeds, ctx):
    idx = np.arange(2)
    batch = embeds[test_split.video_of_item[idx]]
    rules = peer_rules(ctx, 0.25, SETTINGS)
    original = rules[("VisionZip", "original")](idx, batch).keeps
    attention = ctx.shared["vision_attention"](idx, batch)  # (B, N)
    least = rules[("VisionZip", "dominant by least SigLIP attention")](idx, batch).keeps
    assert attention[least].mean() < attention[original].mean()
    assert not torch.equal(rules[("VisionZip", "dominant at random")](idx, batch).keeps, original)


def test_the_table_and_the_probe_on_the_tiny_model(tiny_vlm, test_split, embeds):
    table = peer_ablation_table(tiny_vlm, test_split, embeds, [0.1], SETTINGS, resamples=50)
    assert len(table) == 15 and set(table["method"]) == {"FlashVID", "VisionZip", "VidCom²", "Random"}
    assert ((table["ci_low"] <= table["accuracy"]) & (table["accuracy"] <= table["ci_high"])).all()
    assert table["asked_objects_kept"].between(0, 1).all()
    probe = peer_geometry_probe(tiny_vlm, test_split, embeds, SETTINGS)
    assert len(probe) == 8 and probe.filter(like="pct_").stack().between(0, 1).all()
