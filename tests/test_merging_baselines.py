"""FastVID, FlashVID, HoliTom and VidCom² do what their papers say on inputs whose answer is known, keep exactly
floor(ρ·N) tokens for any grid and ratio, merge into means, and run through the registry on the tiny model."""
import time

import numpy as np
import pytest
import torch
from conftest import scenes
from hypothesis import given, settings
from hypothesis import strategies as st

from cacovid_lib.compare import baselines, registry
from cacovid_lib.compare.evaluation import option_scores
from cacovid_lib.compare.fastvid import fastvid_heads, fastvid_rule, segment_video
from cacovid_lib.compare.flashvid import adts_select, flashvid_heads, flashvid_rule, tstm_heads
from cacovid_lib.compare.holitom import best_segments, holitom_heads, holitom_rule, temporal_heads
from cacovid_lib.compare.keep import Selection
from cacovid_lib.compare.vidcom2 import frame_budgets, vidcom2_rule, vidcom2_select

NEW = ("fastvid", "flashvid", "holitom", "vidcom2")


# ---- FastVID ---------------------------------------------------------------------------------------------
def test_fastvid_cuts_two_planted_scenes_at_the_cut():
    tokens = scenes((3, 5)).view(8, 6, 16)
    assert segment_video(tokens.mean(1), min_segments=1) == [(0, 3), (3, 8)]  # the threshold finds the scene change
    assert segment_video(tokens.mean(1), min_segments=2, threshold=-1) == [(0, 3), (3, 8)]  # so does "at least 2"
    assert len(segment_video(tokens.mean(1), min_segments=4, threshold=-1)) == 4


def test_fastvid_merges_only_within_a_segment():
    """Every token's head lies in its own scene: merging never crosses the cut."""
    tokens = scenes((4, 4))
    heads = fastvid_heads(tokens, (8, 2, 3), baselines.frame_distinctiveness(tokens, (8, 2, 3)), k=10)
    kept = heads >= 0
    assert len(torch.unique(heads[kept])) == 10
    assert torch.equal(torch.arange(48)[kept] // 24, heads[kept] // 24)


# ---- VidCom² ---------------------------------------------------------------------------------------------
def test_vidcom2_gives_a_unique_frame_more_budget_than_a_repeated_one():
    tokens = scenes((5, 1), noise=0.01)  # five near-copies of one frame, then one unlike them
    budget = frame_budgets(tokens, (6, 2, 3), k=12)
    assert int(budget.sum()) == 12 and budget[5] > budget[:5].max()
    keep = vidcom2_select(tokens, (6, 2, 3), k=12).view(6, 6)
    assert keep.sum(1).tolist() == budget.tolist()


def test_vidcom2_keeps_the_token_unlike_its_frame():
    tokens = torch.ones(1, 4, 8) + 0.01 * torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(0))
    tokens[0, 2] = -tokens[0, 2]
    assert torch.nonzero(vidcom2_select(tokens.view(4, 8), (1, 2, 2), k=1)).flatten().tolist() == [2]


# ---- FlashVID --------------------------------------------------------------------------------------------
def moving_object(t=4, hw=4, dim=16, seed=0):
    """Random background; one object token that moves one position per frame."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(t, hw, dim, generator=g)
    obj = 5 * torch.randn(dim, generator=g)
    for f in range(t):
        tokens[f, f % hw] = obj + 0.05 * torch.randn(dim, generator=g)
    return tokens.view(t * hw, dim)


def test_flashvid_tree_follows_a_moving_object_and_merges_it_into_its_mean():
    tokens = moving_object()
    everyone = torch.ones(16, dtype=torch.bool)
    heads = tstm_heads(tokens, (4, 2, 2), everyone, torch.ones(16), num_trees=13, threshold=0.9)
    assert heads[[0, 5, 10, 15]].tolist() == [0, 0, 0, 0]  # one tree across positions 0, 1, 2, 3
    assert (heads >= 0).all() and len(torch.unique(heads)) == 13
    keep, merged = baselines.merge_into_heads(tokens, heads)
    torch.testing.assert_close(merged[0], tokens[[0, 5, 10, 15]].mean(0))
    torch.testing.assert_close(merged[1], tokens[1])  # a background token is left as it is


def test_flashvid_trees_stop_at_the_budget_and_adts_picks_diverse_salient_tokens():
    tokens = moving_object()
    heads = tstm_heads(tokens, (4, 2, 2), torch.ones(16, dtype=torch.bool), torch.ones(16), num_trees=15, threshold=0.9)
    assert len(torch.unique(heads[heads >= 0])) == 15 and (heads >= 0).sum() == 16  # one link only
    frame = torch.cat([torch.ones(3, 4), -torch.ones(1, 4)])  # three copies and one opposite token
    keep = adts_select(frame, torch.tensor([1.0, 0.5, 0.2, 0.1]), torch.ones(4), k=2)
    assert torch.nonzero(keep).flatten().tolist() == [0, 3]  # the most isolated (calibrated), then the most salient left


# ---- HoliTom ---------------------------------------------------------------------------------------------
def test_holitom_segmentation_maximises_the_saving():
    similar = torch.tensor([[1, 1], [1, 0], [0, 0], [1, 1]], dtype=torch.bool)  # 5 frames, 2 positions
    # the most any segmentation saves is 4: [0,2) or [0,3) saves 2, [3,5) saves 2 (transition 2 breaks every run)
    segments = best_segments(similar)
    assert segments[-1] == (3, 5) and sum(b - a for a, b in segments) == 5
    saving = 0
    for a, b in segments:
        run = similar[a:b - 1].all(0) if b - a > 1 else torch.zeros(2, dtype=torch.bool)
        saving += int(run.sum()) * (b - a - 1)
    assert saving == 4


def test_holitom_merges_a_static_token_into_its_first_occurrence_as_the_mean():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(4, 3, 16, generator=g)
    tokens[:, 0] = tokens[0, 0] + 0.01 * torch.randn(4, 16, generator=g)  # position 0 is static
    flat = tokens.view(12, 16)
    assert temporal_heads(flat, (4, 1, 3), k=9, threshold=0.95)[[0, 3, 6, 9]].tolist() == [0, 0, 0, 0]
    heads = holitom_heads(flat, (4, 1, 3), torch.ones(12), k=9, threshold=0.95)
    keep, merged = baselines.merge_into_heads(flat, heads)
    assert keep.sum() == 9 and keep[0] and not keep[[3, 6, 9]].any()
    torch.testing.assert_close(merged[0], flat[[0, 3, 6, 9]].mean(0))
    # too small a budget for the runs' savings: runs are undone until enough tokens are left
    assert len(torch.unique(temporal_heads(flat, (4, 1, 3), k=12, threshold=0.95))) == 12


# ---- every method: the budget, and merged embeddings that are means ---------------------------------------
def _rules(grid, ratio):
    return {"fastvid": fastvid_rule(grid, ratio), "flashvid": flashvid_rule(grid, ratio),
            "holitom": holitom_rule(grid, ratio), "vidcom2": vidcom2_rule(grid, ratio)}


@settings(max_examples=40, deadline=None)
@given(t=st.integers(1, 6), h=st.integers(1, 4), w=st.integers(1, 4), retention=st.floats(0.01, 1.0),
       repeated=st.booleans(), seed=st.integers(0, 1000))
def test_every_new_method_keeps_exactly_the_budget_for_any_grid_and_ratio(t, h, w, retention, repeated, seed):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(1, t * h * w + 1, 8, generator=g)
    if repeated:  # static videos and duplicate tokens: the ties and the all-redundant case
        video[0, :-1] = video[0, :h * w].repeat(t, 1)
    k = baselines.token_budget(t * h * w, retention)
    for name, rule in _rules((t, h, w), retention).items():
        sel = rule(np.array([0]), video)
        assert sel.keeps.shape == (1, t * h * w) and int(sel.keeps.sum()) == k, name
        if sel.video_embeds is not None:
            assert torch.isfinite(sel.video_embeds).all() and torch.equal(sel.video_embeds[0, -1], video[0, -1]), name


@pytest.mark.parametrize("heads_of", [fastvid_heads, flashvid_heads, holitom_heads])
def test_each_merged_embedding_is_the_mean_of_the_tokens_merged_into_it(heads_of):
    tokens = scenes((3, 3), hw=4) + 0.3 * torch.randn(24, 16, generator=torch.Generator().manual_seed(1))
    grid = (6, 2, 2)
    heads = heads_of(tokens, grid, baselines.frame_distinctiveness(tokens, grid), 7)
    keep, merged = baselines.merge_into_heads(tokens, heads)
    assert int(keep.sum()) == 7 and torch.equal(keep, torch.isin(torch.arange(24), heads))
    assert (heads[keep] == torch.nonzero(keep).flatten()).all()  # a head is its own head
    for h in torch.nonzero(keep).flatten():
        torch.testing.assert_close(merged[h], tokens[heads == h].mean(0))
    assert (heads >= 0).sum() > 7  # something was merged, not only pruned


# ---- through the registry, on the tiny model ---------------------------------------------------------------
def test_registry_builds_each_new_method_on_the_tiny_model(tiny_vlm, test_split, embeds):
    idx = np.arange(2)
    batch = embeds[test_split.video_of_item[idx]]
    pixels_of = lambda i: torch.stack([tiny_vlm.preprocess(test_split.frames[v]) for v in test_split.video_of_item[i]])
    with_pixels = registry.MethodContext(tiny_vlm, test_split.items, pixels_of=pixels_of)
    without = registry.MethodContext(tiny_vlm, test_split.items)
    n = tiny_vlm.num_video_tokens
    assert registry._saliency(with_pixels) is not None and registry._saliency(without) is None
    for key in NEW:
        m = registry.method(key)
        assert m.year >= 2025 and "arXiv" in m.paper and not m.llava_only and not m.trained
        for ctx in (with_pixels, without):
            sel = registry.build(key, ctx, 0.1)(idx, batch)
            assert isinstance(sel, Selection) and sel.keeps.shape == (2, n) and (sel.keeps.sum(1) == int(0.1 * n)).all(), key
            scores = option_scores(tiny_vlm, [test_split.items[i] for i in idx], batch, sel)
            assert torch.isfinite(scores).all(), key
    assert registry.method("VidCom²").key == "vidcom2" and registry.method("FlashVID").year == 2026
    assert tiny_vlm.model.config._attn_implementation == "sdpa"


def test_each_new_method_selects_the_same_tokens_when_run_again_and_prints_its_time(tiny_vlm, test_split, embeds, capsys):
    """A selection is a function of the video: a second run keeps the same tokens and merges them alike. Each
    method's median selection time (ms) for one 8-frame video at 10% is printed, not required."""
    batch = embeds[test_split.video_of_item[:1]]
    ctx = registry.MethodContext(tiny_vlm, test_split.items)
    times = {}
    for key in NEW:
        rule = registry.build(key, ctx, 0.1)
        first = rule(np.arange(1), batch)
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            again = rule(np.arange(1), batch)
            runs.append(1000 * (time.perf_counter() - start))
            assert torch.equal(again.keeps, first.keeps), key
            if first.video_embeds is not None:  # a merging method: the same means
                assert torch.equal(again.video_embeds, first.video_embeds), key
        times[key] = float(np.median(runs))
    with capsys.disabled():
        print(f"\nselection ms, one video of {tiny_vlm.num_video_tokens} tokens at 10%: "
              + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
