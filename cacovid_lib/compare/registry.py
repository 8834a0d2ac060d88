"""The one method registry: every token-selection method of the harness, by one display name and one key.

The benchmark notebook, the GPU evaluation CLI (cli/benchmark_eval.py), the efficiency tables and the
scripts all build their keep rules here, so a method has the same name, paper and settings everywhere:

    rule = registry.build("FastV (input)", ctx, retention=0.1, settings=settings)   # or by key: "fastv_input"
    selection = rule(idx, video_embeds)                                             # -> Selection

A keep rule sees a batch of item indices into `ctx.items` and their video-token embeddings (B, N+1, D) (the
last one is the never-pruned newline) and returns a `Selection` keeping exactly floor(rho*N) tokens per item.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from cacovid_lib.compare import baselines
from cacovid_lib.compare.cacovid import policy_keep_rule
from cacovid_lib.compare.fastvid import fastvid_rule
from cacovid_lib.compare.flashvid import flashvid_rule
from cacovid_lib.compare.framefusion import framefusion_rule
from cacovid_lib.compare.holitom import holitom_rule
from cacovid_lib.compare.keep import KeepRule, Selection, keep_all, random_keep_rule
from cacovid_lib.compare.prunevid import prunevid_rule
from cacovid_lib.compare.vidcom2 import vidcom2_rule
from cacovid_lib.io_utils import COUNT, POSITIVE, RATIO, SEED, KitInputError, Range, check_ranges
from cacovid_lib.method.selection import RELEASE_RULE, SelectionRule
from cacovid_lib.models.base import VideoLLM
from cacovid_lib.models.llava_onevision import LlavaOneVisionVideoLLM


@dataclass
class MethodSettings:
    """The methods' own settings (their papers' defaults, adapted to the model's depth where said): params.yaml's
    `methods` block, read by the benchmark and the audit, and the GPU evaluation's `evaluation` block."""

    fastv_layer: int = 1
    """FastV prunes after this LLM layer (K = layer + 1; FastV's K = 2 of 28-32 layers is ~7% of depth); also the
    attention layer of the temporal merge, PruneVid and FrameFusion"""
    temporal_merge_threshold: float = 0.9
    """cosine similarity above which a token merges into the same position of the previous frame"""
    visionzip_dominant_share: float = 54 / 64
    """VisionZip: share of the kept tokens that are dominant (its default 54 of 64)"""
    cacovid_rule: SelectionRule = field(default=RELEASE_RULE, metadata={
        "set_by": "CaCoVID's selection rule is chosen on validation (stage evaluate_policy), imp_ratio by the paper run"})
    """CaCoVID: how its scores become a keep mask (method/selection.py SelectionRule; the release's by default). The
    row "CaCoVID (release rule)" always uses the release's"""
    seed: int = field(default=0, metadata={"set_by": "Random's seed is the stage's own (benchmark.seed)"})
    """Random: seeds its masks"""
    fastvid_segment_share: float = 0.25
    """FastVID: at least c = share x frames segments (the paper's c = 8 of 32 frames)"""
    fastvid_threshold: float = 0.9
    """FastVID: adjacent frames less similar than this are cut apart (the paper's 0.9)"""
    fastvid_salient_share: float = 0.4
    """FastVID: share of a segment's budget kept by saliency (the paper's d = 0.4)"""
    fastvid_anchor_interval: int = 4
    """FastVID: density-peak anchors come from every p-th frame (the paper's p = 4)"""
    flashvid_selected_share: float = 0.7
    """FlashVID: share of the budget its per-frame selection (ADTS) keeps; the rest are merged trees (the kit's setting)"""
    flashvid_threshold: float = 0.8
    """FlashVID: a token links to the previous frame's most similar token at this cosine or more (the kit's setting)"""
    holitom_threshold: float = 0.8
    """HoliTom: a token this similar to the previous frame's is temporally redundant (the kit's setting)"""
    vidcom2_temperature: float = 0.01
    """VidCom²: softmax temperature of the frames' uniqueness"""
    prunevid_threshold: float = 0.8
    """PruneVid: a position is static in a segment when its tokens' mean pairwise cosine exceeds this (the paper's
    τ = 0.8)"""
    prunevid_segment_share: float = 0.25
    """PruneVid: frames are clustered into max(1, round(share x frames)) scenes (the paper's γ = 0.25)"""
    prunevid_cluster_share: float = 0.5
    """PruneVid: spatial merging leaves this share of the tokens, or the budget if more (the paper's β = 0.5)"""
    framefusion_threshold: float = 0.6
    """FrameFusion: a token this cosine-similar to the previous frame's at its position merges into it (S_th; the
    authors' setting for LLaVA-Video-7B)"""
    framefusion_ratio_floor: float = 0.1
    """FrameFusion: merging goes on for another round while a round merges at least this share of the tokens (the
    paper's 0.1)"""

    def __post_init__(self):
        cosine, share = Range(-1, 1), Range(0, 1)
        check_ranges(self, fastv_layer=Range(0), temporal_merge_threshold=cosine, visionzip_dominant_share=share,
                     seed=SEED, fastvid_segment_share=RATIO, fastvid_threshold=cosine,
                     fastvid_salient_share=share, fastvid_anchor_interval=COUNT, flashvid_selected_share=share,
                     flashvid_threshold=cosine, holitom_threshold=cosine, vidcom2_temperature=POSITIVE,
                     prunevid_threshold=cosine, prunevid_segment_share=RATIO, prunevid_cluster_share=RATIO,
                     framefusion_threshold=cosine, framefusion_ratio_floor=share)


@dataclass
class MethodContext:
    """What a method may read besides the batch's video-token embeddings.

    vlm: the frozen video LLM; items: the items the rules' indices point into; pixels_of(idx) -> the batch's pixel
    values (B, t, 3, S, S), for methods that re-run the vision tower (None where there are none); policy: the
    trained CaCoVID policy (None: CaCoVID cannot be built); shared: score functions shared across retention ratios
    (`shared_scores`), so that a sweep computes each method's ratio-independent scores once per batch."""

    vlm: VideoLLM
    items: list[dict]
    pixels_of: Callable[[np.ndarray], torch.Tensor] | None = None
    policy: torch.nn.Module | None = None
    shared: dict[str, Callable] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """One registered method: its table name, its command-line key, its paper, and how to build its keep rule."""

    name: str  # display name in tables and figures
    key: str  # command-line key (benchmark_eval --method)
    paper: str  # who, where, year
    year: int
    build: Callable[[MethodContext, float, MethodSettings], KeepRule]
    llava_only: bool = False  # reads LLaVA-OneVision internals (1-D positions, SigLIP attention)
    trained: bool = False  # needs a trained policy


def _as_selection(rule) -> KeepRule:
    """Wrap a rule that may return a bare (B, N) mask so that every registered rule returns a Selection."""

    def wrapped(idx, video_embeds):
        out = rule(idx, video_embeds)
        return out if isinstance(out, Selection) else Selection(out)

    return wrapped


def _cacovid(ctx, r, s):
    if ctx.policy is None:
        raise KitInputError("method cacovid: needs a trained policy (--policy DIR)")
    return policy_keep_rule(ctx.vlm, ctx.policy, ctx.items, r, s.cacovid_rule)


def _cacovid_release(ctx, r, s):
    return _cacovid(ctx, r, replace(s, cacovid_rule=RELEASE_RULE))


def _llm_scores(ctx, s):
    return ctx.shared.get("llm_attention") or baselines.last_token_scores(ctx.vlm, ctx.items, s.fastv_layer)


def _vision_scores(ctx):
    if "vision_attention" in ctx.shared:
        return ctx.shared["vision_attention"]
    if ctx.pixels_of is None:
        raise KitInputError("method visionzip: needs the videos' pixels (pixels_of) to re-run the vision tower")
    return lambda idx, video_embeds: baselines.vision_attention_received(ctx.vlm, ctx.pixels_of(idx))


def _saliency(ctx):
    """The stand-in for the [CLS] attention that FastVID, FlashVID and HoliTom read (SigLIP has no [CLS] token): the
    attention each token receives in SigLIP's last layer (as VisionZip here) on LLaVA-OneVision with pixels at hand;
    None elsewhere, where each method falls back on baselines.frame_distinctiveness (embeddings only)."""
    if not isinstance(ctx.vlm, LlavaOneVisionVideoLLM):
        return None
    if "vision_attention" in ctx.shared:
        return ctx.shared["vision_attention"]
    if ctx.pixels_of is None:
        return None
    return lambda idx, video_embeds: baselines.vision_attention_received(ctx.vlm, ctx.pixels_of(idx))


METHODS: list[Method] = [
    Method("All tokens", "all", "upper bound", 0, lambda ctx, r, s: keep_all),
    Method("CaCoVID", "cacovid", "Ma et al., arXiv 2602.01649", 2026, _cacovid, trained=True),
    Method("CaCoVID (release rule)", "cacovid_release_rule", "the same policies with the release's selection rule", 0,
           _cacovid_release, trained=True),
    Method("Random", "random", "uniformly random tokens", 0, lambda ctx, r, s: random_keep_rule(r, s.seed)),
    Method("Uniform", "uniform", "evenly spaced in time and space", 0, lambda ctx, r, s: baselines.uniform_rule(ctx.vlm, r)),
    Method("FastV", "fastv", "Chen et al., ECCV 2024 (arXiv 2403.06764)", 2024,
           lambda ctx, r, s: baselines.fastv_rule(ctx.vlm, ctx.items, r, s.fastv_layer, inside_llm=True,
                                                  scores=_llm_scores(ctx, s)), llava_only=True),
    Method("FastV (input)", "fastv_input", "FastV's scores, pruned before the LLM", 2024,
           lambda ctx, r, s: baselines.fastv_rule(ctx.vlm, ctx.items, r, s.fastv_layer, inside_llm=False,
                                                  scores=_llm_scores(ctx, s)), llava_only=True),
    Method("VisionZip", "visionzip", "Yang et al., CVPR 2025 (arXiv 2412.04467)", 2025,
           lambda ctx, r, s: baselines.visionzip_rule(ctx.vlm, None, r, s.visionzip_dominant_share,
                                                      scores=_vision_scores(ctx)), llava_only=True),
    Method("DivPrune", "divprune", "Alvar et al., CVPR 2025 (arXiv 2503.02175)", 2025,
           lambda ctx, r, s: baselines.divprune_rule(r)),
    Method("Temporal merge", "temporal_merge",
           "the kit's temporal merge (cosine to the previous frame), pruned by FastV's attention", 0,
           lambda ctx, r, s: baselines.temporal_merge_rule(ctx.vlm, ctx.items, r, s.temporal_merge_threshold,
                                                           s.fastv_layer, scores=_llm_scores(ctx, s)), llava_only=True),
    Method("FastVID", "fastvid", "Shen et al., NeurIPS 2025 (arXiv 2503.11187)", 2025,
           lambda ctx, r, s: fastvid_rule(ctx.vlm.grid, r, _saliency(ctx), s.fastvid_segment_share, s.fastvid_threshold,
                                          s.fastvid_salient_share, s.fastvid_anchor_interval)),
    Method("FlashVID", "flashvid", "Fan et al., ICLR 2026 (arXiv 2602.08024)", 2026,
           lambda ctx, r, s: flashvid_rule(ctx.vlm.grid, r, _saliency(ctx), s.flashvid_selected_share, s.flashvid_threshold)),
    Method("HoliTom", "holitom", "Shao et al., NeurIPS 2025 (arXiv 2505.21334); outer-LLM merging only", 2025,
           lambda ctx, r, s: holitom_rule(ctx.vlm.grid, r, _saliency(ctx), s.holitom_threshold)),
    Method("VidCom²", "vidcom2", "Liu et al., EMNLP 2025 (arXiv 2505.14454)", 2025,
           lambda ctx, r, s: vidcom2_rule(ctx.vlm.grid, r, s.vidcom2_temperature)),
    Method("PruneVid", "prunevid", "Huang et al., Findings of ACL 2025 (arXiv 2412.16117); question-guided selection "
           "before the LLM", 2025,
           lambda ctx, r, s: prunevid_rule(ctx.vlm.grid, r, _llm_scores(ctx, s), s.prunevid_threshold,
                                           s.prunevid_segment_share, s.prunevid_cluster_share)),
    Method("FrameFusion", "framefusion", "Fu et al., ICCV 2025 (arXiv 2501.01986); merging and pruning before the LLM",
           2025, lambda ctx, r, s: framefusion_rule(ctx.vlm.grid, r, _llm_scores(ctx, s), s.framefusion_threshold,
                                                    s.framefusion_ratio_floor)),
]


def method(name_or_key: str) -> Method:
    """The registered method with this display name or key, or a one-line error listing them."""
    for m in METHODS:
        if name_or_key in (m.name, m.key):
            return m
    raise KitInputError(f"method {name_or_key!r}: unknown; known: {', '.join(m.key for m in METHODS)}")


def compressing_methods(llava: bool = True, trained: bool = True) -> list[Method]:
    """Every method that selects tokens (not 'All tokens'); without the LLaVA-only ones for other backends."""
    return [m for m in METHODS if m.key != "all" and (llava or not m.llava_only) and (trained or not m.trained)]


def build(name_or_key: str, ctx: MethodContext, retention: float, settings: MethodSettings | None = None) -> KeepRule:
    """The method's keep rule at `retention` (in (0, 1]) over `ctx.items`; it always returns a Selection."""
    m = method(name_or_key)
    if m.key != "all":
        baselines.token_budget(1, retention)  # (0, 1] or a one-line error
    return _as_selection(m.build(ctx, retention, settings or MethodSettings()))


def shared_scores(ctx: MethodContext, settings: MethodSettings) -> dict[str, Callable]:
    """Ratio-independent scores, computed once per batch and looked up afterwards (for a sweep over ratios)."""
    shared = {"llm_attention": baselines.remembered(baselines.last_token_scores(ctx.vlm, ctx.items, settings.fastv_layer))}
    if ctx.pixels_of is not None:
        shared["vision_attention"] = baselines.remembered(
            lambda idx, video_embeds: baselines.vision_attention_received(ctx.vlm, ctx.pixels_of(idx)))
    return shared
