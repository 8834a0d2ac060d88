"""Why FlashVID, VidCom² and VisionZip fall below Random on the embedded world: each suspected step ablated as a keep rule.

Diagnosis (validation split, 300 questions; numbers from `peer_ablation_table` and `peer_geometry_probe`; the
report that accompanies this module gives them in full):

- The common cause is the world's geometry read by scores that were designed for real video: the asked object's
  tokens sit at negative cosine to the video's mean token (the mean is ~90% background), so every score that
  rewards "like the video's mean" ranks them last, and the scores that reward "unlike the mean" (VidCom²'s
  uniqueness) rank them first but pick the same one or two outlying objects in every frame.
- FlashVID: ADTS weights each token by saliency x relevance, relevance = cosine to the video's mean token mapped to
  [0, 1]; object tokens get the lowest relevance in their frame. The released code's default ("attn_div_v2")
  uses a raw dot product with the segment's mean token, which ranks them as low; its "attn_div" variant has no
  relevance term (`relevance="uniform"` here). SigLIP's attention received (the [CLS] stand-in) is the second
  weight.
- VisionZip: dominant tokens by attention received in the last SigLIP layer, as its paper prescribes for encoders
  without [CLS]; in this SigLIP, trained from scratch for 600 steps on dense captions, attention collects on
  background tokens (a property of the small model, not of the reading).
- VidCom²: token uniqueness (minus cosine to the frame's and the video's mean) and frame budgets by frame
  uniqueness follow the paper; the released code scores on the half of the channels with the lowest variance with
  a multi-scale Gaussian kernel (`token_score="released"` here).

Each ablation is a keep rule with the registry's signature, `rule(idx, video_embeds (B, N+1, D)) -> Selection`,
keeping exactly floor(ρ·N) tokens per item, built from the methods' own functions (flashvid.adts_select,
flashvid.tstm_heads, baselines.visionzip_select, vidcom2.frame_budgets / token_uniqueness); no method module is
changed.
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
                                           remembered, split_budget, token_budget, vision_attention_received,
                                           visionzip_select)
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
        return torch.ones(n)
    if mode == "video_mean":
        return ((1 + cosine_matrix(video_tokens, video_tokens.float().mean(0, keepdim=True))[:, 0]) / 2).cpu()
    t, h, w = grid
    frames = video_tokens.float().view(t, h * w, -1)  # (t, hw, D)
    relevance = torch.empty(t, h * w, device=frames.device)
    for a, b in segment_video(frames.mean(1), max(1, round(segment_share * t)), threshold):
        relevance[a:b] = frames[a:b] @ frames[a:b].mean((0, 1))  # (b-a, hw) raw dot product with the segment mean
    return relevance.flatten().cpu()


def flashvid_variant_heads(video_tokens: torch.Tensor, grid, saliency: torch.Tensor, k: int, relevance: str = "video_mean",
                           use_saliency: bool = True, selected_share: float = 0.7, threshold: float = 0.8) -> torch.Tensor:
    """flashvid.flashvid_heads with ADTS's two weights switchable: (N, D), saliency (N,) -> head_of (N,), k heads.
    With relevance="video_mean" and use_saliency=True it is flashvid_heads itself (the test checks it)."""
    t, h, w = grid
    hw = h * w
    saliency = saliency.float().cpu() if use_saliency else torch.ones(t * hw)  # (N,)
    k_selected = round(selected_share * k)
    per_frame = split_budget(k_selected, torch.ones(t), torch.full((t,), hw))  # (t,) counts, as flashvid_heads
    rel = flashvid_relevance(video_tokens, grid, relevance)  # (N,)
    frames = video_tokens.view(t, hw, -1)
    selected = torch.cat([adts_select(frames[f], saliency[f * hw:(f + 1) * hw], rel[f * hw:(f + 1) * hw], c)
                          for f, c in enumerate(per_frame.tolist())])  # (N,) bool
    head_of = tstm_heads(video_tokens, grid, ~selected, saliency, k - k_selected, threshold)
    head_of[selected] = torch.nonzero(selected).flatten()
    return head_of


def flashvid_variant_rule(grid, retention: float, saliency=None, relevance: str = "video_mean", use_saliency: bool = True,
                          selected_share: float = 0.7, threshold: float = 0.8) -> KeepRule:
    """FlashVID with its relevance term replaced (`relevance`, see flashvid_relevance) and/or its saliency set to one
    (`use_saliency=False`, also in TSTM's tree ranking). `saliency(idx, video_embeds) -> (B, N)` as flashvid_rule."""
    return merging_rule(grid, retention, lambda tokens, s, k: flashvid_variant_heads(
        tokens, grid, s, k, relevance, use_saliency, selected_share, threshold), saliency)


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
    caps = torch.full((t,), hw)
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
        counts = split_budget(k, torch.ones(t), caps)
    keep = torch.zeros(t, hw, dtype=torch.bool)
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
