"""Why FlashVID, VidCom² and VisionZip fall below Random on the embedded world: each suspected step ablated as a keep rule.

Diagnosis (validation split, 300 questions, 10% / 5% retention; `peer_ablation_table`, `peer_geometry_probe`):

- FlashVID: the kit's ADTS started each frame's max-min selection at the token of largest weight; the max-min
  greedy starts at the token whose calibrated distance to its nearest other token is largest (so does the authors'
  release, token_selection.py attn_div / attn_div_v2). With 1-3 ADTS tokens per frame the first pick is most of the
  selection, and the largest weight (saliency x relevance, relevance = cosine to the video's mean token, which ranks
  object tokens at the 35th percentile of their frame) is a background token. Measured while the kit started at the
  largest weight: starting at the most isolated token (this world's objects are the isolated ones) lifted FlashVID
  from 0.420 to 0.537 (10%) and from 0.297 to 0.523 (5%), above Random; relevance or saliency set to one lifted it
  far less. Cause: the kit's reading, mended (flashvid.adts_select first_pick="isolated"); the earlier reading stays
  here as the variant "first ADTS pick of largest weight".
- VisionZip: dominant tokens by SigLIP's last-layer attention received (as prescribed for encoders without [CLS]).
  Random dominant tokens with the same contextual merge score as Random (0.507 vs 0.517 at 10%), the LLM's
  attention 0.627; the least-attended tokens do no better than the most-attended (0.357): this SigLIP, two layers
  trained from scratch, gives object tokens no more attention than background (object percentile 0.48), and its
  top tokens are background (95% of the kept tokens, 0.60 objects covered). Cause: the small model's encoder.
- VidCom²: frame budgets are not the cause (uniform budgets: same 0.443); token uniqueness is (random tokens in the
  same budgets: 0.580). Uniqueness does rank objects first (object percentile 0.61; 17% of its kept tokens are on
  objects against Random's 10%), but concentrates them on fewer objects (1.43 covered against Random's 2.24):
  every object stays in view in all 8 frames, so each frame's most outlying tokens are the same objects'. The released scores (low-variance channels, Gaussian kernel) do no better (0.427). Cause: the
  world's geometry (persistent objects), not the reading.

Each ablation is a keep rule with the registry's signature, `rule(idx, video_embeds (B, N+1, D)) -> Selection`,
keeping exactly floor(ρ·N) tokens per item, built from the methods' own functions (flashvid.adts_select,
flashvid.tstm_heads, baselines.visionzip_select, vidcom2.frame_budgets / token_uniqueness).
"""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cacovid_lib.compare import registry
from cacovid_lib.compare.baselines import (cosine_matrix, frame_distinctiveness, last_token_attention, merging_rule,
                                           split_budget, token_budget, vision_attention_received, visionzip_select)
from cacovid_lib.compare.benchmark import split_context
from cacovid_lib.compare.coverage import object_coverage
from cacovid_lib.compare.evaluation import predict
from cacovid_lib.compare.fastvid import segment_video
from cacovid_lib.compare.flashvid import adts_select, tstm_heads
from cacovid_lib.compare.intervals import accuracy_with_interval
from cacovid_lib.compare.keep import KeepRule, Selection, random_keep_rule
from cacovid_lib.compare.registry import MethodContext, MethodSettings
from cacovid_lib.compare.vidcom2 import frame_budgets, token_uniqueness
from cacovid_lib.data.schema import asked_objects
from cacovid_lib.io_utils import KitInputError

RELEVANCE_MODES = ("video_mean", "uniform", "released_v2")
VIDCOM2_TOKEN_SCORES = ("kit", "released", "random")


# ---- FlashVID: ADTS with its relevance and saliency swapped ------------------------------------------------------
def flashvid_relevance(video_tokens: torch.Tensor, grid, mode: str = "video_mean", segment_share: float = 0.25,
                       threshold: float = 0.9) -> torch.Tensor:
    """ADTS's event-relevance weight of each token, (N, D) -> (N,) on the CPU.
    "video_mean": the kit's reading (flashvid.py line 100): (1 + cos(token, the video's mean token)) / 2.
    "uniform": no relevance term (all ones), as the released "attn_div" selection.
    "released_v2": the released default "attn_div_v2": the raw dot product of the token with its segment's mean
    token (the mean over the segment's frames of their mean tokens; segments by FastVID's DySeg, c = share x t, as
    the released FlashVID segments before ADTS); negative values clamp to 0 in adts_select (there they would make
    the calibrated distance negative: picked last either way)."""
    if mode not in RELEVANCE_MODES:
        raise KitInputError(f"relevance: {mode!r} is not one of {', '.join(RELEVANCE_MODES)}")
    n = video_tokens.shape[0]
    if mode == "uniform":
        return torch.ones(n, device="cpu")  # relevance is returned on the CPU, as the other readings
    if mode == "video_mean":
        return ((1 + cosine_matrix(video_tokens, video_tokens.float().mean(0, keepdim=True))[:, 0]) / 2).cpu()
    t, h, w = grid
    frames = video_tokens.float().view(t, h * w, -1)  # (t, hw, D)
    relevance = torch.empty(t, h * w, device=frames.device)
    for a, b in segment_video(frames.mean(1), max(1, round(segment_share * t)), threshold):
        relevance[a:b] = frames[a:b] @ frames[a:b].mean((0, 1))  # (b-a, hw) raw dot product with the segment mean
    return relevance.flatten().cpu()


def flashvid_variant_heads(video_tokens: torch.Tensor, grid, saliency: torch.Tensor, k: int, relevance: str = "video_mean",
                           use_saliency: bool = True, selected_share: float = 0.7, threshold: float = 0.8,
                           first_pick: str = "isolated") -> torch.Tensor:
    """flashvid.flashvid_heads with ADTS's two weights switchable and its first pick (`first_pick`, adts_select):
    (N, D), saliency (N,) -> head_of (N,), k heads. With relevance="video_mean", use_saliency=True and
    first_pick="isolated" it is flashvid_heads itself (the test checks it)."""
    t, h, w = grid
    hw = h * w
    saliency = saliency.float().cpu() if use_saliency else torch.ones(t * hw, device="cpu")  # (N,) ADTS works on the CPU
    k_selected = round(selected_share * k)
    per_frame = split_budget(k_selected, torch.ones(t, device="cpu"), torch.full((t,), hw, device="cpu"))  # CPU counts
    rel = flashvid_relevance(video_tokens, grid, relevance)  # (N,)
    frames = video_tokens.view(t, hw, -1)
    selected = torch.cat([adts_select(frames[f], saliency[f * hw:(f + 1) * hw], rel[f * hw:(f + 1) * hw], c, first_pick)
                          for f, c in enumerate(per_frame.tolist())])  # (N,) bool
    head_of = tstm_heads(video_tokens, grid, ~selected, saliency, k - k_selected, threshold)
    head_of[selected] = torch.nonzero(selected).flatten()
    return head_of


def flashvid_variant_rule(grid, retention: float, saliency=None, relevance: str = "video_mean", use_saliency: bool = True,
                          selected_share: float = 0.7, threshold: float = 0.8, first_pick: str = "isolated") -> KeepRule:
    """FlashVID with its relevance term replaced (`relevance`, see flashvid_relevance), its saliency set to one
    (`use_saliency=False`, also in TSTM's tree ranking) and/or ADTS's first pick changed (`first_pick`).
    `saliency(idx, video_embeds) -> (B, N)` as flashvid_rule."""
    return merging_rule(grid, retention, lambda tokens, s, k: flashvid_variant_heads(
        tokens, grid, s, k, relevance, use_saliency, selected_share, threshold, first_pick), saliency)


# ---- VisionZip: dominant tokens chosen by another score ----------------------------------------------------------
def seeded_random_scores(seed: int = 0):
    """Uniform random scores per item (seeded by the item index, like random_keep_rule): (idx, video_embeds) -> (B, N)."""

    def scores(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        return torch.stack([torch.from_numpy(np.random.default_rng([seed, 7, int(i)]).random(n)).float() for i in idx])

    return scores


def negated(score_fn):
    """The same score function with its order reversed (the least-attended tokens first)."""
    return lambda idx, video_embeds: -score_fn(idx, video_embeds)


def visionzip_variant_rule(retention: float, scores, dominant_share: float = 54 / 64) -> KeepRule:
    """VisionZip (baselines.visionzip_select: dominant tokens, then contextual merging) with its dominant tokens ranked
    by `scores(idx, video_embeds) -> (B, N)` instead of SigLIP's attention received."""

    def rule(idx, video_embeds):
        s = scores(idx, video_embeds).to(video_embeds.device).float()  # (B, N)
        return visionzip_select(s, video_embeds, token_budget(s.shape[1], retention), dominant_share)

    return rule


# ---- VidCom²: frame budgets and token uniqueness switched -------------------------------------------------------
def released_vidcom2_scores(video_tokens: torch.Tensor, grid, channel_ratio: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """The released VidCom² scores (llava/model/vidcom2.py): the `channel_ratio` of the channels with the lowest
    variance over the video's tokens, each token L2-normalised on them, similarity to the video's and the frame's
    mean by a multi-scale Gaussian kernel (widths 2^-3..2^1). (N, D) -> (token score (t, hw): low = unique,
    frame score (t,): high = unique, i.e. minus the mean video similarity)."""
    t, h, w = grid
    x = video_tokens.float()
    keep = x.var(0, unbiased=False).topk(int(x.shape[1] * channel_ratio), largest=False).indices  # (D/2,)
    frames = F.normalize(x[:, keep].view(t, h * w, -1), dim=-1)  # (t, hw, D/2)

    def kernel(center):
        d2 = ((frames - center) ** 2).sum(-1)  # (t, hw)
        return sum(torch.exp(-d2 / (2 * a)) for a in (2.0 ** e for e in range(-3, 2)))

    to_video, to_frame = kernel(frames.mean((0, 1), keepdim=True)), kernel(frames.mean(1, keepdim=True))
    return (to_video + to_frame).cpu(), -to_video.mean(1).cpu()


def vidcom2_variant_select(video_tokens: torch.Tensor, grid, k: int, temperature: float = 0.01, uniform_frames: bool = False,
                           token_score: str = "kit", seed_key=None) -> torch.Tensor:
    """VidCom²'s keep mask with its stages switchable: (N, D) -> (N,) bool, exactly k True.
    uniform_frames: every frame gets k/t tokens (frame uniqueness off) instead of vidcom2.frame_budgets.
    token_score: "kit" (vidcom2.token_uniqueness), "released" (released_vidcom2_scores, which then also set the frame
    budgets), "random" (random tokens inside VidCom²'s frame budgets; seeded by `seed_key`)."""
    if token_score not in VIDCOM2_TOKEN_SCORES:
        raise KitInputError(f"token_score: {token_score!r} is not one of {', '.join(VIDCOM2_TOKEN_SCORES)}")
    t, h, w = grid
    hw = h * w
    caps = torch.full((t,), hw, device="cpu")  # (t,) the budgets are CPU bookkeeping
    if token_score == "released":
        low_is_unique, frame_unique = released_vidcom2_scores(video_tokens, grid)
        score = -low_is_unique  # (t, hw) high = unique
        sigma = torch.softmax((frame_unique - frame_unique.max()) / temperature, dim=0)  # (t,) as frame_budgets
        counts = split_budget(k, (1 + sigma - 1 / t) / t, caps)
    else:
        counts = frame_budgets(video_tokens, grid, k, temperature)  # (t,)
        if token_score == "kit":
            score = token_uniqueness(video_tokens, grid).view(t, hw).cpu()
        else:
            score = torch.from_numpy(np.random.default_rng(seed_key).random((t, hw))).float()
    if uniform_frames:
        counts = split_budget(k, torch.ones(t, device="cpu"), caps)  # CPU bookkeeping
    keep = torch.zeros(t, hw, dtype=torch.bool, device="cpu")  # the per-frame loop's bookkeeping, on the CPU
    for frame, c in enumerate(counts.tolist()):
        keep[frame, score[frame].topk(c).indices] = True
    return keep.flatten()


def vidcom2_variant_rule(grid, retention: float, temperature: float = 0.01, uniform_frames: bool = False,
                         token_score: str = "kit", seed: int = 0) -> KeepRule:
    """VidCom² with frame uniqueness off (`uniform_frames`) and/or another token score (`token_score`)."""

    def rule(idx, video_embeds):
        n = video_embeds.shape[1] - 1
        k = token_budget(n, retention)
        return Selection(torch.stack([vidcom2_variant_select(v[:n], grid, k, temperature, uniform_frames, token_score,
                                                             [seed, 11, int(i)]) for i, v in zip(idx, video_embeds)]))

    return rule


# ---- the table ---------------------------------------------------------------------------------------------------
def peer_rules(ctx: MethodContext, retention: float, settings: MethodSettings) -> dict[tuple[str, str], KeepRule]:
    """(method, variant) -> keep rule at `retention`: each method's registry rule ("original"), its ablations, and
    Random. `ctx.shared` should hold registry.shared_scores (the SigLIP and LLM attention, computed once per batch)."""
    grid = ctx.vlm.grid
    s = settings
    siglip = ctx.shared.get("vision_attention")
    if siglip is None:
        raise KitInputError("peer_rules: needs the SigLIP attention (ctx.shared from registry.shared_scores with pixels_of)")
    llm = ctx.shared["llm_attention"]
    flash = dict(selected_share=s.flashvid_selected_share, threshold=s.flashvid_threshold)
    return {
        ("FlashVID", "original"): registry.build("flashvid", ctx, retention, s),
        ("FlashVID", "relevance uniform (released attn_div)"): flashvid_variant_rule(grid, retention, siglip, "uniform", **flash),
        ("FlashVID", "relevance to segment mean, raw dot (released attn_div_v2)"):
            flashvid_variant_rule(grid, retention, siglip, "released_v2", **flash),
        ("FlashVID", "saliency uniform"): flashvid_variant_rule(grid, retention, siglip, "video_mean", False, **flash),
        ("FlashVID", "saliency and relevance uniform"): flashvid_variant_rule(grid, retention, siglip, "uniform", False, **flash),
        ("FlashVID", "first ADTS pick of largest weight (the kit's earlier reading)"):
            flashvid_variant_rule(grid, retention, siglip, first_pick="weight", **flash),
        ("VisionZip", "original"): registry.build("visionzip", ctx, retention, s),
        ("VisionZip", "dominant by least SigLIP attention"): visionzip_variant_rule(retention, negated(siglip), s.visionzip_dominant_share),
        ("VisionZip", "dominant at random"): visionzip_variant_rule(retention, seeded_random_scores(s.seed), s.visionzip_dominant_share),
        ("VisionZip", "dominant by LLM attention"): visionzip_variant_rule(retention, llm, s.visionzip_dominant_share),
        ("VidCom²", "original"): registry.build("vidcom2", ctx, retention, s),
        ("VidCom²", "uniform frame budgets"): vidcom2_variant_rule(grid, retention, s.vidcom2_temperature, uniform_frames=True),
        ("VidCom²", "random tokens in its frame budgets"): vidcom2_variant_rule(grid, retention, s.vidcom2_temperature,
                                                                               token_score="random", seed=s.seed),
        ("VidCom²", "released scores (low-variance channels, Gaussian kernel)"):
            vidcom2_variant_rule(grid, retention, s.vidcom2_temperature, token_score="released"),
        ("Random", "original"): random_keep_rule(retention, s.seed),
    }


def peer_ablation_table(vlm, split, video_embeds: torch.Tensor, ratios: list[float], settings: MethodSettings,
                        resamples: int = 1000, seed: int = 0, batch_size: int = 64) -> pd.DataFrame:
    """Every rule of `peer_rules` at every ratio on `split` (meant for the validation split; its videos encoded once:
    video_embeds (V, N+1, D)): accuracy with its 95% bootstrap interval (paired over questions), the asked-object
    coverage (compare/coverage.py), and the seconds each run took. `split` needs object labels (the embedded world)."""
    if split.object_labels is None:
        raise KitInputError("peer_ablation_table: the split has no object labels (the embedded world's ground truth)")
    ctx = split_context(vlm, split)
    ctx = replace(ctx, shared=registry.shared_scores(ctx, settings))
    labels = split.object_labels[split.video_of_item].reshape(len(split), -1)  # (n, N)
    asked = [asked_objects(it) for it in split.items]
    rows = []
    for r in ratios:
        for (name, variant), rule in peer_rules(ctx, r, settings).items():
            start = time.perf_counter()
            preds, keeps = predict(vlm, split, rule, batch_size=batch_size, desc=f"{name} {variant} {r}",
                                   video_embeds=video_embeds)
            outcomes = preds == split.answers
            rows.append({"method": name, "variant": variant, "retention": r,
                         **accuracy_with_interval(outcomes, 0.95, resamples, seed),
                         **object_coverage(labels, asked, keeps), "seconds": time.perf_counter() - start})
    return pd.DataFrame(rows)


# ---- the geometry probe -------------------------------------------------------------------------------------------
def _frame_percentile(scores: torch.Tensor, grid) -> torch.Tensor:
    """Each token's rank in its frame as a share: (N,) -> (N,) in [0, 1], 1 = the highest score of its frame."""
    t, h, w = grid
    ranks = scores.float().view(t, h * w).argsort(1).argsort(1).float()  # (t, hw)
    return (ranks / max(h * w - 1, 1)).flatten()


@torch.no_grad()
def peer_geometry_probe(vlm, split, video_embeds: torch.Tensor, settings: MethodSettings, batch_size: int = 64,
                        max_items: int | None = None) -> pd.DataFrame:
    """How each method's score ranks the asked object's tokens: one row per score, with its mean value over the
    asked object's tokens, the other objects' tokens and the non-object (background, clutter) tokens, and their
    mean rank in their frame as a share (`pct_*`: 0.5 = no preference, 1 = first). Each kind is averaged per item,
    then over items (items where a kind is missing are skipped for it). Scores, high = preferred by the method:
    cosine to the video's mean token; FlashVID's relevance (kit, and released attn_div_v2); SigLIP's last-layer
    attention received (FlashVID's saliency, VisionZip's dominance); LLM attention of the last prompt token at
    FastV's layer; VidCom²'s token uniqueness (kit, and released); frame distinctiveness (the no-pixel stand-in)."""
    if split.object_labels is None:
        raise KitInputError("peer_geometry_probe: the split has no object labels (the embedded world's ground truth)")
    grid = vlm.grid
    n_items = len(split) if max_items is None else min(max_items, len(split))
    kinds = ("asked_object", "other_object", "non_object")
    sums: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for start in range(0, n_items, batch_size):
        idx = np.arange(start, min(start + batch_size, n_items))
        videos = split.video_of_item[idx]
        embeds = video_embeds[videos]  # (B, N+1, D)
        n = embeds.shape[1] - 1
        pixels = torch.stack([vlm.preprocess(split.frames[v]) for v in videos])
        siglip = vision_attention_received(vlm, pixels).float().cpu()  # (B, N)
        llm = last_token_attention(vlm, [split.items[i] for i in idx], embeds, settings.fastv_layer).float().cpu()  # (B, N)
        for row, i in enumerate(idx):
            tokens = embeds[row, :n]  # (N, D)
            lab = split.object_labels[split.video_of_item[i]].reshape(-1)  # (N,)
            is_asked = np.isin(lab, asked_objects(split.items[i]))
            masks = {"asked_object": is_asked, "other_object": (lab >= 0) & ~is_asked, "non_object": lab < 0}
            scores = {
                "cosine to video mean": cosine_matrix(tokens, tokens.float().mean(0, keepdim=True))[:, 0].cpu(),
                "FlashVID relevance (kit)": flashvid_relevance(tokens, grid, "video_mean"),
                "FlashVID relevance (released attn_div_v2)": flashvid_relevance(tokens, grid, "released_v2"),
                "SigLIP attention received": siglip[row],
                "LLM attention (FastV layer)": llm[row],
                "VidCom² token uniqueness (kit)": token_uniqueness(tokens, grid).cpu(),
                "VidCom² token uniqueness (released)": -released_vidcom2_scores(tokens, grid)[0].flatten(),
                "frame distinctiveness": frame_distinctiveness(tokens, grid).cpu(),
            }
            for name, value in scores.items():
                pct = _frame_percentile(value, grid)
                for kind in kinds:
                    m = torch.from_numpy(masks[kind])
                    if m.any():
                        sums.setdefault(name, {k: [] for k in kinds})[kind].append((float(value[m].mean()), float(pct[m].mean())))
    rows = []
    for name, per_kind in sums.items():
        row = {"score": name}
        for kind in kinds:
            vals = np.array(per_kind[kind]) if per_kind[kind] else np.full((1, 2), np.nan)
            row[f"mean_{kind}"], row[f"pct_{kind}"] = vals[:, 0].mean(), vals[:, 1].mean()
        rows.append(row)
    return pd.DataFrame(rows)[["score", *(f"mean_{k}" for k in kinds), *(f"pct_{k}" for k in kinds)]]
