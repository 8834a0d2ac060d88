"""The contribution-vs-attention audit (the paper's motivation, its Fig. 1): how much each video token actually
contributes to the correct answer, and how well attention scores and the policy's scores predict it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cacovid_lib.compare.baselines import last_token_attention, vision_attention_received
from cacovid_lib.data.schema import asked_token_mask
from cacovid_lib.method.policy import CompressionPolicy, scores
from cacovid_lib.models.base import VideoLLM


@dataclass
class AuditSample:
    """The audited test items: their indices into the split, the items, their videos' pixels and encodings, and
    which video tokens show the asked-about object (the generator's ground truth)."""

    idx: np.ndarray  # (B,) sorted indices into the split
    items: list[dict]
    answers: np.ndarray  # (B,) index of the correct option
    pixels: torch.Tensor  # (B, t, 3, S, S)
    video_embeds: torch.Tensor  # (B, N+1, D)
    target: torch.Tensor  # (B, N) bool: tokens on an asked-about object (none for a count of zero)


@torch.no_grad()
def audit_sample(vlm: VideoLLM, split, num_items: int, seed: int = 0) -> AuditSample:
    """`num_items` test items drawn without replacement (seeded), in split order, with what the audit reads."""
    idx = np.sort(np.random.default_rng(seed).choice(len(split), num_items, replace=False))
    items = [split.items[i] for i in idx]
    pixels = torch.stack([vlm.preprocess(split.frames[v]) for v in split.video_of_item[idx]])  # (B, t, 3, S, S)
    target = torch.from_numpy(np.stack([asked_token_mask(split.object_labels[v].reshape(-1), it)
                                        for v, it in zip(split.video_of_item[idx], items)]))  # (B, N)
    return AuditSample(idx, items, split.answers[idx], pixels, vlm.encode_video(pixels), target)


@torch.no_grad()
def token_contributions(vlm: VideoLLM, item: dict, answer: int, video_embeds: torch.Tensor) -> torch.Tensor:
    """Drop-out effect of each video token: log p(correct option | all tokens) − log p(correct | all but that one),
    with p the softmax over the options' text log-likelihoods (the quantity the answer is read from).
    All N one-token-dropped masks are scored in one batched forward. video_embeds (N+1, D) -> (N,)."""
    n = video_embeds.shape[0] - 1
    device = video_embeds.device
    masks = torch.cat([torch.ones(1, n, dtype=torch.bool, device=device),
                       ~torch.eye(n, dtype=torch.bool, device=device)])  # (1+N, N)
    logp = torch.log_softmax(vlm.score_options(item, video_embeds, masks.to(vlm.device)).float(), dim=-1)[:, answer]  # (1+N,)
    return (logp[0] - logp[1:]).cpu()


@torch.no_grad()
def token_score_maps(vlm: VideoLLM, policy: CompressionPolicy, items: list[dict], answers, video_embeds: torch.Tensor,
                     pixels: torch.Tensor, fastv_layer: int) -> dict[str, torch.Tensor]:
    """Per video token of each item: contribution, CaCoVID policy score, FastV attention (last text token, LLM
    layer `fastv_layer`), vision-encoder attention (VisionZip's score). video_embeds (B, N+1, D),
    pixels (B, t, 3, S, S) -> dict of (B, N) tensors."""
    inputs = vlm.policy_inputs([vlm.prompt(it) for it in items], video_embeds)
    token_logits, _ = policy(inputs.embeds, inputs.positions, inputs.attention_mask, inputs.video_mask, inputs.grid)
    return {
        "contribution": torch.stack([token_contributions(vlm, it, int(a), v) for it, a, v in zip(items, answers, video_embeds)]),
        "policy": scores(token_logits).float().cpu(),
        "llm_attention": last_token_attention(vlm, items, video_embeds, fastv_layer).float().cpu(),
        "vision_attention": vision_attention_received(vlm, pixels).float().cpu(),
    }


def spearman_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two (N,) vectors (Pearson on average ranks, so ties are handled)."""
    ra, rb = (pd.Series(x.numpy()).rank().to_numpy() for x in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def rank_agreement(maps: dict[str, torch.Tensor], target_masks: torch.Tensor, k: int) -> pd.DataFrame:
    """For each score: mean over items of its Spearman correlation with the contribution, the share of the
    k most-contributing tokens among its top k, and the share of its top k on the question's asked objects (over
    the items whose asked objects are on screen: a count of zero asks about none).
    maps: (B, N) tensors, target_masks (B, N) bool -> one row per score."""
    contribution = maps["contribution"]
    top_contrib = contribution.topk(k, dim=1).indices
    rows = []
    for name, score in maps.items():
        spearman = [spearman_correlation(s, c) for s, c in zip(score, contribution)]
        top = score.topk(k, dim=1).indices  # (B, k)
        overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(top, top_contrib)]
        on_target = target_masks.gather(1, top).float().mean(1)[target_masks.any(1)]  # (items with a target,)
        rows.append({"score": name, "spearman_with_contribution": float(np.nanmean(spearman)),
                     f"top{k}_overlap_with_contribution": float(np.mean(overlap)),
                     f"top{k}_on_target_object": float(on_target.mean())})
    return pd.DataFrame(rows).set_index("score")
